-- Full-text search (issue 27, `store/search.rs`): FTS5 indexes over a
-- message's words (its body and its files' names) and over a visitor's
-- name and email. Both are contentless: they hold the index only, never a
-- second copy of the text, and a row's FTS rowid is its table row's rowid.
-- Triggers keep them in step with every write, erasures and retention
-- included: a tombstone (body NULL) leaves the index, so an erased word is
-- never found. (A VACUUM may renumber rowids: rebuild both indexes after
-- one by emptying them with 'delete-all' and running this file's
-- INSERT … SELECT statements again.)
CREATE VIRTUAL TABLE message_search USING fts5(text, content = '', tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE visitor_search USING fts5(text, content = '', tokenize = 'unicode61 remove_diacritics 2');

-- A message's words: its body, then its files' names.
-- (The same expression is written in each trigger; SQLite has no functions
-- in SQL.)
CREATE TRIGGER message_search_insert AFTER INSERT ON events
WHEN new.kind = 'message' AND new.body IS NOT NULL
BEGIN
    INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(new.data, '$.attachments') a), ''));
END;

-- A contentless index forgets a row when told its old words exactly.
CREATE TRIGGER message_search_update AFTER UPDATE OF kind, body, data ON events
WHEN old.kind = 'message' OR new.kind = 'message'
BEGIN
    INSERT INTO message_search (message_search, rowid, text)
    SELECT 'delete', old.rowid, old.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(old.data, '$.attachments') a), '')
    WHERE old.kind = 'message' AND old.body IS NOT NULL;
    INSERT INTO message_search (rowid, text)
    SELECT new.rowid, new.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(new.data, '$.attachments') a), '')
    WHERE new.kind = 'message' AND new.body IS NOT NULL;
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON events
WHEN old.kind = 'message' AND old.body IS NOT NULL
BEGIN
    INSERT INTO message_search (message_search, rowid, text) VALUES ('delete', old.rowid, old.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(old.data, '$.attachments') a), ''));
END;

CREATE TRIGGER visitor_search_insert AFTER INSERT ON visitors
WHEN new.name IS NOT NULL OR new.email IS NOT NULL
BEGIN
    INSERT INTO visitor_search (rowid, text) VALUES (new.rowid, coalesce(new.name, '') || ' ' || coalesce(new.email, ''));
END;

CREATE TRIGGER visitor_search_update AFTER UPDATE OF name, email ON visitors
WHEN old.name IS NOT new.name OR old.email IS NOT new.email
BEGIN
    INSERT INTO visitor_search (visitor_search, rowid, text)
    SELECT 'delete', old.rowid, coalesce(old.name, '') || ' ' || coalesce(old.email, '')
    WHERE old.name IS NOT NULL OR old.email IS NOT NULL;
    INSERT INTO visitor_search (rowid, text)
    SELECT new.rowid, coalesce(new.name, '') || ' ' || coalesce(new.email, '')
    WHERE new.name IS NOT NULL OR new.email IS NOT NULL;
END;

CREATE TRIGGER visitor_search_delete AFTER DELETE ON visitors
WHEN old.name IS NOT NULL OR old.email IS NOT NULL
BEGIN
    INSERT INTO visitor_search (visitor_search, rowid, text) VALUES ('delete', old.rowid, coalesce(old.name, '') || ' ' || coalesce(old.email, ''));
END;

-- The messages and visitors stored before this migration.
INSERT INTO message_search (rowid, text)
SELECT e.rowid, e.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(e.data, '$.attachments') a), '')
FROM events e WHERE e.kind = 'message' AND e.body IS NOT NULL;
INSERT INTO visitor_search (rowid, text)
SELECT rowid, coalesce(name, '') || ' ' || coalesce(email, '') FROM visitors
WHERE name IS NOT NULL OR email IS NOT NULL;

