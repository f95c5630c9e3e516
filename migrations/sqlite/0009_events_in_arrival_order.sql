-- Events in arrival order, found by a (conversation, seq) index. Clustered
-- by conversation, every group commit rewrote one leaf of the events tree
-- per live conversation, and its parents, into the WAL. In arrival order a
-- commit's rows share the table's last pages and only the index's small
-- entries scatter: `examples/event_layouts.rs` measured 0.72x the writer's
-- time per row (docs/benchmarks.md). Reads keep their queries: the index
-- answers "a conversation's events after seq N" and its last seq.
DROP VIEW conversations_with_seq;
CREATE TABLE events_in_arrival_order (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    author_kind     TEXT NOT NULL CHECK (author_kind IN ('visitor', 'agent', 'system')),
    author_id       TEXT,
    client_id       TEXT,
    body            TEXT,
    data            TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
INSERT INTO events_in_arrival_order
    (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at)
SELECT conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at
FROM events
ORDER BY created_at, conversation_id, seq;
DROP TABLE events;
ALTER TABLE events_in_arrival_order RENAME TO events;
CREATE UNIQUE INDEX events_conversation_seq ON events(conversation_id, seq);
CREATE VIEW conversations_with_seq AS
SELECT c.*,
       coalesce((SELECT e.seq FROM events e WHERE e.conversation_id = c.id ORDER BY e.seq DESC LIMIT 1), 0)
           AS last_seq
FROM conversations c;
