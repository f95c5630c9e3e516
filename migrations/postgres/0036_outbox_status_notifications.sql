-- The status page's notifications go through the chat outbox too (issue
-- 18: one outbox for everything Holdfast sends). A notification is still
-- written in `status_deliveries` with the change that causes it, then
-- relayed into `deliveries` (keyed `status:ID`, so a relay repeated after
-- a crash queues it once), which sends it and reports the outcome back.
--
-- Status notifications belong to the installation, not to a site: their
-- `site_id` is NULL. A node of the previous release would fail to read
-- such a row while claiming deliveries, so this release requires itself.
ALTER TABLE deliveries ALTER COLUMN site_id DROP NOT NULL;
ALTER TABLE status_deliveries ADD COLUMN relayed_at BIGINT;
DROP INDEX status_deliveries_due;
CREATE INDEX status_deliveries_unrelayed ON status_deliveries(next_at) WHERE relayed_at IS NULL;
INSERT INTO meta (key, value) VALUES ('schema_requires', '36')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
