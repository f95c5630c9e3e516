#!/usr/bin/env python3
# Chat search on SQLite at 100k messages (docs/benchmarks.md): fills a
# freshly migrated chat file with 10k chats of 10 messages (12 words each,
# Zipf-like over 3,000 words; 10k visitors; a tenth of it another site's)
# and indexes the messages as the server's writer does at the end of a
# commit (migration sqlite/0044), then times the statements store/search.rs
# builds (the same texts, written again here: keep them in step).
#
#   holdfast migrate --data DIR && python3 scripts/bench-search.py DIR/holdfast.db
import random, sqlite3, sys, time, uuid
db = sys.argv[1]
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
random.seed(7)
vocab = [f"w{i}" for i in range(3000)] + ["the", "order", "please", "thanks", "help"]
weights = [1 / (i + 1) for i in range(len(vocab))]
now = int(time.time() * 1000) - 10_000 * 60_000
site = str(uuid.uuid4()); other = str(uuid.uuid4())
for s in (site, other):
    c.execute("INSERT INTO sites (id, name, widget_key, created_at) VALUES (?, ?, ?, 0)", (s, s, s))
    c.execute("INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES (?, ?, 'General', 1, 0)", (s + "g", s))
t0 = time.time()
convs = []
for n in range(10_000):
    s = site if n % 10 else other
    v, conv = f"v{n:06d}", f"c{n:06d}"
    c.execute("INSERT INTO visitors (id, site_id, name, email, first_seen, last_seen) VALUES (?, ?, ?, ?, 0, 0)",
              (v, s, f"Visitor{n} Smith", f"visitor{n}@example.com"))
    at = now + n * 60_000
    c.execute("INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) VALUES (?, ?, ?, ?, 'closed', ?)",
              (conv, s, v, s + "g", at))
    for seq in range(1, 11):
        words = random.choices(vocab, weights, k=12)
        if n % 100 == 1 and seq == 3: words.append("ship")
        if n % 100 == 1 and seq == 7: words.append("canada")
        if n % 7 == 0 and seq == 5: words.append("ship")
        c.execute("INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, body, data, created_at) "
                  "VALUES (?, ?, ?, 'message', 'visitor', ?, ?, '{}', ?)", (conv, seq, f"{conv}-{seq}", v, " ".join(words), at + seq))
c.execute("INSERT INTO message_search (rowid, text) SELECT rowid, body FROM events WHERE kind = 'message' AND body IS NOT NULL")
c.commit()
print(f"filled 100000 messages in {time.time() - t0:.1f} s", flush=True)

SELECT = ("SELECT c.id, c.status, c.created_at, c.closed_at, c.visitor_id, v.name AS visitor_name, "
          "v.email AS visitor_email, c.agent_id, a.name AS agent_name, c.group_id, g.name AS group_name "
          "FROM conversations c JOIN visitors v ON v.id = c.visitor_id JOIN groups g ON g.id = c.group_id "
          "LEFT JOIN agents a ON a.id = c.agent_id WHERE c.site_id = ?1")
WORD = ("(c.id IN (SELECT e.conversation_id FROM events e WHERE e.rowid IN "
        "(SELECT rowid FROM message_search WHERE message_search MATCH {w})) OR c.visitor_id IN "
        "(SELECT vs.id FROM visitors vs WHERE vs.rowid IN (SELECT rowid FROM visitor_search WHERE visitor_search MATCH {w})))")
SNIP = ("SELECT e.conversation_id, max(e.seq) AS seq, e.body FROM events e "
        "WHERE e.conversation_id IN (SELECT value FROM json_each(?1)) "
        "AND e.rowid IN (SELECT rowid FROM message_search WHERE message_search MATCH ?2) GROUP BY e.conversation_id")
import json
def search(words, before=None, limit=26):
    sql, args = SELECT, [site]
    if before:
        sql += " AND (c.created_at < ?2 OR (c.created_at = ?2 AND c.id < ?3))"; args += list(before)
    for w in words:
        args.append(f'"{w}"'); sql += " AND " + WORD.replace("{w}", f"?{len(args)}")
    args.append(limit); sql += f" ORDER BY c.created_at DESC, c.id DESC LIMIT ?{len(args)}"
    rows = c.execute(sql, args).fetchall()
    if words and rows:
        c.execute(SNIP, (json.dumps([r[0] for r in rows]), " OR ".join(f'"{w}"' for w in words))).fetchall()
    return rows
for label, words, before in [("two words, 1% of chats hold both", ["ship", "canada"], None),
                             ("one word in 15% of chats", ["ship"], None),
                             ("a common word (most messages)", ["the"], None),
                             ("a word of the long tail", ["w2999"], None),
                             ("a visitor's email", ["visitor4242@example.com"], None),
                             ("a name word and a message word", ["Visitor4201", "ship"], None),
                             ("past chats, first page", [], None),
                             ("past chats, a page deep in history", [], (now + 500 * 60_000, "c000500"))]:
    search(words, before)  # warm
    times = []
    for _ in range(20):
        t = time.perf_counter(); rows = search(words, before); times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"{label:45s} {len(rows):3d} rows  median {times[10]:7.2f} ms  max {times[-1]:7.2f} ms")
