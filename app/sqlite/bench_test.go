package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// BenchmarkCreateNote measures note writes on plain disk: one writer at a
// time (each write its own commit) and many at once (sharing commits).
func BenchmarkCreateNote(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(map[int]string{1: "serial", 64: "concurrent-64"}[par], func(b *testing.B) {
			s := sqlitetest.NewStore(b)
			u := sqlitetest.User(b, s, "bench")
			b.ReportAllocs()
			b.SetParallelism(par)
			if par == 1 {
				for i := 0; i < b.N; i++ {
					if _, err := s.CreateNote(context.Background(), u.ID, "a note body", app.Idempotency{}); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.CreateNote(context.Background(), u.ID, "a note body", app.Idempotency{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// BenchmarkPagesPerWrite reports the database pages each write commits,
// one write per transaction (as at low rates), over a database of 500
// users with 20 notes each, writes spread over them, each with an
// Idempotency-Key as the page sends. Under LiteFS every page is a WAL
// frame written through FUSE, copied into the transaction's LTX file,
// checksummed, shipped and applied on every replica, so pages per write
// is the part of LiteFS's work the store controls. Run it with -benchtime
// 600x: the writer's own checkpoint at 10,000 pages would restart the WAL.
func BenchmarkPagesPerWrite(b *testing.B) {
	for _, op := range []string{"create", "update", "delete"} {
		b.Run(op, func(b *testing.B) { benchPagesPerWrite(b, op) })
	}
}

func benchPagesPerWrite(b *testing.B, op string) {
	ctx := context.Background()
	s := sqlitetest.NewStore(b)
	const users, notes = 500, 20
	type owned struct {
		user int64
		ids  []int64
	}
	all := make([]owned, users)
	for i := range all {
		u := sqlitetest.User(b, s, fmt.Sprintf("user%d", i))
		all[i].user = u.ID
		for j := 0; j < notes; j++ {
			w, err := s.CreateNote(ctx, u.ID, strings.Repeat("note text ", 10), app.Idempotency{Key: fmt.Sprintf("seed-%d-%d", i, j), Fingerprint: "f"})
			if err != nil {
				b.Fatal(err)
			}
			all[i].ids = append(all[i].ids, w.Note.ID)
		}
	}
	// After a checkpoint that copied the whole WAL, the next write starts
	// it again from its first frame; the last checkpoint counts its frames.
	if n, copied, err := s.DB().Checkpoint(ctx); err != nil || n != copied {
		b.Fatalf("checkpoint: %d of %d pages copied, %v", copied, n, err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := &all[rnd.IntN(users)]
		idem := app.Idempotency{Key: fmt.Sprintf("k%d", i), Fingerprint: "f"}
		var err error
		switch op {
		case "create":
			_, err = s.CreateNote(ctx, o.user, "a new note", idem)
		case "update":
			_, err = s.UpdateNote(ctx, o.user, o.ids[rnd.IntN(len(o.ids))], fmt.Sprintf("edited text %d", i), nil, idem)
		case "delete":
			if len(o.ids) == 0 {
				b.Fatal("ran out of notes to delete; run fewer writes")
			}
			k := rnd.IntN(len(o.ids))
			_, err = s.DeleteNote(ctx, o.user, o.ids[k], nil, idem)
			o.ids = append(o.ids[:k], o.ids[k+1:]...)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	frames, _, err := s.DB().Checkpoint(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(frames)/float64(b.N), "pages/write")
}
