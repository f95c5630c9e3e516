-- The chat store's outbox: every outgoing delivery (an email now, chat
-- webhooks later) is a row written in the same transaction as the change
-- that causes it, then sent by the one process holding the store's lead.
-- `dedupe_key` makes enqueueing the same delivery twice a no-op;
-- `lease_until` hides a claimed row from other claims while it is sent;
-- `give_up_at` ends the retries (24 h after queueing, or after an admin's
-- "send again").
CREATE TABLE deliveries (
    id          TEXT PRIMARY KEY,
    site_id     TEXT NOT NULL REFERENCES sites(id),
    kind        TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    template    TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    give_up_at  INTEGER NOT NULL,
    lease_until INTEGER,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries(status, next_at);
CREATE INDEX deliveries_site ON deliveries(site_id, created_at);
