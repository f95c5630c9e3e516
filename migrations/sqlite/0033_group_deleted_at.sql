-- Deleting a group (issue 27): a soft delete. The row stays, so the
-- conversations and reports that name the group keep its name; the group
-- is no longer listed, offered for transfers or routed to. Its name stays
-- taken (the site's names are unique).
ALTER TABLE groups ADD COLUMN deleted_at INTEGER;
