-- Ratings: a visitor's verdict on their closed conversation, at most one
-- each. The rating itself is a durable event of the conversation (kind
-- `rating`, written in the same transaction); this row is its index: it
-- makes "already rated?" one lookup instead of a walk of the events, and
-- lets reports count ratings by site and time without reading events.
-- `score` is on a 1-5 scale (bad 1, good 5) so a finer scale needs no
-- new column.
CREATE TABLE ratings (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
    site_id         TEXT NOT NULL REFERENCES sites(id),
    seq             INTEGER NOT NULL,
    score           INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    created_at      INTEGER NOT NULL
);
CREATE INDEX ratings_site ON ratings(site_id, created_at);
