-- The web console's admin data, mirroring migrations/sqlite/0003_web.sql:
-- canned responses ("shortcuts").

CREATE TABLE canned_responses (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    shortcut   TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (site_id, shortcut)
);
