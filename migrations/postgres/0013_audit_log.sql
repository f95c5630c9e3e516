-- Mirrors migrations/sqlite/0019_audit_log.sql.
-- The audit log: every admin action (settings, agents, bans, the site's
-- name, status incidents…), who did it, when, what it touched, and the
-- values before and after, as JSON. Append-only: the trigger refuses any
-- change or deletion of a row, whoever asks.
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    at         BIGINT NOT NULL,
    actor_id   TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    before     TEXT,
    after      TEXT
);
CREATE INDEX audit_log_site ON audit_log(site_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
