package deploytest

import (
	"os"
	"strings"
	"testing"

	"github.com/mattn/go-shellwords"
)

// Instr is one instruction of a Dockerfile.
type Instr struct {
	Cmd  string // upper case: FROM, RUN, COPY, ENV, ...
	Args string // the rest, continuation lines joined
	Line int
}

// Stage is one FROM and the instructions that follow it.
type Stage struct {
	Image, Name string
	Instrs      []Instr
}

// Dockerfile splits the module's Dockerfile into stages of instructions,
// joining continuation lines and dropping comments as Docker does.
func Dockerfile(t testing.TB) []Stage {
	t.Helper()
	b, err := os.ReadFile(Path(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var instrs []Instr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments, also inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			continue
		}
		cmd, args, _ := strings.Cut(text, " ")
		instrs = append(instrs, Instr{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
	}
	var stages []Stage
	for _, in := range instrs {
		if in.Cmd == "FROM" {
			f := NonFlagFields(t, in.Args)
			st := Stage{Image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before FROM", in.Line, in.Cmd)
		}
		stages[len(stages)-1].Instrs = append(stages[len(stages)-1].Instrs, in)
	}
	return stages
}

// Words splits s into words as a POSIX shell does for quoting and
// escaping, without expansion (as LiteFS splits its exec command).
func Words(t testing.TB, s string) []string {
	t.Helper()
	w, err := shellwords.Parse(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return w
}

// NonFlagFields returns the words of args that are not --flags.
func NonFlagFields(t testing.TB, args string) []string {
	t.Helper()
	var out []string
	for _, f := range Words(t, args) {
		if !strings.HasPrefix(f, "--") {
			out = append(out, f)
		}
	}
	return out
}

// FlagValue returns the value of --name=value among args, if present.
func FlagValue(t testing.TB, args, name string) (string, bool) {
	t.Helper()
	for _, f := range Words(t, args) {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Env returns what the stage's ENV instructions set.
func (st Stage) Env(t testing.TB) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range st.All("ENV") {
		f := Words(t, in.Args)
		if len(f) > 0 && !strings.Contains(f[0], "=") { // legacy ENV key value
			env[f[0]] = strings.Join(f[1:], " ")
			continue
		}
		for _, kv := range f {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// All returns the stage's instructions of one kind (cmd in upper case).
func (st Stage) All(cmd string) []Instr {
	var out []Instr
	for _, in := range st.Instrs {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// Copies maps each COPY destination to its source, "stage:path" for
// COPY --from=stage.
func (st Stage) Copies(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, in := range st.All("COPY") {
		f := NonFlagFields(t, in.Args)
		src := strings.Join(f[:len(f)-1], " ")
		if from, ok := FlagValue(t, in.Args, "from"); ok {
			src = from + ":" + src
		}
		out[f[len(f)-1]] = src
	}
	return out
}
