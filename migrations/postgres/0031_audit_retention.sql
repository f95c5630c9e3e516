-- Mirrors migrations/sqlite/0038_audit_retention.sql. The audit log is
-- kept for a site's `audit_retention_days` (0: for ever): the retention
-- job deletes older entries. The trigger still refuses every change, and
-- the deletion of any entry less than 30 days old, whoever asks. An older
-- release never deletes an entry: it serves this schema as it is.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at < (extract(epoch FROM now()) * 1000)::bigint - 2592000000 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only; only entries older than 30 days may be deleted';
END;
$$ LANGUAGE plpgsql;
