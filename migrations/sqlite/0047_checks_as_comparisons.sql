-- The checks on `events.author_kind` and `conversations.status` are written
-- as comparisons instead of `IN` lists. SQLite checks `x IN (a, b, c)`, three
-- values or more, by building a temporary b-tree of the list for each row it
-- checks: for every stored message, a b-tree opened, filled and freed. The
-- comparisons allow exactly the same values. Measured as the writer writes
-- (130 messages a commit, fsync'd, the real schema): the insert's CPU
-- 0.79–0.89x (`examples/event_layouts.rs --schema`, docs/benchmarks.md).
--
-- A check is not stored in the rows, so the tables are not rebuilt: SQLite's
-- documented way is to change the table's text in the schema ("Making Other
-- Kinds Of Table Schema Changes"). Every row already satisfies the new text,
-- which is the same rule. A node of the previous release reads the new text
-- as it reads the old.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, 'CHECK (author_kind IN (''visitor'', ''agent'', ''system''))',
                  'CHECK (author_kind = ''visitor'' OR author_kind = ''agent'' OR author_kind = ''system'')')
WHERE type = 'table' AND name = 'events';
UPDATE sqlite_schema
SET sql = replace(sql, 'CHECK (status IN (''queued'', ''active'', ''closed'', ''offline''))',
                  'CHECK (status = ''queued'' OR status = ''active'' OR status = ''closed'' OR status = ''offline'')')
WHERE type = 'table' AND name = 'conversations';
-- This connection reads the schema again.
PRAGMA writable_schema = RESET;
-- Every other connection must too. `PRAGMA schema_version` takes no
-- expression to add one to, and any table created moves it on.
CREATE TABLE schema_reread (x);
DROP TABLE schema_reread;
