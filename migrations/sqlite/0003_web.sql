-- The web console's admin data (issue 6). Widget appearance, pre-chat
-- fields and allowed origins live in sites.settings (JSON); canned
-- responses ("shortcuts") need a table of their own.

CREATE TABLE canned_responses (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    shortcut   TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (site_id, shortcut)
);
