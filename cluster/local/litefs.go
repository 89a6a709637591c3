package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrNoFUSE means the machine cannot mount LiteFS.
var ErrNoFUSE = errors.New("FUSE is not available: install fuse3 (apt-get install fuse3, which provides fusermount3) and make sure /dev/fuse exists")

// CheckFUSE reports whether LiteFS can mount here.
func CheckFUSE() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return ErrNoFUSE
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return ErrNoFUSE
	}
	return nil
}

// LiteFSBinary returns bin when it names a binary; otherwise it builds (or
// finds, cached) the LiteFS that go.mod's tool line pins, so that nothing
// needs installing. The binary runs directly rather than through
// `go tool`, whose wrapper would orphan LiteFS on SIGKILL.
func LiteFSBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	out, err := exec.Command("go", "tool", "-n", "litefs").Output()
	if err != nil {
		return "", fmt.Errorf("build litefs with `go tool -n litefs`: %w (set LITEFS_BIN to use another binary)", err)
	}
	return strings.TrimSpace(string(out)), nil
}
