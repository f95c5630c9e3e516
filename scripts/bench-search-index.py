#!/usr/bin/env python3
# What indexing a message for search costs the SQLite writer (docs/benchmarks.md,
# migration sqlite/0044): a file migrated by `holdfast migrate`, 200 active chats,
# 40,000 messages written as the writer writes them (its INSERT, commits of 100),
# each way in turn:
#   trigger  - the index kept by the trigger 0044 drops (0032's message_search_insert)
#   commit   - the writer's way since 0044: one INSERT ... SELECT at the end of a commit
#   none     - no index at all (the floor)
# Prints microseconds a message for each, and the search hits (all must be found).
#
#   holdfast migrate --data DIR && python3 scripts/bench-search-index.py DIR/holdfast.db
import shutil, sqlite3, sys, tempfile, time

TRIGGER = """CREATE TRIGGER message_search_insert AFTER INSERT ON events
WHEN new.kind = 'message' AND new.body IS NOT NULL
BEGIN
    INSERT INTO message_search (rowid, text) VALUES (new.rowid, new.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(new.data, '$.attachments') a), ''));
END"""
INDEX = ("INSERT INTO message_search (rowid, text) SELECT e.rowid, e.body || coalesce((SELECT ' ' || "
         "group_concat(json_extract(a.value, '$.name'), ' ') FROM json_each(e.data, '$.attachments') a), '') "
         "FROM events e WHERE e.rowid > ?1 AND e.kind = 'message' AND e.body IS NOT NULL")
INSERT = ("INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, "
          "created_at) VALUES (?1, ?2, ?3, 'message', 'visitor', 'v', ?4, ?5, '{}', ?6)")
MESSAGES, CHATS, COMMIT = 40_000, 200, 100


def run(source, way):
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/chat.db"
        shutil.copy(source, db)
        c = sqlite3.connect(db, isolation_level=None)
        c.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF;")
        c.execute("DROP TRIGGER IF EXISTS message_search_insert")
        if way == "trigger":
            c.execute(TRIGGER)
        c.execute("BEGIN")
        for n in range(CHATS):
            c.execute("INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at, messages) "
                      "VALUES (?, 's', 'v', 'g', 'active', 1, 0)", (f"c{n}",))
        c.execute("COMMIT")
        began = time.perf_counter()
        for first in range(0, MESSAGES, COMMIT):
            c.execute("BEGIN IMMEDIATE")
            newest = c.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]
            for i in range(first, first + COMMIT):
                c.execute(INSERT, (f"c{i % CHATS}", i // CHATS + 1, f"e{i}", f"m{i}", f"t={1764900000000000 + i * 137}",
                                   1764900000000 + i))
            if way == "commit":
                c.execute(INDEX, (newest,))
            c.execute("COMMIT")
        took = time.perf_counter() - began
        hits = c.execute("SELECT count(*) FROM message_search WHERE message_search MATCH 't'").fetchone()[0]
        print(f"{way:8} {took / MESSAGES * 1e6:6.1f} us a message, {hits} found", flush=True)


for way in ("trigger", "commit", "none", "trigger", "commit"):
    run(sys.argv[1], way)
