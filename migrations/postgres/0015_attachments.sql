-- Files and images in chat (`store/attachments.rs`); mirrors
-- sqlite/0022_attachments.sql. Every node of a cluster serves every file,
-- so the bytes live here too: in chunks of 256 KiB keyed by the file's
-- SHA-256 (content-addressed), written in the upload's transaction with
-- its row, read back one chunk at a time.
CREATE TABLE attachments (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites(id),
    uploader_kind   TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    conversation_id TEXT REFERENCES conversations(id),
    sha256          TEXT NOT NULL,
    size            BIGINT NOT NULL,
    content_type    TEXT NOT NULL,
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX attachments_unbound ON attachments(created_at) WHERE conversation_id IS NULL;
CREATE INDEX attachments_sha ON attachments(sha256);

CREATE TABLE attachment_chunks (
    sha256 TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (sha256, idx)
);
