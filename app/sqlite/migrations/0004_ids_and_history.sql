-- Note ids that tell nothing, a list order of each user's own, and
-- changes a tab can tell apart across histories (docs/PROTOCOL.md §3,
-- §11).
--
-- A note's id is a random number below 2^53 that the store chooses
-- (Store.CreateNote), no longer the next of a sequence that every user
-- shares: an id tells nothing of other users' notes, and an id handed
-- out in a history that a failover dropped is not handed out again in
-- the one that continues.
--
-- The list's order is created_version: the user's version when the note
-- was created, which counts only the user's own changes. Existing notes
-- are numbered 1, 2, 3… per user in the order of their ids, deleted ones
-- that can still be restored among them; every create bumped the user's
-- version, so the notes created from now on come after them.
ALTER TABLE notes ADD COLUMN created_version INTEGER;
ALTER TABLE deleted_notes ADD COLUMN created_version INTEGER;

UPDATE notes SET created_version = ranked.k FROM (
	SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS k
	FROM (SELECT id, user_id FROM notes UNION ALL SELECT id, user_id FROM deleted_notes)
) AS ranked WHERE ranked.id = notes.id;
UPDATE deleted_notes SET created_version = ranked.k FROM (
	SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS k
	FROM (SELECT id, user_id FROM notes UNION ALL SELECT id, user_id FROM deleted_notes)
) AS ranked WHERE ranked.id = deleted_notes.id;

DROP INDEX notes_user_id;
CREATE INDEX notes_user_created_version ON notes(user_id, created_version);

-- A note inserted without its place (by a release before this one,
-- running beside it during a rolling deploy, docs/DEPLOY.md) takes the
-- user's version, which that release bumped first, as this one does.
CREATE TRIGGER notes_created_version AFTER INSERT ON notes
WHEN NEW.created_version IS NULL
BEGIN
	UPDATE notes SET created_version = (SELECT version FROM users WHERE id = NEW.user_id) WHERE id = NEW.id;
END;

-- Each change has a random id (change_id), so that (version, change_id)
-- names one point of one history: after a failover that dropped changes,
-- the same version can be reached again by a different change. users'
-- change_id is that of the change at the user's version, kept by the
-- trigger below whichever release appended the change (NULL: unknown,
-- as for the changes made before this migration).
ALTER TABLE changes ADD COLUMN change_id TEXT;
ALTER TABLE users ADD COLUMN change_id TEXT;
CREATE INDEX changes_user_version ON changes(user_id, version);

CREATE TRIGGER changes_head AFTER INSERT ON changes
BEGIN
	UPDATE users SET change_id = NEW.change_id WHERE id = NEW.user_id;
END;
