-- Earlier texts of each note, so that an edit made from an older revision
-- is merged against the text it started from (docs/PROTOCOL.md §12).
--
-- Kept by triggers rather than the store's code, so that a release running
-- beside this one during a rolling deploy (docs/DEPLOY.md), which knows
-- nothing of this table, still keeps it right: every update of a note's
-- body keeps the text it replaces, with its revision, and each note keeps
-- its last 20 texts at most. They do not count against the per-user quota
-- (a person at the limit can still edit); the store bounds a user's kept
-- texts by the quota's bytes too, oldest first, with revision_bytes.
-- A note's texts go when the note is forgotten for good (Store.Purge).
ALTER TABLE users ADD COLUMN revision_bytes INTEGER NOT NULL DEFAULT 0;

CREATE TABLE note_revisions (
	id         INTEGER PRIMARY KEY, -- the order they were kept in
	note_id    INTEGER NOT NULL,
	rev        INTEGER NOT NULL,
	user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	bytes      INTEGER NOT NULL,    -- the body's UTF-8 bytes, read without the body
	updated_at INTEGER NOT NULL,    -- when this text was saved
	body       TEXT    NOT NULL
);
CREATE UNIQUE INDEX note_revisions_note_rev ON note_revisions(note_id, rev);
CREATE INDEX note_revisions_user ON note_revisions(user_id, id);

CREATE TRIGGER note_revisions_keep AFTER UPDATE OF body ON notes
BEGIN
	DELETE FROM note_revisions WHERE note_id = OLD.id AND (rev >= OLD.rev OR rev <= OLD.rev - 20);
	INSERT INTO note_revisions (note_id, rev, user_id, bytes, updated_at, body)
	VALUES (OLD.id, OLD.rev, OLD.user_id, length(CAST(OLD.body AS BLOB)), OLD.updated_at, OLD.body);
END;

CREATE TRIGGER note_revisions_bytes_insert AFTER INSERT ON note_revisions
BEGIN
	UPDATE users SET revision_bytes = revision_bytes + NEW.bytes WHERE id = NEW.user_id;
END;

CREATE TRIGGER note_revisions_bytes_delete AFTER DELETE ON note_revisions
BEGIN
	UPDATE users SET revision_bytes = revision_bytes - OLD.bytes WHERE id = OLD.user_id;
END;
