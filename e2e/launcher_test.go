package e2e

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"notesync/internal/localcluster"
	"notesync/internal/testenv"
)

// These tests hold the launcher to docs/PROTOCOL.md §2: one cluster per data
// directory, a mount in use is never unmounted, a node that does not start
// says why, and stopping says what it stopped.

func TestLauncherRefusesASecondClusterOnTheSameDir(t *testing.T) {
	c := startCluster(t, 1)
	second := newLauncher(t, 1)
	second.Host, second.Dir = c.Host, c.Dir // what a second `go run . cluster` does
	start := time.Now()
	err := second.Open(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second launcher started on a directory in use")
	}
	msg := err.Error()
	for _, want := range []string{"another cluster is running", "pid " + strconv.Itoa(os.Getpid()), c.Host + ":" + strconv.Itoa(c.BasePort)} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || time.Since(start) > 5*time.Second {
		t.Errorf("want one line at once; got %q after %v", msg, time.Since(start))
	}
	// The running cluster is untouched: its mount and its node serve on.
	if !isMounted(filepath.Join(c.Dir, "node1", "fuse")) {
		t.Fatal("the running cluster's mount was unmounted")
	}
	if code := getStatus(t, c.URL(1)+"/readyz"); code != http.StatusOK {
		t.Fatalf("the running node answers /readyz %d", code)
	}
}

func TestLauncherRefusesATakenAddress(t *testing.T) {
	l := newLauncher(t, 2)
	taken, err := net.Listen("tcp", net.JoinHostPort(l.Host, strconv.Itoa(l.BasePort+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	start := time.Now()
	err = l.Open(context.Background())
	if err == nil {
		l.Close()
		t.Fatal("started with node2's port taken")
	}
	if want := taken.Addr().String() + " is taken"; !strings.Contains(err.Error(), want) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %v, want %q at once", err, time.Since(start), want)
	}
	// Nothing was started, and the directory is free for the next run.
	if _, err := os.Stat(filepath.Join(l.Dir, "node1", "node.log")); err == nil {
		t.Error("a node was started before the addresses were checked")
	}
}

func TestLauncherSaysWhyANodeDidNotStart(t *testing.T) {
	l := newLauncher(t, 1, "LOG_LEVEL=loud") // the app refuses it and exits
	start := time.Now()
	err := l.Open(context.Background())
	if err == nil {
		l.Close()
		t.Fatal("started with a node that cannot")
	}
	msg := err.Error()
	for _, want := range []string{"node1 did not start", "LiteFS exited", filepath.Join(l.Dir, "node1", "node.log"), `invalid -log-level (LOG_LEVEL) "loud"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v to notice; want the node's exit noticed at once", d)
	}
	if isMounted(filepath.Join(l.Dir, "node1", "fuse")) {
		t.Error("the failed node's mount is left behind")
	}
}

func TestLauncherCloseSaysWhatItStopped(t *testing.T) {
	l := newLauncher(t, 2)
	var out testenv.SyncBuffer
	l.Stdout = &out
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { // what `notesync cluster` does
		err := l.Open(ctx)
		if err == nil {
			l.Run(ctx)
			l.Close()
		}
		ran <- err
	}()
	returned := false
	defer func() {
		if !returned {
			cancel()
			<-ran
		}
	}()
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(out.String(), "cluster ready"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", out.String())
		}
	}
	var pids []int
	for i := 1; i <= 2; i++ {
		pid, _ := l.Node(i)
		pids = append(pids, pid)
	}
	cancel() // what Ctrl-C does
	returned = true
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	for i, pid := range pids {
		want := "stopped node" + strconv.Itoa(i+1) + " (pid " + strconv.Itoa(pid) + ")"
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still runs after Close: %v", pid, err)
		}
		if isMounted(filepath.Join(l.Dir, "node"+strconv.Itoa(i+1), "fuse")) {
			t.Errorf("node%d's mount is left behind", i+1)
		}
	}
	if !strings.HasSuffix(out.String(), "cluster stopped\n") {
		t.Errorf("output does not end with \"cluster stopped\":\n%s", out.String())
	}
}

// isMounted reports whether dir is a mount point of this mount namespace.
func isMounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func getStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLauncherLeavesAMountInUseAlone(t *testing.T) {
	testenv.NeedFUSE(t)
	b := buildBinaries(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	host := localcluster.RandomLoopback()
	crashed := startCLI(t, b.Exe, append(os.Environ(), "LITEFS_BIN="+b.LiteFS),
		"cluster", "-n", "1", "-dir", dir, "-host", host, "-config", b.Config)
	crashed.waitFor(t, "cluster ready", 90*time.Second)
	// A shell left in the mount, then the launcher crashes: its LiteFS
	// stops, but cannot unmount a mount in use.
	fuse := filepath.Join(dir, "node1", "fuse")
	holder := exec.Command("sleep", "600")
	holder.Dir = fuse
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	crashed.kill(t)

	l := newLauncher(t, 1)
	l.Host, l.Dir = host, dir
	err := l.Open(context.Background())
	if err == nil {
		l.Close()
		t.Fatal("started over a mount in use")
	}
	pid := strconv.Itoa(holder.Process.Pid)
	if msg := err.Error(); !strings.Contains(msg, fuse+" is still mounted and in use by") || !strings.Contains(msg, "pid "+pid+" (sleep)") || !strings.Contains(msg, "kill "+pid) {
		t.Errorf("refusal does not name the mount and the process using it: %v", err)
	}
	if !isMounted(fuse) {
		t.Fatal("the mount in use was unmounted")
	}

	// Once nothing uses it, the next start clears it and runs.
	_ = holder.Process.Kill()
	_ = holder.Wait()
	retry := newLauncher(t, 1)
	retry.Host, retry.Dir = host, dir
	c := runLauncher(t, retry)
	if code := getStatus(t, c.URL(1)+"/readyz"); code != http.StatusOK {
		t.Fatalf("after the stale mount was cleared: /readyz %d", code)
	}
}
