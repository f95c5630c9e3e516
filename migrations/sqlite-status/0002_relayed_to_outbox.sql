-- A notification is now written here with the change that causes it, as
-- before, and then relayed into the chat store's outbox, which sends it
-- (issue 18: one outbox for everything Holdfast sends). `relayed_at` marks
-- the rows handed over; the outbox reports each one's outcome back
-- (`delivered_at`, `failed_at`, `last_error`), so the operator's list of
-- subscribers still says why one is not reached.
ALTER TABLE status_deliveries ADD COLUMN relayed_at INTEGER;
DROP INDEX status_deliveries_due;
CREATE INDEX status_deliveries_unrelayed ON status_deliveries(next_at) WHERE relayed_at IS NULL;
