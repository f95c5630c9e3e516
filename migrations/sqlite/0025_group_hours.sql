-- A group may keep business hours of its own (JSON: hours::Schedule); NULL keeps the site's.
ALTER TABLE groups ADD COLUMN hours TEXT;
