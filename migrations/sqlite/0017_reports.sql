-- Reports (`reports.rs`, `store/reports.rs`) read a site's conversations
-- by creation time, hence the index. `offline` says the conversation
-- began as an offline message (`leave_message`): its status says so only
-- until it is closed. Conversations closed before this migration cannot
-- be told apart and count as chats.
ALTER TABLE conversations ADD COLUMN offline INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET offline = 1 WHERE status = 'offline';
CREATE INDEX conversations_site_created ON conversations(site_id, created_at);
