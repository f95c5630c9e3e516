-- API tokens (issue 19): an admin gives an integration a credential of
-- its own for the REST API, with a name and scopes (`read`, `write`,
-- `admin`, space-separated). The token is shown once; only its SHA-256 is
-- kept (`token_hash`), with its first characters (`prefix`) so a person
-- can tell tokens apart. `last_used_at` is written at most once a minute.
-- A revoked token keeps its row (who made it, when it was revoked).
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    site_id      TEXT NOT NULL REFERENCES sites(id),
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_by   TEXT NOT NULL REFERENCES agents(id),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_site ON api_tokens(site_id, created_at);
