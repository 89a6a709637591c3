package main

import (
	"context"
	"log/slog"
	"time"

	"notesync/app"
	"notesync/app/sqlite"
	"notesync/cluster"
)

// jobs are the node's background work, all of it, each running until its
// context ends (Run starts and stops them). What a part owns from Open to
// Close is not here: LiteFS's event stream (cluster.Changes), gossip and
// the announcements it sends (cluster.Membership), the store's writer.
func (n *Node) jobs() []func(context.Context) {
	jobs := []func(context.Context){
		n.feed.Run,
		func(ctx context.Context) { prune(ctx, n.store, n.lfs, n.logger) },
		func(ctx context.Context) { checkpoint(ctx, n.db, n.lfs, n.logger) },
		func(ctx context.Context) { purge(ctx, n.store, n.lfs, n.logger) },
		n.refreshMeta,
		func(ctx context.Context) {
			every(ctx, 15*time.Second, func() { n.sessions.CloseEnded(ctx, n.hub, n.logger) })
		},
		n.migrateOnPromotion,
	}
	if n.journal != nil {
		jobs = append(jobs, n.journal.Run)
	}
	return jobs
}

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

// refreshMeta re-gossips the metadata every few seconds (connection counts
// and roles change while running).
func (n *Node) refreshMeta(ctx context.Context) {
	if g := n.cluster.Gossip; g != nil {
		every(ctx, 3*time.Second, func() { _ = g.RefreshMeta() })
	}
}

// migrateOnPromotion applies pending migrations each time LiteFS says
// this node became the primary while running (a Consul lease moved
// between candidates): the role is never decided once at start-up. A
// migration that fails is tried again every second while the node stays
// primary.
func (n *Node) migrateOnPromotion(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.promoted:
		}
		n.logger.Info("promoted to primary")
		for n.lfs.IsPrimary() {
			err := n.db.Migrate(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			n.logger.Error("migrate after promotion", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
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
