-- no-transaction
-- A deleted group's name is free again (issue 27): names are unique only
-- among a site's live groups (deleted_at IS NULL, 0033_group_deleted_at),
-- so a new group may take the name of one deleted, while the deleted row
-- keeps it for the conversations and reports that name it. SQLite cannot
-- drop the inline UNIQUE (site_id, name) of 0001_init.sql, so the table is
-- rebuilt as in 0011_operator_role.sql (foreign keys off while it is
-- swapped, which works only outside a transaction, hence `no-transaction`).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE groups_new (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL REFERENCES sites(id),
    name       TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    email      TEXT,
    hours      TEXT,
    deleted_at INTEGER
);
INSERT INTO groups_new (id, site_id, name, is_default, created_at, email, hours, deleted_at)
    SELECT id, site_id, name, is_default, created_at, email, hours, deleted_at FROM groups;
DROP TABLE groups;
ALTER TABLE groups_new RENAME TO groups;
CREATE UNIQUE INDEX groups_live_name ON groups (site_id, name) WHERE deleted_at IS NULL;
COMMIT;
PRAGMA foreign_keys = ON;
