-- Note ids are never used again (AUTOINCREMENT), every note has a revision,
-- and a deleted note is kept for a short while so that it can be restored.
--
-- The table is rebuilt because SQLite cannot add AUTOINCREMENT to a table.
-- It keeps its name and every column, so a release running beside this one
-- during a rolling deploy (docs/DEPLOY.md) still reads and writes it: its
-- inserts take ids that are never reused either, and the trigger below
-- bumps the revision of the notes it updates.
CREATE TABLE notes_v2 (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	body       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	rev        INTEGER NOT NULL DEFAULT 1
);
INSERT INTO notes_v2 (id, user_id, body, created_at, updated_at)
	SELECT id, user_id, body, created_at, updated_at FROM notes;

-- Ids handed out before and since deleted are not handed out again: the
-- change log still names the recent ones. (The copy above made a row of
-- its own here; there must be one.)
DELETE FROM sqlite_sequence WHERE name = 'notes_v2';
INSERT INTO sqlite_sequence (name, seq)
	SELECT 'notes_v2', MAX(COALESCE((SELECT MAX(id) FROM notes), 0),
	                       COALESCE((SELECT MAX(note_id) FROM changes), 0));

DROP TABLE notes;
ALTER TABLE notes_v2 RENAME TO notes;
CREATE INDEX notes_user_id ON notes(user_id, id);

-- An update that does not set rev itself (an older release's) still moves
-- it, so that an If-Match against the old revision fails.
CREATE TRIGGER notes_rev_bump AFTER UPDATE OF body ON notes
WHEN NEW.rev = OLD.rev
BEGIN
	UPDATE notes SET rev = OLD.rev + 1 WHERE id = NEW.id;
END;

-- Deleted notes, kept until the undo window has passed (Store.Purge).
CREATE TABLE deleted_notes (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL,
	body       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	rev        INTEGER NOT NULL,
	deleted_at INTEGER NOT NULL
);
CREATE INDEX deleted_notes_deleted_at ON deleted_notes(deleted_at);
