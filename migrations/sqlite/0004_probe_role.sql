-- no-transaction
-- The status page's login probe is an agent row with the role 'probe'.
-- SQLite cannot change a CHECK constraint in place, so the agents table is
-- rebuilt (the documented twelve-step procedure): foreign keys must be off
-- while the table is swapped, and that pragma does nothing inside a
-- transaction, hence `no-transaction` above and the explicit one below.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE agents_new (
    id               TEXT PRIMARY KEY,
    site_id          TEXT NOT NULL REFERENCES sites(id),
    email            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'probe')),
    password_hash    TEXT NOT NULL,
    chat_limit       INTEGER NOT NULL DEFAULT 5,
    availability     TEXT NOT NULL DEFAULT 'offline'
                     CHECK (availability IN ('online', 'away', 'offline')),
    active           INTEGER NOT NULL DEFAULT 1,
    last_assigned_at INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
INSERT INTO agents_new (id, site_id, email, name, role, password_hash, chat_limit, availability, active,
                        last_assigned_at, created_at)
    SELECT id, site_id, email, name, role, password_hash, chat_limit, availability, active,
           last_assigned_at, created_at
    FROM agents;
DROP TABLE agents;
ALTER TABLE agents_new RENAME TO agents;
CREATE INDEX agents_site ON agents(site_id);
COMMIT;
PRAGMA foreign_keys = ON;
