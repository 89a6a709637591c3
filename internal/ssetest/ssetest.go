// Package ssetest reads the Server-Sent Events streams of the service in
// tests: events whose data are JSON objects, such as the assistant's answer
// to POST /api/assistant (README "Assistant").
package ssetest

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// Event is one event of a stream.
type Event struct {
	Type string
	Data map[string]any
}

func (e Event) String() string {
	data, _ := json.Marshal(e.Data)
	return e.Type + " " + string(data)
}

// Read reads a stream to its end. Comments are skipped; a data line that is
// not a JSON object fails the test.
func Read(t testing.TB, r io.Reader) []Event {
	t.Helper()
	var evs []Event
	sc := bufio.NewScanner(r)
	var cur Event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Type != "" {
				evs = append(evs, cur)
			}
			cur = Event{}
		case strings.HasPrefix(line, "event: "):
			cur.Type = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.Data); err != nil {
				t.Fatalf("bad data line %q: %v", line, err)
			}
		}
	}
	return evs
}

// Of returns the events of type typ.
func Of(evs []Event, typ string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// Types lists the events' types, with each run of token events folded into
// one.
func Types(evs []Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == "token" && len(out) > 0 && out[len(out)-1] == "token" {
			continue
		}
		out = append(out, e.Type)
	}
	return out
}

// Tokens joins the text of the token events.
func Tokens(evs []Event) string {
	var sb strings.Builder
	for _, e := range evs {
		if e.Type == "token" {
			sb.WriteString(e.Data["text"].(string))
		}
	}
	return sb.String()
}
