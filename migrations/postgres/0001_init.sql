-- Holdfast schema v1 (PostgreSQL), mirroring migrations/sqlite/0001_init.sql.
-- Times are Unix milliseconds (BIGINT); ids are UUID v7 text; JSON is kept
-- as text so both stores hand the same strings to the code.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sites (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    widget_key TEXT NOT NULL UNIQUE,
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    name       TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (site_id, name)
);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    site_id          TEXT NOT NULL REFERENCES sites(id),
    email            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    password_hash    TEXT NOT NULL,
    chat_limit       BIGINT NOT NULL DEFAULT 5,
    availability     TEXT NOT NULL DEFAULT 'offline'
                     CHECK (availability IN ('online', 'away', 'offline')),
    active           BOOLEAN NOT NULL DEFAULT TRUE,
    last_assigned_at BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL
);
CREATE INDEX agents_site ON agents(site_id);

CREATE TABLE agent_groups (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    group_id TEXT NOT NULL REFERENCES groups(id),
    PRIMARY KEY (agent_id, group_id)
);
CREATE INDEX agent_groups_group ON agent_groups(group_id);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id),
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_agent ON sessions(agent_id);

CREATE TABLE visitors (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    name       TEXT,
    email      TEXT,
    page_url   TEXT,
    referrer   TEXT,
    user_agent TEXT,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX visitors_site ON visitors(site_id, last_seen);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    site_id     TEXT NOT NULL REFERENCES sites(id),
    visitor_id  TEXT NOT NULL REFERENCES visitors(id),
    group_id    TEXT NOT NULL REFERENCES groups(id),
    agent_id    TEXT REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('queued', 'active', 'closed', 'offline')),
    last_seq    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    assigned_at BIGINT,
    closed_at   BIGINT
);
CREATE INDEX conversations_site_status ON conversations(site_id, status, created_at);
CREATE INDEX conversations_agent ON conversations(agent_id, status);
CREATE INDEX conversations_visitor ON conversations(visitor_id, status);

-- The conversation log: every durable event of a conversation under one
-- gap-free sequence, assigned under the conversation's row lock.
CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    id              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    author_kind     TEXT NOT NULL CHECK (author_kind IN ('visitor', 'agent', 'system')),
    author_id       TEXT,
    client_id       TEXT,
    body            TEXT,
    data            TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX events_client_id
    ON events(conversation_id, author_kind, author_id, client_id)
    WHERE client_id IS NOT NULL;
