-- Mirrors migrations/sqlite/0046_offline_facts.sql.
-- An offline message (`leave_message`) is whole when it is left, so its
-- facts for reports are taken then: the conversation is written with
-- `messages` 0 and the trigger of 0028 counts its message. Until now they
-- waited for a close that never comes: a report read every offline
-- message of its range from its events (8% of a year's chats in `bench
-- reports`), no summary of a day (0039) could hold them, and each kept an
-- entry in the partial index of chats without facts, so that its pages
-- were never emptied. Here the facts of those already left are taken.
-- Additive.
UPDATE conversations c
SET first_visitor_at = f.first_visitor_at, first_assigned_at = f.first_assigned_at,
    first_agent_at = f.first_agent_at, messages = f.messages
FROM (SELECT conversation_id,
             min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END) AS first_visitor_at,
             min(CASE WHEN kind = 'assigned' THEN created_at END) AS first_assigned_at,
             min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END) AS first_agent_at,
             count(CASE WHEN kind = 'message' THEN 1 END) AS messages
      FROM events
      WHERE conversation_id IN (SELECT id FROM conversations WHERE offline AND messages IS NULL)
      GROUP BY conversation_id) AS f
WHERE f.conversation_id = c.id;
