-- A group may have an address of its own that gets its leads too.
ALTER TABLE groups ADD COLUMN email TEXT;
