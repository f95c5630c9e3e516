-- The status page's notifications go through the chat outbox too (issue
-- 18: one outbox for everything Holdfast sends). They belong to the
-- installation, not to a site, so a delivery's `site_id` may now be NULL:
-- site admins never see those rows; the operator does. SQLite cannot drop
-- a NOT NULL, so the table is rebuilt with the same rows and indexes (no
-- table refers to `deliveries`).
CREATE TABLE deliveries_next (
    id          TEXT PRIMARY KEY,
    site_id     TEXT REFERENCES sites(id),
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
    sent_at     INTEGER,
    endpoint_id TEXT,
    order_key   TEXT,
    position    INTEGER
);
INSERT INTO deliveries_next (id, site_id, kind, template, recipient, payload, dedupe_key, status, attempts,
                             next_at, give_up_at, lease_until, last_error, created_at, sent_at, endpoint_id,
                             order_key, position)
SELECT id, site_id, kind, template, recipient, payload, dedupe_key, status, attempts, next_at, give_up_at,
       lease_until, last_error, created_at, sent_at, endpoint_id, order_key, position
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_next RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries(status, next_at);
CREATE INDEX deliveries_site ON deliveries(site_id, created_at);
CREATE INDEX deliveries_order ON deliveries(order_key, position) WHERE order_key IS NOT NULL;
