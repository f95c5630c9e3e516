-- Reports (`store/reports.rs`) read a chat's facts from its row instead
-- of walking its events: with a year of history a 30-day report covered
-- some 80,000 chats and 800,000 events, read one by one from the events
-- table (docs/benchmarks.md, `bench reports`).
--
-- The facts are taken when a chat closes (its `closed` event), not kept
-- on every message: a message into an open chat writes no conversations
-- page (migration 0008 took that write away). Once taken, they are kept
-- exact by every later event (a rating, a message after a reopen). A row
-- whose `messages` is NULL has no facts yet (an open chat): reports read
-- its events. Events are never deleted, nor their kind or time changed.
ALTER TABLE conversations ADD COLUMN first_visitor_at INTEGER;
ALTER TABLE conversations ADD COLUMN first_assigned_at INTEGER;
ALTER TABLE conversations ADD COLUMN first_agent_at INTEGER;
ALTER TABLE conversations ADD COLUMN messages INTEGER;
-- The chats without facts yet, by the same key as every chat: few, so a
-- report finds them without reading each chat of its range twice.
CREATE INDEX conversations_without_facts ON conversations(site_id, created_at) WHERE messages IS NULL;

UPDATE conversations
SET first_visitor_at = f.first_visitor_at, first_assigned_at = f.first_assigned_at,
    first_agent_at = f.first_agent_at, messages = f.messages
FROM (SELECT conversation_id,
             min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END) AS first_visitor_at,
             min(CASE WHEN kind = 'assigned' THEN created_at END) AS first_assigned_at,
             min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END) AS first_agent_at,
             count(CASE WHEN kind = 'message' THEN 1 END) AS messages
      FROM events GROUP BY conversation_id) AS f
WHERE f.conversation_id = conversations.id;

CREATE TRIGGER events_facts_at_close AFTER INSERT ON events WHEN NEW.kind = 'closed'
BEGIN
    UPDATE conversations
    SET (first_visitor_at, first_assigned_at, first_agent_at, messages) = (
        SELECT min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END),
               min(CASE WHEN kind = 'assigned' THEN created_at END),
               min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END),
               count(CASE WHEN kind = 'message' THEN 1 END)
        FROM events WHERE conversation_id = NEW.conversation_id)
    WHERE id = NEW.conversation_id;
END;

CREATE TRIGGER events_facts_kept AFTER INSERT ON events WHEN NEW.kind IN ('message', 'assigned')
BEGIN
    UPDATE conversations
    SET messages = messages + (NEW.kind = 'message'),
        first_visitor_at = CASE WHEN NEW.kind = 'message' AND NEW.author_kind = 'visitor'
            THEN min(coalesce(first_visitor_at, NEW.created_at), NEW.created_at) ELSE first_visitor_at END,
        first_assigned_at = CASE WHEN NEW.kind = 'assigned'
            THEN min(coalesce(first_assigned_at, NEW.created_at), NEW.created_at) ELSE first_assigned_at END,
        first_agent_at = CASE WHEN NEW.kind = 'message' AND NEW.author_kind = 'agent'
            THEN min(coalesce(first_agent_at, NEW.created_at), NEW.created_at) ELSE first_agent_at END
    WHERE id = NEW.conversation_id AND messages IS NOT NULL;
END;
