// Package sqlite is the notes store on SQLite: the database and its
// embedded migrations, the group-commit writer, and the rows of notes,
// users, sessions, idempotency keys and the change log, with their pruning
// and the WAL checkpoint. Each exported Store method owns its transaction.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"notesync/internal/fileperm"
)

// writerDriver is the driver of the writer connection: SQLite, with the
// WAL's automatic checkpoint moved out of the way (see Checkpoint), and
// its temporary files in memory. Each write of a group commit runs in a
// savepoint, and SQLite keeps the page a savepoint first changes in a
// sub-journal, a temporary file once it passes 64 KiB: two writes to
// /var/tmp for every page of every write of a large batch. In memory it
// holds at most the pages of one batch's transaction.
const writerDriver = "sqlite3_notesync_writer"

// walAutoCheckpoint is the writer's automatic checkpoint threshold in WAL
// pages: a safety net ten times SQLite's default, reached only if the
// background checkpoints stop.
const walAutoCheckpoint = 10000

func init() {
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint = "+strconv.Itoa(walAutoCheckpoint)+"; PRAGMA temp_store = MEMORY", nil)
		return err
	}})
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the notes database: one writer connection (SQLite allows one writer
// at a time; a pool would only queue on the lock) and a pool of readers.
//
// The journal mode is set to WAL once, when the database file is created; it
// persists in the file. It is never put in the connection string, because a
// LiteFS replica refuses to change it.
type DB struct {
	Path string

	write *sql.DB
	read  *sql.DB
	ckpt  *sql.DB // one connection for Checkpoint
}

// stmtCacheSize is how many prepared statements each connection keeps:
// more than the store's distinct queries.
const stmtCacheSize = 64

// BusyTimeout is how long a connection waits for a lock before SQLITE_BUSY.
const BusyTimeout = 5 * time.Second

// OpenDB opens (creating when needed) the database at path. When migrate is
// true, pending migrations are applied; a node that is not the primary passes
// false and only reads the schema version.
func OpenDB(ctx context.Context, path string, migrate bool) (*DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database dir: %w", err)
		}
	}
	// Writers take the lock at BEGIN so concurrent transactions queue on the
	// busy timeout instead of failing on upgrade.
	write, err := openPool(writerDriver, dsn(path, "_txlock", "immediate"), 1)
	if err != nil {
		return nil, fmt.Errorf("open db %q: %w", path, err)
	}
	read, err := openPool("sqlite3", dsn(path, "_query_only", "true"), 8)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open db %q: %w", path, err)
	}
	ckpt, err := openPool("sqlite3", dsn(path, "_busy_timeout", "0"), 1)
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open db %q: %w", path, err)
	}

	db := &DB{Path: path, write: write, read: read, ckpt: ckpt}
	if migrate {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := restrictFiles(path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// restrictFiles makes the database and its -wal and -shm files readable by
// this user only: they hold session ids. SQLite creates a database 0644
// and gives its -wal and -shm files the database's mode, so narrowing the
// database covers those made later. (Directories are made 0700.) On a
// LiteFS mount, modes are LiteFS's own and this changes nothing.
func restrictFiles(path string) error {
	if err := fileperm.Restrict(path, path+"-wal", path+"-shm"); err != nil {
		return fmt.Errorf("restrict database files: %w", err)
	}
	return nil
}

// openPool opens a pool of at most conns connections that are kept open.
func openPool(driver, dsn string, conns int) (*sql.DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// dsn is the connection string of path with the settings every
// connection shares, plus one of its own (key, value).
func dsn(path, key, value string) string {
	params := url.Values{}
	params.Set("_busy_timeout", strconv.Itoa(int(BusyTimeout/time.Millisecond)))
	params.Set("_foreign_keys", "on")
	params.Set("_synchronous", "NORMAL")
	// Each connection keeps its prepared statements: the writer runs the
	// same seven for every write of a group commit, and preparing them
	// again was 6 % of the primary's CPU at 750 writes/s.
	params.Set("_stmt_cache_size", strconv.Itoa(stmtCacheSize))
	params.Set(key, value)
	return "file:" + path + "?" + params.Encode()
}

// Close closes the pools.
func (db *DB) Close() error {
	return errors.Join(db.write.Close(), db.read.Close(), db.ckpt.Close())
}

// Checkpoint copies the WAL's committed pages into the database file
// without waiting for readers or the writer (a PASSIVE checkpoint), and
// reports how many pages the WAL held and how many were copied. Call it
// regularly on the node that writes: the writer's own automatic checkpoint
// is held back (walAutoCheckpoint) because it ran inside the commit of
// whichever write crossed SQLite's 1,000-page threshold, adding a
// checkpoint's fsyncs to that write and to its push.
func (db *DB) Checkpoint(ctx context.Context) (walPages, copied int, err error) {
	var busy int
	err = db.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &walPages, &copied)
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	return walPages, copied, nil
}

// HoldWrites takes the connections that write (the writer's and the
// checkpoint's), each once the transaction it runs has ended, so that
// nothing writes to the database until release is called: LiteFS fails a
// transaction that is open while its lease moves, and exits. It gives up,
// releasing what it took, when ctx ends first.
func (db *DB) HoldWrites(ctx context.Context) (release func(), err error) {
	var held []*sql.Conn
	release = func() {
		for _, c := range held {
			_ = c.Close()
		}
	}
	for _, pool := range []*sql.DB{db.write, db.ckpt} {
		c, err := pool.Conn(ctx)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, c)
	}
	return release, nil
}

// ReadPool and WritePool are the database's connection pools, for tests
// that look beneath the store. The node writes only through Store.
func (db *DB) ReadPool() *sql.DB  { return db.read }
func (db *DB) WritePool() *sql.DB { return db.write }

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func (db *DB) ensureWAL(ctx context.Context) error {
	var mode string
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if strings.EqualFold(mode, "wal") {
		return nil
	}
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set journal mode: %w", err)
	}
	return nil
}

// Migrations returns the embedded migrations in order: version → SQL.
// Each has a number of its own; a number may be missing, so that
// migrations written side by side keep the numbers they were given.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must start with a positive number and _", name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %q and %q have one number", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// LatestSchemaVersion is the schema version this build understands.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate sets WAL mode on a new database and applies pending migrations,
// each in its own transaction together with its row in schema_migrations.
// Only the primary may call it; a node that becomes primary while running
// calls it then. Migrations are expand-then-contract: a release never
// breaks the one running beside it during a rolling deploy.
func (db *DB) Migrate(ctx context.Context) error {
	if err := db.ensureWAL(ctx); err != nil {
		return err
	}
	return db.migrate(ctx)
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	current, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > LatestSchemaVersion() {
		// A newer release migrated already (a rolling deploy, or a roll
		// back). Migrations are expand-then-contract, so this build still
		// runs against the newer schema; /readyz says so.
		return nil
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("record migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit migration %s: %w", m.name, err)
		}
	}
	return nil
}

// SchemaVersion reads the highest applied migration (0 for a new
// database). It is read live: on a replica the schema arrives by
// replication, and during a rolling deploy it may move under a running node.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := db.read.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	if isNoSuchTable(err) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// isNoSuchTable reports a query on a table that does not exist yet, as on a
// replica before the schema has replicated.
func isNoSuchTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}
