// Package fileperm keeps a node's private files readable by its own user
// only.
package fileperm

import (
	"errors"
	"io/fs"
	"os"
)

// Restrict takes the group's and others' permissions off each of paths
// that exists (a missing one is skipped), so that a file an older node or
// a hand left wider is narrowed at start. The error of a file it cannot
// read or narrow names that file.
func Restrict(paths ...string) error {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return err
			}
		}
	}
	return nil
}
