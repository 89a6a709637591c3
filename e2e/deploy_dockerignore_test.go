package e2e

// The image's build context: .dockerignore, read with Docker's rules,
// keeps every file the build reads and nothing of local state.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"notesync/internal/deploytest"
)

func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	b, err := os.ReadFile(deploytest.Path(t, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignore := parseDockerignore(string(b))

	// Every file the build reads: the sources of every package of this module
	// the binary is made of, their embedded files, go.mod, go.sum, litefs.yml.
	need := []string{"go.mod", "go.sum", "litefs.yml"}
	root := filepath.Dir(deploytest.Path(t, "go.mod"))
	cmd := exec.Command("go", "list", "-deps", "-json", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir                                           string
			Module                                        *struct{ Path string }
			GoFiles, CgoFiles, CFiles, HFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "notesync" {
			continue
		}
		rel, _ := filepath.Rel(root, p.Dir)
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.EmbedFiles} {
			for _, f := range files {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		if ignore(f) {
			t.Errorf(".dockerignore excludes %s, which the image build needs", f)
		}
	}
	for _, f := range []string{"data/notesync.db", "data/cluster/node1/fuse/notesync.db", ".git/HEAD",
		"notesync.test", "cluster/cluster.test", "cpu.prof", "realtime/cpu.out", "data/cluster/node1/node.log"} {
		if !ignore(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// parseDockerignore returns a matcher with Docker's .dockerignore rules: a
// path is excluded when the last pattern matching it or one of its parent
// directories is not a !negation; * and ? stay within a path element, **
// spans any number of them.
func parseDockerignore(text string) func(string) bool {
	type rule struct {
		re     *regexp.Regexp
		negate bool
	}
	var rules []rule
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		rules = append(rules, rule{regexp.MustCompile(re.String()), negate})
	}
	return func(p string) bool {
		excluded := false
		for _, r := range rules {
			for q := p; q != "." && q != "/" && q != ""; q = path.Dir(q) {
				if r.re.MatchString(q) {
					excluded = !r.negate
					break
				}
			}
		}
		return excluded
	}
}
