-- The status page's tables live in DATA/status.sqlite now (migrations in
-- migrations/sqlite-status): its writes went through a pool of their own
-- on this file and waited on SQLite's write lock, which the chat writer's
-- group commits hold nearly all the time under load. Their rows were copied
-- there before this ran (store/sqlite.rs, `import_status`); an older
-- binary refuses this data dir from now on, rather than use stale tables.
DROP TABLE status_deliveries;
DROP TABLE status_subscribers;
DROP TABLE status_incident_updates;
DROP TABLE status_incident_components;
DROP TABLE status_incidents;
DROP TABLE status_probe_days;
DROP TABLE status_monitors;
DROP TABLE status_components;
DELETE FROM meta WHERE key IN ('status_page_id', 'status_components_seeded');
