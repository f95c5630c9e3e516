-- Mirrors migrations/sqlite/0017_reports.sql.
-- Reports (`reports.rs`, `store/reports.rs`) read a site's conversations
-- by creation time, hence the index. `offline` says the conversation
-- began as an offline message (`leave_message`): its status says so only
-- until it is closed. Conversations closed before this migration cannot
-- be told apart and count as chats.
ALTER TABLE conversations ADD COLUMN offline BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE conversations SET offline = TRUE WHERE status = 'offline';
CREATE INDEX conversations_site_created ON conversations(site_id, created_at);
