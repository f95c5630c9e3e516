-- Who is emailed a site's leads (offline messages, missed chats): by
-- default its admins; an agent may opt in and an admin out
-- (`lead_emails`: NULL = the role's default, 1 = yes, 0 = no), and a
-- group may have an address of its own that gets its leads too.
ALTER TABLE agents ADD COLUMN lead_emails INTEGER;
ALTER TABLE groups ADD COLUMN email TEXT;
