-- Fewer pages written by each note write. Under LiteFS every page a
-- transaction changes is a WAL frame written through FUSE, copied into the
-- transaction's LTX file, sent to every replica and applied there
-- (docs/BENCHMARKS.md, "The write through LiteFS"). Three indexes cost a
-- page each on every write for work that is rare:
--
--   changes_created_at and idempotency_created_at served only the prune,
--   every ten minutes; it now walks each table in insertion order from
--   its oldest row and stops at the first one it keeps (Store.Prune).
--   changes_change_id served the journal's "does the log still hold this
--   change?", which now looks the change up by its user and version
--   (changes_user_version) and compares the id (Store.HasChanges).
--
-- A release before this one, running beside it during a rolling deploy
-- (docs/DEPLOY.md), still reads and writes every table; its prune and its
-- look-up by change id scan the tables instead, as slowly as that is, and
-- are right.
DROP INDEX IF EXISTS changes_created_at;
DROP INDEX IF EXISTS changes_change_id;
DROP INDEX IF EXISTS idempotency_created_at;
