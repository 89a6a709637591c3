// Package assistant is the notes assistant behind POST /api/assistant: an
// agent that acts on one user's notes through six tools and streams its
// steps as Server-Sent Events (README "Assistant"). What answers is an
// OpenAI-compatible chat-completions server (openai.go) or, with none
// configured, the built-in planner (planner.go), which turns a small command
// language into the same tool calls a model would make.
//
// The agent reaches the notes only through Notes, an interface in the
// assistant's own small vocabulary: Note, NoteWrite, Idempotency, and the two
// failures it tells the model about, RefusedError and StaleError. app
// implements it with an adapter over its Store. The assistant cannot use
// app's types (app mounts the assistant, so that import would be a cycle),
// and moving them into a package of their own would move the error
// vocabulary of every handler for the sake of one consumer. The adapter is a
// few lines, and its conversion from app's Note fails to compile if the two
// ever differ.
//
// Reading the request (its size, content type and message) and the rule of
// one running agent per user stay with app's other handlers, whose refusals
// go through app's one map from errors to HTTP answers. Agent.Answer takes
// over from the first byte of the stream.
package assistant
