// Package testenv holds the tests' one policy for what the machine must
// have: a test that needs a system dependency (Chromium, FUSE, root with
// iproute2 and nftables) skips itself outside CI, naming the fix, and fails
// under CI (env CI set), where `make test` installs everything. Only test
// code imports it.
package testenv

import (
	"os"
	"strings"
	"sync"
	"testing"

	"notesync/cluster/local"
)

// Need skips the test outside CI when err reports a missing dependency,
// and fails it under CI; fix says how to get the dependency.
func Need(t testing.TB, err error, fix string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%v (CI must have it: %s)", err, fix)
	}
	t.Skipf("%v; to run this test: %s", err, fix)
}

// NeedFUSE is Need for a LiteFS mount.
func NeedFUSE(t testing.TB) {
	t.Helper()
	Need(t, local.CheckFUSE(), "apt-get install fuse3 (or make test)")
}

// NeedNetns is Need for a cluster with a network namespace per node.
func NeedNetns(t testing.TB) {
	t.Helper()
	Need(t, local.CheckNetns(), "run the tests as root with iproute2 and nftables (apt-get install iproute2 nftables, or make test)")
}

// SyncBuffer collects what a process writes (its stdout, say) while the
// test reads it: safe for one writer and concurrent readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
