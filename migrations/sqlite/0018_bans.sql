-- Bans: an agent refuses a visitor chat, by the visitor, by an address or
-- network (CIDR), or both, with a reason and an optional end. Lifting a
-- ban keeps its row (who lifted it, when), so the list is also its history.
-- `changed_at` is the last time the row was written (made or lifted): a
-- node compares its newest value with the one it loaded, and reloads the
-- active bans when they differ (the bus tells nodes at once; this is what
-- a node that missed the bus catches up by).
CREATE TABLE bans (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    visitor_id TEXT REFERENCES visitors(id),
    cidr       TEXT,
    reason     TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES agents(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    lifted_by  TEXT REFERENCES agents(id),
    lifted_at  INTEGER,
    changed_at INTEGER NOT NULL,
    CHECK (visitor_id IS NOT NULL OR cidr IS NOT NULL)
);
CREATE INDEX bans_site ON bans(site_id, created_at);
CREATE INDEX bans_changed ON bans(changed_at);
CREATE INDEX bans_active ON bans(site_id) WHERE lifted_at IS NULL;

-- The address a visitor last opened a session from: what an agent's "ban
-- their address too" bans. Never shown to agents.
ALTER TABLE visitors ADD COLUMN last_ip TEXT;
