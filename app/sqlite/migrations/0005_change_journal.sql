-- What a node needs to apply a change again through another primary
-- (docs/PROTOCOL.md §11): the Idempotency-Key the write came with, and
-- the revision the change left its note at, whose text the note (or
-- note_revisions) still has. A node keeps recent changes in memory from
-- these; once LiteFS has brought it in line with a new primary whose
-- history lacks some, it applies them again there, once, looked up by
-- change_id.
ALTER TABLE changes ADD COLUMN idem_key TEXT;
ALTER TABLE changes ADD COLUMN rev INTEGER;
CREATE INDEX changes_change_id ON changes(change_id);
