-- Files and images in chat (`store/attachments.rs`). An upload is a row
-- here as soon as its bytes are durable (under DATA/attachments/, named by
-- their SHA-256); a message takes it by setting `conversation_id` in the
-- message's own transaction, and only then can anyone download it. A row
-- no message took within hours is an orphan, which the cleanup drops.
CREATE TABLE attachments (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites(id),
    uploader_kind   TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    conversation_id TEXT REFERENCES conversations(id),
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    content_type    TEXT NOT NULL,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX attachments_unbound ON attachments(created_at) WHERE conversation_id IS NULL;
CREATE INDEX attachments_sha ON attachments(sha256);
