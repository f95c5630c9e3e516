-- `events.conversation_id` no longer names `conversations(id)` as a foreign
-- key. With foreign keys on, as the writer runs, every stored message looked
-- its conversation up in `conversations`' key index, although the writer
-- had just found that conversation itself: it is the only writer of events
-- and inserts one only for a conversation it has read (its cache, or the
-- guard of the same transaction), and no conversation is ever deleted.
-- Measured as the writer writes (130 messages a commit, fsync'd, the real
-- schema, `examples/event_layouts.rs --schema`): 0.3 µs of the insert's CPU
-- a message, some 2%, and the server's writer 0.98x beside socket.io
-- (docs/benchmarks.md). PostgreSQL keeps its foreign key: it was not
-- measured there, and a cluster's nodes share that store.
--
-- A foreign key is not stored in the rows, so the table is not rebuilt:
-- SQLite's documented way to remove one is to change the table's text in
-- the schema ("Making Other Kinds Of Table Schema Changes"), as migration
-- 0047 did for the checks. A node of the previous release reads the new
-- text as it reads the old.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, 'conversation_id TEXT NOT NULL REFERENCES conversations(id),',
                  'conversation_id TEXT NOT NULL,')
WHERE type = 'table' AND name = 'events';
-- This connection reads the schema again.
PRAGMA writable_schema = RESET;
-- Every other connection must too (see 0047).
CREATE TABLE schema_reread (x);
DROP TABLE schema_reread;
