-- Mirrors migrations/sqlite/0042_report_marks.sql.
-- Reports (`store/reports.rs`) read a chat's rating and missed mark from
-- its row, as its other facts (0028): joined from `ratings` and
-- `missed_chats`, a 30-day report of a year's history read both tables
-- whole (docs/benchmarks.md, `bench reports`). Kept by triggers on the
-- two tables, whoever writes them; nothing changes for a message.
ALTER TABLE conversations ADD COLUMN rating_score BIGINT;
ALTER TABLE conversations ADD COLUMN missed BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE conversations c SET rating_score = r.score FROM ratings r WHERE r.conversation_id = c.id;
UPDATE conversations c SET missed = TRUE FROM missed_chats m WHERE m.conversation_id = c.id;

CREATE FUNCTION ratings_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE conversations SET rating_score = NULL WHERE id = OLD.conversation_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE conversations SET rating_score = NEW.score WHERE id = NEW.conversation_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ratings_mark AFTER INSERT OR UPDATE OR DELETE ON ratings
    FOR EACH ROW EXECUTE FUNCTION ratings_mark();

CREATE FUNCTION missed_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE conversations SET missed = FALSE WHERE id = OLD.conversation_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE conversations SET missed = TRUE WHERE id = NEW.conversation_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER missed_mark AFTER INSERT OR UPDATE OR DELETE ON missed_chats
    FOR EACH ROW EXECUTE FUNCTION missed_mark();
