-- Full-text search (issue 27, `store/search.rs`): GIN indexes over
-- `tsvector`s of a message's words (its body, then its files' names) and
-- of a visitor's name and email, with the 'simple' configuration (no
-- stemming, no stop words), so a chat in any language is found by its
-- words. Expression indexes: nothing to keep in step, and an erased body
-- (a tombstone, body NULL) leaves the partial index. Building them
-- indexes the rows already stored. (Expand only.)

-- A message's words. Immutable, so an index may use it; queries must
-- write the same expression for the planner to use the index.
CREATE FUNCTION message_search_text(body TEXT, data TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(body, '') || coalesce((
        SELECT ' ' || string_agg(translate(a ->> 'name', '._-', '   '), ' ')
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(data::jsonb -> 'attachments') = 'array'
                                       THEN data::jsonb -> 'attachments' ELSE '[]'::jsonb END) a), '')
$$;

CREATE INDEX events_search ON events
    USING GIN (to_tsvector('simple', message_search_text(body, data)))
    WHERE kind = 'message' AND body IS NOT NULL;

CREATE INDEX visitors_search ON visitors
    USING GIN (to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(email, '')));

