-- Accounts. version counts every change to the user's notes.
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	username      TEXT    NOT NULL UNIQUE,
	password_hash BLOB    NOT NULL,
	version       INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL
);

CREATE TABLE notes (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	body       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX notes_user_id ON notes(user_id, id);

-- The change log: every node tails it (by seq) to push note_changed to the
-- connections it holds, on the primary and on replicas alike.
CREATE TABLE changes (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL,
	version    INTEGER NOT NULL,
	op         TEXT    NOT NULL,
	note_id    INTEGER NOT NULL,
	node       TEXT    NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX changes_created_at ON changes(created_at);

-- Server-side sessions: the cookie holds only the signed id.
CREATE TABLE sessions (
	id         TEXT    PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	data       BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user_id ON sessions(user_id);
CREATE INDEX sessions_expires_at ON sessions(expires_at);

-- First outcome of each write made with an Idempotency-Key.
CREATE TABLE idempotency (
	user_id     INTEGER NOT NULL,
	key         TEXT    NOT NULL,
	fingerprint TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	body        BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_created_at ON idempotency(created_at);
