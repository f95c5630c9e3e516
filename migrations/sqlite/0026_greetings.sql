-- Proactive greetings: an admin's rule (conditions on the page, the
-- referrer, time on the page, pages seen this visit, new or returning
-- visitor) and the greeting it shows, from a named agent or the team.
-- `shown` counts the greetings widgets showed; `greeted_chats` records the
-- rule that greeted each chat a visitor started by answering one (no
-- foreign key to the rule: the record outlives a deleted rule).
CREATE TABLE greeting_rules (
    id               TEXT PRIMARY KEY,
    site_id          TEXT NOT NULL REFERENCES sites(id),
    name             TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    url_pattern      TEXT NOT NULL,
    referrer_pattern TEXT NOT NULL,
    min_seconds      INTEGER NOT NULL,
    min_pages        INTEGER NOT NULL,
    visitor          TEXT NOT NULL,
    from_agent_id    TEXT REFERENCES agents(id),
    message          TEXT NOT NULL,
    shown            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX greeting_rules_site ON greeting_rules(site_id, created_at);

CREATE TABLE greeted_chats (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
    rule_id         TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX greeted_chats_rule ON greeted_chats(rule_id);
