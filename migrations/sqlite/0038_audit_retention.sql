-- The audit log is kept for a site's `audit_retention_days` (0: for
-- ever): the retention job deletes older entries (`privacy.rs`). The
-- trigger still refuses every change, and the deletion of any entry less
-- than 30 days old (`store::audit::AUDIT_FLOOR_MS`), whoever asks.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.at > CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 2592000000
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only; only entries older than 30 days may be deleted');
END;
