-- A conversation's last_seq is its newest event's seq: read from the end of
-- its range in the events tree rather than kept in the conversation's row.
-- Keeping it there rewrote a conversations page into the WAL for every
-- message (a sixth of the pages a relay batch wrote). Readers select from
-- the view; the group-commit writer, the only writer of events, caches it.
ALTER TABLE conversations DROP COLUMN last_seq;
CREATE VIEW conversations_with_seq AS
SELECT c.*,
       coalesce((SELECT e.seq FROM events e WHERE e.conversation_id = c.id ORDER BY e.seq DESC LIMIT 1), 0)
           AS last_seq
FROM conversations c;
