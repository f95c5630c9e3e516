-- Retention (privacy::retention): when a site's policy erased a
-- conversation's messages. Set once; the partial index holds only the
-- conversations the job may still have to look at. (Expand only.)
ALTER TABLE conversations ADD COLUMN expired_at BIGINT;
CREATE INDEX conversations_unexpired ON conversations(site_id, closed_at) WHERE expired_at IS NULL;
