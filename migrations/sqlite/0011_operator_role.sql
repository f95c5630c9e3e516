-- no-transaction
-- The installation's operator is an agent row with the role 'operator':
-- an admin of its own site who also owns the status page and makes sites.
-- SQLite cannot change a CHECK constraint in place, so the agents table is
-- rebuilt as in 0004_probe_role.sql (foreign keys off while it is swapped,
-- which works only outside a transaction, hence `no-transaction`).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE agents_new (
    id               TEXT PRIMARY KEY,
    site_id          TEXT NOT NULL REFERENCES sites(id),
    email            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'probe', 'operator')),
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
-- The admin the first start made (shown once to whoever installed it)
-- runs the installation, as on a new data dir.
UPDATE agents SET role = 'operator' WHERE email = 'admin@holdfast.local' AND role = 'admin';
COMMIT;
PRAGMA foreign_keys = ON;
