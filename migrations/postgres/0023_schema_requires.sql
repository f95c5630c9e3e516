-- Expand-then-contract (docs/deploy.md): the oldest schema version a
-- binary must know to serve this database. Expand migrations leave it; a
-- contract migration (one that drops, renames, changes a type or adds a
-- constraint an older release breaks) sets it to its own version, so a
-- node of the previous release keeps working during a rolling upgrade
-- until one that takes something away.
INSERT INTO meta (key, value) VALUES ('schema_requires', '23')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
