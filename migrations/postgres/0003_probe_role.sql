-- The status page's login probe is an agent row with the role 'probe'
-- (mirrors migrations/sqlite/0004_probe_role.sql).
ALTER TABLE agents DROP CONSTRAINT agents_role_check;
ALTER TABLE agents ADD CONSTRAINT agents_role_check CHECK (role IN ('admin', 'agent', 'probe'));
