package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// `notesync cluster -netns` as a person runs it (docs/PROTOCOL.md §10):
// fault commands on its standard input, a crash of the launcher itself,
// and Ctrl-C.
func TestNetnsCommandLine(t *testing.T) {
	testenv.NeedNetns(t)
	testenv.NeedFUSE(t)
	b := buildBinaries(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	args := []string{"cluster", "-netns", "-n", "2", "-dir", dir, "-host", localcluster.RandomLoopback(), "-config", b.Config}
	env := append(os.Environ(), "LITEFS_BIN="+b.LiteFS)

	first := startCLI(t, b.Exe, env, args...)
	line := first.waitFor(t, "node1 ", 90*time.Second)
	_, ns, ok := strings.Cut(line, "network namespace ")
	if !ok {
		t.Fatalf("the launcher does not name node1's namespace: %q", line)
	}
	prefix := strings.TrimSuffix(strings.TrimSuffix(ns, ")"), "node1")
	first.waitFor(t, "cluster ready", 90*time.Second)
	first.waitFor(t, "type a command", time.Second)

	t.Run("fault commands on stdin answer ok, the cuts, or what is wrong", func(t *testing.T) {
		for _, c := range []struct{ cmd, want string }{
			{"status", "no cuts"},
			{"partition node2", "ok"},
			{"oneway node2 node1", "ok"}, // already cut: still ok
			{"status", "cuts: node1<->node2"},
			{"heal node2", "ok"},
			{"oneway node1 node2", "ok"},
			{"status", "cuts: node1->node2"},
			{"partition node7", `no node "node7": the nodes are node1 to node2`},
			{"partition node1 node1", "node1 twice: a node cannot be cut from itself"},
			{"cut node1", `unknown command "cut"`},
			{"heal", "ok"},
			{"status", "no cuts"},
		} {
			if got := first.ask(t, c.cmd); !strings.HasPrefix(got, c.want) {
				t.Errorf("%q answered %q, want %q", c.cmd, got, c.want)
			}
		}
	})

	t.Run("after the launcher is killed, the next start removes what it left", func(t *testing.T) {
		first.kill(t)
		if leftovers := namespacesWith(prefix); len(leftovers) != 3 {
			t.Fatalf("want the killed run's 3 namespaces still there, found %v", leftovers)
		}
		second := startCLI(t, b.Exe, env, args...)
		removed := second.waitFor(t, "removed network namespaces left by an earlier run", 60*time.Second)
		for _, name := range []string{"bridge", "node1", "node2"} {
			if !strings.Contains(removed, prefix+name) {
				t.Errorf("%q does not name %s", removed, prefix+name)
			}
		}
		second.waitFor(t, "cluster ready", 90*time.Second)

		// Ctrl-C: every node stops, everything made is removed, and it says so.
		out := second.interrupt(t)
		for _, want := range []string{"stopped node1 (pid ", "stopped node2 (pid ", "removed network namespaces " + prefix, "cluster stopped"} {
			if !strings.Contains(out, want) {
				t.Errorf("output after Ctrl-C does not say %q:\n%s", want, out)
			}
		}
		if left := namespacesWith(prefix); len(left) != 0 {
			t.Errorf("namespaces left after Ctrl-C: %v", left)
		}
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), dir) {
			t.Errorf("a mount under %s is left after Ctrl-C", dir)
		}
	})
}

func TestNetnsNeedsRoot(t *testing.T) {
	b := buildBinaries(t)
	cmd := exec.Command(b.Exe, "cluster", "-netns", "-dir", filepath.Join(t.TempDir(), "cluster"))
	if os.Geteuid() == 0 {
		// Run it as nobody, who must be able to reach the binary.
		for d := filepath.Dir(b.Exe); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	if err == nil || !strings.Contains(msg, "needs root") || strings.Contains(msg, "\n") || time.Since(start) > 5*time.Second {
		t.Fatalf("without root: %v after %v, output %q; want one line saying it needs root, at once", err, time.Since(start), msg)
	}
}

// namespacesWith lists the network namespaces whose names start with
// prefix.
func namespacesWith(prefix string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
