-- A deleted group's name is free again (issue 27): names are unique only
-- among a site's live groups (deleted_at IS NULL, 0026_group_deleted_at),
-- so a new group may take the name of one deleted, while the deleted row
-- keeps it for the conversations and reports that name it. The partial
-- index is built before the constraint goes, so live names are never
-- without one.
--
-- It only relaxes (an older release's statements still run), but it
-- drops a constraint, which the rule of docs/deploy.md (and its check in
-- store::postgres::tests) counts as contracting; rather than carve an
-- exception into that check, it sets meta.schema_requires: roll it out
-- as a contract migration.
CREATE UNIQUE INDEX groups_live_name ON groups (site_id, name) WHERE deleted_at IS NULL;
ALTER TABLE groups DROP CONSTRAINT groups_site_id_name_key;
-- Never lowered: a database that already has a later contract migration
-- (this one may be applied after it) keeps that one's requirement.
INSERT INTO meta (key, value) VALUES ('schema_requires', '32')
ON CONFLICT (key) DO UPDATE SET value = excluded.value
WHERE meta.value::bigint < excluded.value::bigint;
