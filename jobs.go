package main

import (
	"context"
	"log/slog"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/cluster"
)

// Background jobs of the primary.

// onPrimary runs fn every d while this node is the primary (the node that
// writes), logging what fails as what.
func onPrimary(ctx context.Context, lfs *cluster.LiteFS, logger *slog.Logger, d time.Duration, what string, fn func(context.Context) error) {
	every(ctx, d, func() {
		if !lfs.IsPrimary() {
			return
		}
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			logger.Warn(what, "err", err)
		}
	})
}

// prune deletes stale change-log rows, idempotency keys and sessions every
// ten minutes, on the primary (writes happen there only).
func prune(ctx context.Context, store *sqlite.Store, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, 10*time.Minute, "prune", func(ctx context.Context) error {
		return store.Prune(ctx, time.Hour)
	})
}

// purge forgets deleted notes once their undo window has passed, on the
// primary; a check that finds none costs a read.
func purge(ctx context.Context, store *sqlite.Store, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, app.UndoWindow/3, "purge deleted notes", func(ctx context.Context) error {
		_, err := store.Purge(ctx)
		return err
	})
}

// checkpoint keeps the WAL short on the node that writes, off the commit
// path (see sqlite.DB.Checkpoint).
func checkpoint(ctx context.Context, db *sqlite.DB, lfs *cluster.LiteFS, logger *slog.Logger) {
	onPrimary(ctx, lfs, logger, time.Second, "checkpoint", func(ctx context.Context) error {
		_, _, err := db.Checkpoint(ctx)
		return err
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
