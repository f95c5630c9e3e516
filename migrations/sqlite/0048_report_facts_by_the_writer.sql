-- A chat's facts for reports (0035) are taken and kept by the store's single
-- writer as it inserts each event (`store/sqlite_writer.rs`, `insert_event`),
-- no longer by triggers on `events`. A statement that can fire a trigger is
-- one that may change many rows, so SQLite kept a statement journal for
-- every insert, copying each page it changed: for every stored message, on
-- the two triggers' account, though neither does anything for an open chat.
-- Measured as the writer writes (130 messages a commit, fsync'd, the real
-- schema): the insert's CPU 0.62–0.88x of what it was with the triggers and
-- the check of 0047 as a list, 0.79–0.89x with the check alone
-- (`examples/event_layouts.rs --schema`, docs/benchmarks.md). The writer
-- knows which chats have facts (their row's `messages` is set), so an open
-- chat's message costs nothing more.
--
-- The same statements, the same facts: taken from the events at a `closed`
-- event, then moved on by each message or assignment. Every event is
-- inserted by the writer (an offline message's too, in its `Exec`), and the
-- bench's seed takes the facts of its closed chats as the writer does.
DROP TRIGGER events_facts_kept;
DROP TRIGGER events_facts_at_close;
