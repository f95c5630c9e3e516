-- Mirrors migrations/sqlite/0035_report_facts.sql.
-- Reports (`store/reports.rs`) read a chat's facts from its row instead
-- of walking its events: with a year of history a 30-day report covered
-- some 80,000 chats and 800,000 events (docs/benchmarks.md, `bench reports`).
--
-- The facts are taken when a chat closes (its `closed` event), not kept
-- on every message. Once taken, they are kept exact by every later event
-- (a rating, a message after a reopen). A row whose `messages` is NULL has
-- no facts yet (an open chat): reports read its events. Events are never
-- deleted, nor their kind or time changed. Additive: nothing to require.
ALTER TABLE conversations ADD COLUMN first_visitor_at BIGINT;
ALTER TABLE conversations ADD COLUMN first_assigned_at BIGINT;
ALTER TABLE conversations ADD COLUMN first_agent_at BIGINT;
ALTER TABLE conversations ADD COLUMN messages BIGINT;
-- The chats without facts yet, by the same key as every chat: few, so a
-- report finds them without reading each chat of its range twice.
CREATE INDEX conversations_without_facts ON conversations(site_id, created_at) WHERE messages IS NULL;

UPDATE conversations c
SET first_visitor_at = f.first_visitor_at, first_assigned_at = f.first_assigned_at,
    first_agent_at = f.first_agent_at, messages = f.messages
FROM (SELECT conversation_id,
             min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END) AS first_visitor_at,
             min(CASE WHEN kind = 'assigned' THEN created_at END) AS first_assigned_at,
             min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END) AS first_agent_at,
             count(CASE WHEN kind = 'message' THEN 1 END) AS messages
      FROM events GROUP BY conversation_id) AS f
WHERE f.conversation_id = c.id;

CREATE FUNCTION events_facts_at_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
    SET (first_visitor_at, first_assigned_at, first_agent_at, messages) = (
        SELECT min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END),
               min(CASE WHEN kind = 'assigned' THEN created_at END),
               min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END),
               count(CASE WHEN kind = 'message' THEN 1 END)
        FROM events WHERE conversation_id = NEW.conversation_id)
    WHERE id = NEW.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER events_facts_at_close AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.kind = 'closed') EXECUTE FUNCTION events_facts_at_close();

CREATE FUNCTION events_facts_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
    SET messages = messages + CASE WHEN NEW.kind = 'message' THEN 1 ELSE 0 END,
        first_visitor_at = CASE WHEN NEW.kind = 'message' AND NEW.author_kind = 'visitor'
            THEN least(first_visitor_at, NEW.created_at) ELSE first_visitor_at END,
        first_assigned_at = CASE WHEN NEW.kind = 'assigned'
            THEN least(first_assigned_at, NEW.created_at) ELSE first_assigned_at END,
        first_agent_at = CASE WHEN NEW.kind = 'message' AND NEW.author_kind = 'agent'
            THEN least(first_agent_at, NEW.created_at) ELSE first_agent_at END
    WHERE id = NEW.conversation_id AND messages IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER events_facts_kept AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.kind IN ('message', 'assigned')) EXECUTE FUNCTION events_facts_kept();
