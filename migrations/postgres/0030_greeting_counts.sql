-- Greetings shown, by quarter hour (twin of sqlite/0037): a report counts
-- those of its own days. Every time zone's offset is a multiple of 15
-- minutes, so a quarter never straddles a site's midnight. The rules'
-- `shown` column stays the all-time count. Additive: an older release
-- serves this schema.
CREATE TABLE greeting_shown (
    rule_id TEXT NOT NULL,
    site_id TEXT NOT NULL,
    quarter BIGINT NOT NULL,
    shown   BIGINT NOT NULL,
    PRIMARY KEY (rule_id, quarter)
);
CREATE INDEX greeted_chats_rule_time ON greeted_chats(rule_id, created_at);
