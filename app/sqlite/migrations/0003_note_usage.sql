-- What each user's notes take, kept up to date by triggers so that the
-- per-user quota (docs/PROTOCOL.md §8) is checked against the database in
-- the write's own transaction, whichever node served the write. Triggers
-- rather than the store's code, so that a release running beside this one
-- during a rolling deploy (docs/DEPLOY.md), which knows nothing of these
-- columns, still keeps them right. Bytes are the bodies' UTF-8 bytes.
ALTER TABLE users ADD COLUMN note_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN note_bytes INTEGER NOT NULL DEFAULT 0;

UPDATE users SET
	note_count = (SELECT COUNT(*) FROM notes WHERE notes.user_id = users.id),
	note_bytes = (SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM notes WHERE notes.user_id = users.id);

CREATE TRIGGER notes_usage_insert AFTER INSERT ON notes
BEGIN
	UPDATE users SET note_count = note_count + 1, note_bytes = note_bytes + length(CAST(NEW.body AS BLOB))
	WHERE id = NEW.user_id;
END;

CREATE TRIGGER notes_usage_delete AFTER DELETE ON notes
BEGIN
	UPDATE users SET note_count = note_count - 1, note_bytes = note_bytes - length(CAST(OLD.body AS BLOB))
	WHERE id = OLD.user_id;
END;

CREATE TRIGGER notes_usage_update AFTER UPDATE OF body ON notes
BEGIN
	UPDATE users SET note_bytes = note_bytes - length(CAST(OLD.body AS BLOB)) + length(CAST(NEW.body AS BLOB))
	WHERE id = NEW.user_id;
END;
