-- Missed chats: a conversation whose visitor waited the site's limit (2
-- minutes unless set) with no agent reply, or closed it before one. A row
-- here is the mark, written in one transaction with the emails telling the
-- site's recipients (`deliveries`); the conversation keeps its status, so
-- a visitor still waiting stays in the queue. The deliverer's watcher
-- judges conversations by their creation time, hence the index.
CREATE TABLE missed_chats (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
    site_id         TEXT NOT NULL REFERENCES sites(id),
    reason          TEXT NOT NULL CHECK (reason IN ('waited', 'left')),
    waited_ms       INTEGER NOT NULL,
    missed_at       INTEGER NOT NULL
);
CREATE INDEX missed_chats_site ON missed_chats(site_id, missed_at);
CREATE INDEX conversations_created ON conversations(created_at);
