-- Agent photos (issue 27): an agent's picture, uploaded from the console
-- and shown in the console's agent lists and in the widget when that
-- agent joins or writes. The bytes (a raster image of at most 512 KiB,
-- its format sniffed, a JPEG without its metadata) live in their own table,
-- so reading agents never reads them; `agents.photo_at` says when the
-- current one was set (NULL: none) and versions its URL. (Expand only.)
ALTER TABLE agents ADD COLUMN photo_at BIGINT;
CREATE TABLE agent_photos (
    agent_id     TEXT PRIMARY KEY REFERENCES agents(id),
    content_type TEXT NOT NULL,
    bytes        BYTEA NOT NULL,
    updated_at   BIGINT NOT NULL
);
