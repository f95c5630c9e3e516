-- The audit log: every admin action (settings, agents, bans, the site's
-- name, status incidents…), who did it, when, what it touched, and the
-- values before and after, as JSON. Append-only: the triggers refuse any
-- change or deletion of a row, whoever asks.
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    at         INTEGER NOT NULL,
    actor_id   TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    before     TEXT,
    after      TEXT
);
CREATE INDEX audit_log_site ON audit_log(site_id, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
