-- When an agent first wrote in a chat, kept on its row while it is open
-- too, for the lead's scan for missed chats (`store/missed.rs`), which
-- looks every few seconds at every chat of the last three hours that no
-- agent has written in. It proved that by looking for an agent message
-- among the chat's events, and a planner without statistics on `events`
-- (autovacuum behind, or off) read every event of each chat for it in a
-- bitmap scan: 130 ms a scan with 200 chats of 3,000 events each, over a
-- second at the end of a minute of `bench relay-cluster`. The scan now
-- passes over a chat whose row says an agent wrote, reading no event;
-- with those rows set, the same scan took 1.3 ms (docs/benchmarks.md,
-- "The missed-chats scan").
--
-- Until now an open chat had no facts on its row (0028): they are taken
-- at its close. Now `first_agent_at` alone is set on an open chat's row,
-- once, by the statement that stores its first agent message (the trigger
-- of 0041 already runs once a statement and joins the conversations);
-- `messages` stays NULL, which is what says "no facts yet" to reports and
-- to that trigger, and the close takes every fact from the events as
-- before. SQLite needs none of this: its scan reads a chat's events in
-- `seq` order and stops at the first agent message.
--
-- Expand only. A node of the previous release scans as before; one that
-- writes a chat's first agent message while this runs, under the trigger
-- it had, leaves the row without the time, and the scan then looks for
-- the message among the events, as it always did: the row's time only
-- lets the scan skip a chat, never mark one.

CREATE OR REPLACE FUNCTION events_facts_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations c
    SET messages = c.messages + n.messages,
        first_visitor_at = CASE WHEN c.messages IS NULL THEN c.first_visitor_at
                                ELSE least(c.first_visitor_at, n.first_visitor_at) END,
        first_assigned_at = CASE WHEN c.messages IS NULL THEN c.first_assigned_at
                                 ELSE least(c.first_assigned_at, n.first_assigned_at) END,
        first_agent_at = least(c.first_agent_at, n.first_agent_at)
    FROM (SELECT conversation_id,
                 count(*) FILTER (WHERE kind = 'message') AS messages,
                 min(created_at) FILTER (WHERE kind = 'message' AND author_kind = 'visitor') AS first_visitor_at,
                 min(created_at) FILTER (WHERE kind = 'assigned') AS first_assigned_at,
                 min(created_at) FILTER (WHERE kind = 'message' AND author_kind = 'agent') AS first_agent_at
          FROM new_events
          WHERE kind IN ('message', 'assigned')
            AND conversation_id NOT IN (SELECT conversation_id FROM new_events WHERE kind = 'closed')
          GROUP BY conversation_id) n
    WHERE c.id = n.conversation_id
      AND (c.messages IS NOT NULL OR (c.first_agent_at IS NULL AND n.first_agent_at IS NOT NULL));
    RETURN NULL;
END $$;

-- The open chats agents have already written in.
UPDATE conversations c SET first_agent_at = f.first_agent_at
FROM (SELECT conversation_id, min(created_at) AS first_agent_at
      FROM events
      WHERE kind = 'message' AND author_kind = 'agent'
        AND conversation_id IN (SELECT id FROM conversations WHERE messages IS NULL)
      GROUP BY conversation_id) AS f
WHERE f.conversation_id = c.id AND c.messages IS NULL AND c.first_agent_at IS NULL;
