package e2e

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"notesync/internal/testenv"
)

// cliProc is `notesync cluster` running as a child, its standard input a
// pipe and its standard output read line by line.
type cliProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	out    testenv.SyncBuffer // every line so far
	stderr testenv.SyncBuffer
	exited chan struct{}
}

func startCLI(t *testing.T, exe string, env []string, args ...string) *cliProc {
	t.Helper()
	p := &cliProc{cmd: exec.Command(exe, args...), lines: make(chan string, 1000), exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out.Write([]byte(sc.Text() + "\n"))
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.interrupt(t)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s\nstderr:\n%s", strings.Join(args, " "), p.out.String(), p.stderr.String())
		}
	})
	return p
}

// waitFor returns the first line to come that contains s.
func (p *cliProc) waitFor(t *testing.T, s string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the launcher ended before saying %q; stderr:\n%s", s, p.stderr.String())
			}
			if strings.Contains(line, s) {
				return line
			}
		case <-deadline:
			t.Fatalf("no %q within %v; output so far:\n%s", s, within, p.out.String())
		}
	}
}

// ask types a command and returns the line that answers it.
func (p *cliProc) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-p.lines:
		return line
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to %q", cmd)
		return ""
	}
}

// kill ends the launcher with SIGKILL, as a crash would.
func (p *cliProc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// interrupt sends Ctrl-C's SIGINT and returns the whole output once the
// launcher has exited; it must exit cleanly within 30 s.
func (p *cliProc) interrupt(t *testing.T) string {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill(t)
		t.Errorf("the launcher did not exit within 30 s of SIGINT")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the launcher exited with %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}
	for range p.lines { // the rest of its output
	}
	return p.out.String()
}
