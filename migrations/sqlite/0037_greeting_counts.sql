-- Greetings shown, by quarter hour: a report counts those of its own
-- days (`store/greetings.rs`). Every time zone's offset is a multiple of
-- 15 minutes, so a quarter never straddles a site's midnight. The rules'
-- `shown` column stays the all-time count; the greetings shown before
-- this migration have no time and count only there.
CREATE TABLE greeting_shown (
    rule_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    quarter INTEGER NOT NULL,
    shown   INTEGER NOT NULL,
    PRIMARY KEY (rule_id, quarter)
);
CREATE INDEX greeted_chats_rule_time ON greeted_chats(rule_id, created_at);
