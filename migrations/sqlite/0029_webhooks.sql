-- Chat webhooks (issue 19): a site's endpoints, each with the events it
-- wants (space-separated names) and its signing secret (`whsec_…`, kept
-- as written: it signs every delivery). `failing_since` is the first
-- failed attempt since the last success: an endpoint failing for days is
-- disabled (`disabled_at`, `disabled_reason`) and its admins told.
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites(id),
    name            TEXT NOT NULL,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    events          TEXT NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    failing_since   INTEGER,
    disabled_at     INTEGER,
    disabled_reason TEXT,
    created_by      TEXT NOT NULL REFERENCES agents(id),
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_site ON webhook_endpoints(site_id);

-- A webhook delivery is a row of the outbox (`kind` 'webhook') naming its
-- endpoint. `order_key` (endpoint and conversation) and `position` (the
-- event's seq in its conversation) keep one conversation's deliveries to
-- one endpoint in order: a row is not claimed while an earlier one of its
-- key is queued.
ALTER TABLE deliveries ADD COLUMN endpoint_id TEXT;
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
ALTER TABLE deliveries ADD COLUMN position INTEGER;
CREATE INDEX deliveries_order ON deliveries(order_key, position) WHERE order_key IS NOT NULL;
