-- Mirrors migrations/sqlite/0025_group_hours.sql: a group's own business hours
-- (JSON: hours::Schedule); NULL keeps the site's.
ALTER TABLE groups ADD COLUMN hours TEXT;
