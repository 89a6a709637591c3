// Package journal keeps, on every node, what it takes to apply each
// recent change again, and applies again, through the new primary, the
// changes that a primary's history lacks after the lease moved to a
// candidate that was behind (docs/PROTOCOL.md §11).
package journal

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"notesync/app"
)

// Source is the node's own database: its change log, as it stands.
type Source interface {
	// WrittenAfter returns up to limit changes with seq above after, in
	// order, with what it takes to apply each again.
	WrittenAfter(ctx context.Context, after int64, limit int) ([]app.Written, error)
	// HasChanges returns which of the changes (by id) the change log
	// holds.
	HasChanges(ctx context.Context, cs []app.Change) (map[string]bool, error)
	// LastChangeSeq returns the seq of the newest change (0: none).
	LastChangeSeq(ctx context.Context) (int64, error)
}

// Landed is where a change applied again landed: its note's id (the
// original one, or a new one when the new history gave that id to
// another note), and whether it was there already (another node, or its
// client, sent it first).
type Landed struct {
	NoteID   int64
	Replayed bool
}

// ErrRefused wraps the error of a change the primary will not apply
// again, whatever the tries (its note is gone, say): it is dropped.
var ErrRefused = errors.New("refused")

// Journal keeps the node's recent changes in memory, in the order of its
// change log, from its own database (Run, off the write path), and
// applies again those that its database lacks once the log went back.
// Set the fields, then Run it; the other methods are for any goroutine.
type Journal struct {
	Source Source
	// Position returns the database's position (LiteFS's TXID); nil: 0.
	// Through says how far the journal holds what the database holds.
	Position func() (uint64, error)
	// HeldByAll returns a position that every lease candidate holds (0:
	// none known): changes up to it are forgotten. nil: kept for Keep.
	HeldByAll func() uint64
	// Reapply applies a change again through the primary, once. An error
	// that wraps ErrRefused drops the change; another one is tried again.
	Reapply func(context.Context, app.Written) (Landed, error)
	// OnThrough, if set, is called once Through has moved.
	OnThrough func()
	// OnReapplied, if set, is called for each change applied again.
	OnReapplied func(w app.Written, l Landed)
	// Keep bounds how long a change is kept (DefaultKeep), Max how many
	// (DefaultMax), and MaxBytes the texts they keep (DefaultMaxBytes),
	// the oldest forgotten first.
	Keep     time.Duration
	Max      int
	MaxBytes int
	Logger   *slog.Logger

	mu      sync.Mutex
	entries []entry         // held, in seq order
	pending []entry         // lacked by the database, to apply again, in order
	moved   map[int64]int64 // note id → where its create landed again
	bytes   int             // the texts of entries
	lastSeq int64           // the newest seq read
	started bool            // lastSeq was set at the first Step
	through uint64
	once    sync.Once // makes wake and moved
	wake    chan struct{}
}

// entry is one change held, with the position it was read at.
type entry struct {
	app.Written
	txid uint64
	read time.Time
}

// DefaultKeep is how long a change is kept at most. A node cut off for
// longer may come back with changes the others have forgotten; a cut of
// a few seconds, and the while LiteFS takes to notice a heal, are well
// inside it.
const DefaultKeep = 5 * time.Minute

// DefaultMax bounds the changes kept: five minutes at 200 writes a
// second.
const DefaultMax = 60_000

// DefaultMaxBytes bounds the texts the changes kept carry.
const DefaultMaxBytes = 64 << 20

// readBatch bounds one read of the change log.
const readBatch = 500

// readEvery is how often the journal reads without being poked.
const readEvery = 500 * time.Millisecond

func (j *Journal) init() {
	j.wake = make(chan struct{}, 1)
	j.moved = map[int64]int64{}
}

// Poke wakes Run to read: LiteFS applied a transaction.
func (j *Journal) Poke() {
	j.once.Do(j.init)
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// Through returns the position up to which the journal holds every change
// of the database: a node reports no further that it holds a transaction
// (cluster.Acks), so that holding it means being able to apply it again.
func (j *Journal) Through() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.through
}

// Len returns how many changes the journal keeps, and how many of them
// wait to be applied again.
func (j *Journal) Len() (held, pending int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries), len(j.pending)
}

// Run reads the change log whenever poked and every readEvery, and
// applies again what the database lacks, until ctx ends.
func (j *Journal) Run(ctx context.Context) {
	if j.Logger == nil {
		j.Logger = slog.Default()
	}
	j.once.Do(j.init)
	tick := time.NewTicker(readEvery)
	defer tick.Stop()
	failing := ""
	for {
		err := j.Step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != failing:
			failing = err.Error()
			j.Logger.Warn("change journal: the node acknowledges what it cannot apply again", "err", err)
		case err == nil && failing != "":
			failing = ""
			j.Logger.Info("change journal: reading again")
		}
		select {
		case <-ctx.Done():
			return
		case <-j.wake:
		case <-tick.C:
		}
	}
}

// Step reads what the database committed since the last Step, finds the
// changes it held that the database no longer has, applies those again,
// and forgets what it need not keep.
func (j *Journal) Step(ctx context.Context) error {
	if j.Logger == nil {
		j.Logger = slog.Default()
	}
	j.once.Do(j.init)
	var pos uint64
	if j.Position != nil {
		p, err := j.Position()
		if err != nil {
			return err
		}
		pos = p
	}
	if err := j.start(ctx); err != nil {
		return err
	}
	if err := j.checkHistory(ctx); err != nil {
		return err
	}
	if err := j.read(ctx, pos); err != nil {
		// A database the journal cannot read (a release before migration
		// 0005 migrated it, during a rolling deploy) must not stop this
		// node from acknowledging: it holds what it cannot apply again.
		j.passOver(pos)
		return err
	}
	j.forget(time.Now())
	j.applyPending(ctx)
	return nil
}

// start has the first Step read the newest Max changes of the log, not
// all of it.
func (j *Journal) start(ctx context.Context) error {
	if j.started {
		return nil
	}
	last, err := j.Source.LastChangeSeq(ctx)
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.lastSeq = max(0, last-int64(cmp.Or(j.Max, DefaultMax)))
	j.started = true
	j.mu.Unlock()
	return nil
}

// read appends the changes after lastSeq, each with pos: the database
// was read at pos or later, so it holds them all.
func (j *Journal) read(ctx context.Context, pos uint64) error {
	j.mu.Lock()
	after := j.lastSeq
	j.mu.Unlock()
	now := time.Now()
	var got []entry
	for {
		ws, err := j.Source.WrittenAfter(ctx, after, readBatch)
		if err != nil {
			return err
		}
		for _, w := range ws {
			after = w.Seq
			if w.ID == "" {
				continue // made by a release before change ids: it cannot be told apart
			}
			got = append(got, entry{Written: w, txid: pos, read: now})
		}
		if len(ws) < readBatch {
			break
		}
	}
	j.mu.Lock()
	j.entries = append(j.entries, got...)
	for _, e := range got {
		j.bytes += len(e.Body)
	}
	j.lastSeq = after
	j.mu.Unlock()
	// After the log went back, so did the position: Through follows it.
	j.passOver(pos)
	return nil
}

// passOver moves Through to pos without the changes up to it.
func (j *Journal) passOver(pos uint64) {
	j.mu.Lock()
	moved := pos != j.through
	j.through = pos
	j.mu.Unlock()
	if moved && j.OnThrough != nil {
		j.OnThrough()
	}
}

// checkHistory looks whether the newest change held is still in the
// change log. When it is not, the log went back (LiteFS reset this node
// to a new primary's history): the changes held that the log lacks are
// to be applied again, and reading goes on from before the first of them.
func (j *Journal) checkHistory(ctx context.Context) error {
	j.mu.Lock()
	if len(j.entries) == 0 {
		j.mu.Unlock()
		return nil
	}
	newest := j.entries[len(j.entries)-1].Change
	j.mu.Unlock()
	has, err := j.Source.HasChanges(ctx, []app.Change{newest})
	if err != nil || has[newest.ID] {
		return err
	}
	j.mu.Lock()
	held := make([]app.Change, len(j.entries))
	for i, e := range j.entries {
		held[i] = e.Change
	}
	j.mu.Unlock()
	if has, err = j.Source.HasChanges(ctx, held); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var kept []entry
	lacked := 0
	for _, e := range j.entries[:len(held)] {
		if has[e.ID] {
			kept = append(kept, e)
			continue
		}
		if lacked == 0 {
			j.lastSeq = e.Seq - 1
		}
		lacked++
		j.bytes -= len(e.Body)
		e.read = time.Now() // kept for Keep from now, to be applied again
		j.pending = append(j.pending, e)
	}
	j.entries = append(kept, j.entries[len(held):]...)
	j.Logger.Warn("the change log went back: applying again, through the primary, the changes it lacks", "changes", lacked)
	return nil
}

// forget drops what every candidate holds, what is older than Keep, and
// the oldest beyond Max; a change still to be applied again stays for
// Keep.
func (j *Journal) forget(now time.Time) {
	keep, limit, limitBytes := cmp.Or(j.Keep, DefaultKeep), cmp.Or(j.Max, DefaultMax), cmp.Or(j.MaxBytes, DefaultMaxBytes)
	var all uint64
	if j.HeldByAll != nil {
		all = j.HeldByAll()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for n < len(j.entries) {
		e := j.entries[n]
		if now.Sub(e.read) < keep && (all == 0 || e.txid > all) && len(j.entries)-n <= limit && j.bytes <= limitBytes {
			break
		}
		j.bytes -= len(e.Body)
		n++
	}
	j.entries = j.entries[n:]
	n = 0
	for n < len(j.pending) && now.Sub(j.pending[n].read) >= keep {
		j.Logger.Warn("a change was not applied again in time: dropped", "change", j.pending[n].ID, "op", j.pending[n].Op, "note", j.pending[n].NoteID)
		n++
	}
	j.pending = j.pending[n:]
}

// applyPending applies again, in order, the changes the database lacks,
// until one fails for a reason that may pass: it is tried again at the
// next Step.
func (j *Journal) applyPending(ctx context.Context) {
	for {
		j.mu.Lock()
		if len(j.pending) == 0 {
			clear(j.moved)
			j.mu.Unlock()
			return
		}
		w := j.pending[0].Written
		orig := w.NoteID
		if id, ok := j.moved[orig]; ok {
			w.NoteID = id
		}
		j.mu.Unlock()
		l, err := j.Reapply(ctx, w)
		if err != nil && !errors.Is(err, ErrRefused) {
			j.Logger.Warn("applying a change again failed; trying again", "change", w.ID, "op", w.Op, "note", w.NoteID, "err", err)
			return
		}
		j.mu.Lock()
		j.pending = j.pending[1:]
		if err == nil && w.Op == app.OpCreated && l.NoteID != orig {
			j.moved[orig] = l.NoteID
		}
		j.mu.Unlock()
		if err != nil {
			j.Logger.Warn("a change was not applied again: refused", "change", w.ID, "op", w.Op, "note", w.NoteID, "err", err)
			continue
		}
		j.Logger.Info("applied a change again through the primary", "change", w.ID, "op", w.Op, "user", w.UserID,
			"note", w.NoteID, "landed_as", l.NoteID, "already_there", l.Replayed)
		if j.OnReapplied != nil {
			j.OnReapplied(w, l)
		}
	}
}
