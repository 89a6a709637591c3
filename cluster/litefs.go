package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"notesync/internal/mountinfo"
)

// LiteFS reads the state LiteFS exposes in its FUSE mount:
//
//   - <mount>/.primary holds the primary's hostname, only on a connected
//     replica; on the primary it does not exist.
//   - <mount>/<db>-pos holds "TXID/checksum" in hex: the replication
//     position of this node's copy of the database.
//
// A zero LiteFS (empty Dir) describes a plain database without LiteFS: the
// node is always primary.
type LiteFS struct {
	// Dir is the FUSE mount directory.
	Dir string
	// DB is the database file name inside the mount.
	DB string
	// API is LiteFS's HTTP address (http://127.0.0.1:20202). Its event
	// stream is the authority on this node's role: a replica that lost its
	// primary has no .primary file either, and must not take writes.
	API string

	// OnPromoted, if set, is called when LiteFS's event stream says this
	// node became the primary after saying it was a replica: a Consul
	// lease moved here while the node runs. It is not called for the role
	// the node starts with. It runs on the event stream's goroutine and
	// must not block; set it before FollowEvents starts.
	OnPromoted func()
	said       string // the role the stream last said: "", "primary" or "replica"

	mu  sync.Mutex
	pos *os.File

	role atomic.Pointer[role] // from the event stream; nil until known
}

// role is what LiteFS last said about the lease.
type role struct {
	primary  bool
	hostname string // the primary's hostname
}

// Enabled reports whether the node runs on a LiteFS mount.
func (l *LiteFS) Enabled() bool { return l != nil && l.Dir != "" }

// ErrNotMounted means the LiteFS mount is not there (yet).
var ErrNotMounted = errors.New("litefs mount not ready")

// Ready reports whether the mount is up: LiteFS creates .primary or lets
// the database be opened only once mounted; a mount point that is a plain
// empty directory is not ready.
func (l *LiteFS) Ready() error {
	if !l.Enabled() {
		return nil
	}
	if !mountinfo.IsMountPoint(l.Dir) {
		return fmt.Errorf("%w: %s is not mounted", ErrNotMounted, l.Dir)
	}
	return nil
}

// IsPrimary reports whether this node holds the lease now. Without LiteFS
// it is always true. With the API set, it is what LiteFS's event stream last
// said (false while the stream is down); without it, the absence of
// .primary on the mount.
func (l *LiteFS) IsPrimary() bool {
	if !l.Enabled() {
		return true
	}
	if l.API != "" {
		r := l.role.Load()
		return r != nil && r.primary
	}
	_, err := os.Stat(filepath.Join(l.Dir, ".primary"))
	return errors.Is(err, os.ErrNotExist) && mountinfo.IsMountPoint(l.Dir)
}

// Primary returns the primary's LiteFS hostname as this replica sees it, or
// "" on the primary itself (and while no primary is known).
func (l *LiteFS) Primary() string {
	if !l.Enabled() {
		return ""
	}
	if l.API != "" {
		if r := l.role.Load(); r != nil && !r.primary {
			return r.hostname
		}
		return ""
	}
	b, err := os.ReadFile(filepath.Join(l.Dir, ".primary"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TXID returns the replication position of this node's database (0 before
// the database exists, or without LiteFS). The file is kept open and read
// with pread, which stays fresh on the FUSE mount at about 50 µs a read.
func (l *LiteFS) TXID() (uint64, error) {
	txid, _, err := l.Pos()
	return txid, err
}

// Pos returns the replication position of this node's database with the
// database's checksum at it (zeros before the database exists, or without
// LiteFS): two copies at the same TXID hold the same data only if their
// checksums agree.
func (l *LiteFS) Pos() (txid, checksum uint64, err error) {
	if !l.Enabled() {
		return 0, 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pos == nil {
		f, err := os.Open(filepath.Join(l.Dir, l.DB+"-pos"))
		if errors.Is(err, os.ErrNotExist) {
			return 0, 0, nil
		} else if err != nil {
			return 0, 0, err
		}
		l.pos = f
	}
	var buf [64]byte
	n, err := l.pos.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		l.pos.Close()
		l.pos = nil
		return 0, 0, err
	}
	return parsePos(string(buf[:n]))
}

// parsePos parses "%016x/%016x" (TXID/checksum).
func parsePos(s string) (txid, checksum uint64, err error) {
	t, c, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("malformed litefs position %q", s)
	}
	if txid, err = strconv.ParseUint(t, 16, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed litefs position %q", s)
	}
	if checksum, err = strconv.ParseUint(c, 16, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed litefs position %q", s)
	}
	return txid, checksum, nil
}

// Close releases the position file.
func (l *LiteFS) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pos != nil {
		err := l.pos.Close()
		l.pos = nil
		return err
	}
	return nil
}

// WaitMount waits up to 30 s for the mount (LiteFS starts the app only
// once mounted, but a node started by hand may race it).
func (l *LiteFS) WaitMount(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := l.Ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// WaitRole waits up to 30 s until LiteFS's event stream (followed by
// Changes) has said whether this node is the primary.
func (l *LiteFS) WaitRole(ctx context.Context) error {
	if !l.Enabled() || l.API == "" {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !l.RoleKnown() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no role from LiteFS at %s within 30 s (check -litefs-url)", l.API)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// pause waits for d, or returns ctx's error if ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// RoleKnown reports whether LiteFS has told this node its role (always
// true without the API).
func (l *LiteFS) RoleKnown() bool {
	return !l.Enabled() || l.API == "" || l.role.Load() != nil
}

// Tx is what LiteFS's event stream says of a transaction: on the primary,
// one this node committed; on a replica, one LiteFS applied to this node's
// copy of the database, which can be read from that moment on.
type Tx struct {
	// TXID is the database's position after the transaction. 0 means the
	// stream (re)started: transactions may have come and gone unannounced.
	TXID uint64
	// Checksum is the database's checksum after it (LiteFS's
	// postApplyChecksum).
	Checksum uint64
	// At is when this node heard of it.
	At time.Time
}

// FollowEvents reads LiteFS's event stream (GET /events, one JSON object a
// line) until ctx ends, reconnecting when it drops: it keeps this node's
// role current and calls onTx after each transaction of the database (DB),
// and with a zero TXID each time the stream starts. While the stream is
// down the node counts as a replica. onTx runs on the stream's goroutine
// and must not block.
func (l *LiteFS) FollowEvents(ctx context.Context, onTx func(Tx), logger *slog.Logger) {
	if !l.Enabled() || l.API == "" {
		return
	}
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.followOnce(ctx, onTx)
		l.role.Store(nil)
		if ctx.Err() != nil {
			return
		}
		logger.Debug("litefs event stream ended; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// event is one line of LiteFS's event stream: "init" and "primaryChange"
// carry the role, "tx" a transaction (its TXID in hex).
type event struct {
	Type string `json:"type"`
	DB   string `json:"db"`
	Data struct {
		IsPrimary bool   `json:"isPrimary"`
		Hostname  string `json:"hostname"`
		TXID      string `json:"txID"`
		Checksum  string `json:"postApplyChecksum"`
	} `json:"data"`
}

func (l *LiteFS) followOnce(ctx context.Context, onTx func(Tx)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(l.API, "/")+"/events", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("litefs /events: %s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			return err
		}
		switch ev.Type {
		case "init", "primaryChange":
			l.role.Store(&role{primary: ev.Data.IsPrimary, hostname: ev.Data.Hostname})
			l.heard(ev.Data.IsPrimary)
			if ev.Type == "init" {
				onTx(Tx{At: time.Now()})
			}
		case "tx":
			if ev.DB != "" && l.DB != "" && ev.DB != l.DB {
				continue // another database on the same mount
			}
			txid, err := strconv.ParseUint(ev.Data.TXID, 16, 64)
			if err != nil {
				return fmt.Errorf("litefs /events: malformed txID %q", ev.Data.TXID)
			}
			var checksum uint64 // 0: not said
			if ev.Data.Checksum != "" {
				checksum, err = strconv.ParseUint(ev.Data.Checksum, 16, 64)
			}
			if err != nil {
				return fmt.Errorf("litefs /events: malformed postApplyChecksum %q", ev.Data.Checksum)
			}
			onTx(Tx{TXID: txid, Checksum: checksum, At: time.Now()})
		}
	}
}

// heard notes the role the event stream said, and calls OnPromoted when it
// went from replica to primary. Only the stream's goroutine calls it; a
// dropped stream does not forget what was said.
func (l *LiteFS) heard(primary bool) {
	now := "replica"
	if primary {
		now = "primary"
	}
	if l.said == "replica" && primary && l.OnPromoted != nil {
		l.OnPromoted()
	}
	l.said = now
}
