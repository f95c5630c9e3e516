-- Mirrors migrations/sqlite/0034_idempotency_keys.sql.
-- Idempotency keys of the REST API (issue 19): a POST sent with an
-- `Idempotency-Key` header is run once per (site, principal, key); a
-- retry with the same key and the same request gets the first answer
-- back. `principal` is who asked (`agent:<id>`, `token:<id>`,
-- `visitor:<id>`); `fingerprint` the SHA-256 of the method, path, query
-- and body, so the same key with another request is refused. While the
-- first request runs `status` is NULL (a claim that lapses after a
-- minute); then it holds the answer (`status`, `content_type`, `body`).
-- Rows older than 24 hours are ignored, and deleted by the lead's
-- retention job.
CREATE TABLE idempotency_keys (
    site_id      TEXT NOT NULL,
    principal    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    status       INTEGER,
    content_type TEXT,
    body         BYTEA,
    PRIMARY KEY (site_id, principal, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
