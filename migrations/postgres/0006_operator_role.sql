-- The installation's operator is an agent row with the role 'operator'
-- (mirrors migrations/sqlite/0011_operator_role.sql): an admin of its own
-- site who also owns the status page and makes sites. The admin the first
-- start made runs the installation, as on a new database.
ALTER TABLE agents DROP CONSTRAINT agents_role_check;
ALTER TABLE agents ADD CONSTRAINT agents_role_check CHECK (role IN ('admin', 'agent', 'probe', 'operator'));
UPDATE agents SET role = 'operator' WHERE email = 'admin@holdfast.local' AND role = 'admin';
