package feed

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

func TestFeedNoticesTheLogWentBack(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	create := func(n int) {
		t.Helper()
		for range n {
			if _, err := s.CreateNote(ctx, u.ID, "n", app.Idempotency{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create(2)
	pub := &recordingPublisher{}
	f, err := NewFeed(ctx, s, pub, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	pub.feed = f
	var diverged atomic.Int32
	f.Diverged = func() { diverged.Add(1) }
	create(2)
	if _, err := f.pushOnce(ctx, "poll"); err != nil || len(pub.pushed) != 2 || diverged.Load() != 0 {
		t.Fatalf("pushed %v, diverged %d times, %v; want versions 3 and 4 alone", pub.pushed, diverged.Load(), err)
	}

	// The new history continues from version 2 and reaches 4 again, with
	// other changes at the same seqs.
	sqlitetest.RollBack(t, s, u.ID, 2, 2)
	create(2)
	if _, err := f.pushOnce(ctx, "poll"); err != nil || diverged.Load() != 1 {
		t.Fatalf("after the log went back: diverged %d times, %v; want once", diverged.Load(), err)
	}
	if len(pub.pushed) != 2 {
		t.Fatalf("pushed %v: the other history's changes went out as if they followed", pub.pushed)
	}
	if v, _ := f.Version(ctx, u.ID); v != 4 {
		t.Fatalf("version %d, want 4 read again", v)
	}
	create(1)
	if _, err := f.pushOnce(ctx, "poll"); err != nil || diverged.Load() != 1 || pub.pushed[len(pub.pushed)-1] != 5 {
		t.Fatalf("then pushed %v, diverged %d times, %v; want version 5 pushed as usual", pub.pushed, diverged.Load(), err)
	}

	t.Run("a log that went back below what was pushed", func(t *testing.T) {
		sqlitetest.RollBack(t, s, u.ID, 3, 3)
		if _, err := f.pushOnce(ctx, "poll"); err != nil || diverged.Load() != 2 {
			t.Fatalf("diverged %d times, %v; want twice", diverged.Load(), err)
		}
		if v, _ := f.Version(ctx, u.ID); v != 3 {
			t.Fatalf("version %d, want 3", v)
		}
	})
}
