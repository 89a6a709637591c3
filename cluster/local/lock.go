package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// dirLock is an exclusive flock on <Dir>/launcher.lock, held for as long as
// a launcher runs from Dir (docs/PROTOCOL.md §2). The kernel drops it when
// the process ends, however it ends, so a crashed launcher never blocks the
// next one. The file names the holder, for the launcher it turns away.
type dirLock struct {
	f *os.File
}

// lockFile is the lock's name inside the cluster's directory.
const lockFile = "launcher.lock"

// lockDir takes dir's lock and writes holder into it, or says who holds it.
func lockDir(dir, holder string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		who, _ := os.ReadFile(path)
		desc := strings.TrimSpace(string(who))
		if desc == "" {
			desc = "starting"
		}
		return nil, fmt.Errorf("another cluster is running from %s (%s): stop it first (Ctrl-C where it runs), or give this one another -dir", dir, desc)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(holder+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &dirLock{f: f}, nil
}

// release empties the file and drops the lock.
func (d *dirLock) release() {
	if d == nil {
		return
	}
	_ = d.f.Truncate(0)
	_ = d.f.Close()
}
