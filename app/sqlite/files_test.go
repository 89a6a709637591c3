package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"notesync/app/sqlite"
	"notesync/app/sqlite/sqlitetest"
)

func TestDatabaseFilesArePrivate(t *testing.T) {
	mode := func(t *testing.T, p string) os.FileMode {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}

	t.Run("a new database: its directory 0700, its files 0600", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data", "node1")
		path := filepath.Join(dir, "notesync.db")
		db, err := sqlite.OpenDB(context.Background(), path, true)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := sqlite.NewStore(db, "node1")
		defer s.Close()
		sqlitetest.User(t, s, "alice") // a write: the WAL and its index exist now
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("directory %v, want 0700", m)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if m := mode(t, p); m != 0o600 {
				t.Errorf("%s: %v, want 0600", filepath.Base(p), m)
			}
		}
	})

	t.Run("a database made world-readable before is narrowed at start", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "notesync.db")
		db, err := sqlite.OpenDB(context.Background(), path, true)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			os.Chmod(p, 0o644)
		}
		db, err = sqlite.OpenDB(context.Background(), path, true)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if m := mode(t, path); m != 0o600 {
			t.Errorf("database %v, want 0600", m)
		}
	})
}
