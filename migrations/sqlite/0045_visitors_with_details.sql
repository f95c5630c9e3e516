-- Retention (privacy::retention): the visitors the job may still have to
-- clear are those that kept a detail. Without this index its search
-- walked every visitor last seen before the cutoff, the ones it had
-- already cleared included: 15 ms of a reader per batch at 50,000
-- visitors, and more each day a policy has run. The condition is the
-- job's own, word for word, so SQLite sees the index applies.
CREATE INDEX visitors_with_details ON visitors(site_id, last_seen) WHERE name IS NOT NULL OR email IS NOT NULL
    OR page_url IS NOT NULL OR referrer IS NOT NULL OR user_agent IS NOT NULL OR last_ip IS NOT NULL;
