package sqlite_test

import (
	"context"
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
