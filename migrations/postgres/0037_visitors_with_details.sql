-- Mirrors migrations/sqlite/0045_visitors_with_details.sql: the visitors
-- the retention job may still have to clear, those that kept a detail.
-- (Expand only: an older release's queries are unchanged.)
CREATE INDEX visitors_with_details ON visitors(site_id, last_seen) WHERE name IS NOT NULL OR email IS NOT NULL
    OR page_url IS NOT NULL OR referrer IS NOT NULL OR user_agent IS NOT NULL OR last_ip IS NOT NULL;
