-- A resume reads one person's conversations newest first. Indexes that
-- hold that order let SQLite read them in place instead of sorting them in
-- a temporary B-tree on every resume (measured in a reconnect storm).
DROP INDEX conversations_agent;
CREATE INDEX conversations_agent ON conversations(agent_id, status, created_at);
DROP INDEX conversations_visitor;
CREATE INDEX conversations_visitor ON conversations(visitor_id, created_at);
