-- Mirrors migrations/sqlite/0006_conversation_order.sql: a resume reads
-- one person's conversations newest first (`ORDER BY created_at DESC, id
-- DESC LIMIT n`), and an index in that order answers it in place. With
-- only (visitor_id, status), a database without statistics yet (a new
-- site's first minutes; autovacuum analyzes a table a minute or more
-- after it grew) planned a visitor's resume as a bitmap AND with every
-- conversation of the site: in `holdfast storm node-loss` that statement
-- was half of all the database's work while 3,000 sockets resumed
-- (docs/benchmarks.md). The old indexes, prefixes of the new ones, stay
-- for now: expand only, so a node of the previous release keeps serving
-- during a roll; a later release may remove them.
CREATE INDEX conversations_visitor_recent ON conversations(visitor_id, created_at, id);
CREATE INDEX conversations_agent_recent ON conversations(agent_id, status, created_at, id);
