-- Mirrors migrations/sqlite/0020_lead_emails.sql and 0021_group_email.sql: an agent's choice about
-- lead emails (NULL = the role's default) and a group's own address.
ALTER TABLE agents ADD COLUMN lead_emails BOOLEAN;
ALTER TABLE groups ADD COLUMN email TEXT;
