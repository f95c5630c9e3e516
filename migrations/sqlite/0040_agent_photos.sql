-- Agent photos (issue 27): an agent's picture, uploaded from the console
-- and shown in the console's agent lists and in the widget when that
-- agent joins or writes. The bytes (a raster image of at most 512 KiB,
-- its format sniffed, a JPEG without its metadata) live in their own table,
-- so reading agents never reads them; `agents.photo_at` says when the
-- current one was set (NULL: none) and versions its URL. (The store's
-- tests run this again after re-running the agents rebuilds of 0004 and
-- 0011, which drop the column but not the table: hence IF NOT EXISTS.)
ALTER TABLE agents ADD COLUMN photo_at INTEGER;
CREATE TABLE IF NOT EXISTS agent_photos (
    agent_id     TEXT PRIMARY KEY REFERENCES agents(id),
    content_type TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    updated_at   INTEGER NOT NULL
);
