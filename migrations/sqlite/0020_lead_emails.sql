-- Who is emailed a site's leads (offline messages, missed chats): by
-- default its admins; an agent may opt in and an admin out
-- (`lead_emails`: NULL = the role's default, 1 = yes, 0 = no). A group's
-- own address is 0021_group_email.sql: one table per migration, so a
-- rebuild of `agents` (0004, 0011) can be replayed before this one alone.
ALTER TABLE agents ADD COLUMN lead_emails INTEGER;
