-- PostgreSQL only. Reports (`store/report_days.rs`) read a finished UTC
-- day's chats as one summary row instead of as their own rows: while
-- reports were asked in a loop, the database's process reading some
-- 80,000 chats' rows for each 30-day report raised live chat's p99 to
-- 1.7-1.9x its p99 without (docs/benchmarks.md, `bench reports`). SQLite's
-- reports are read in Holdfast's process, paced at the lowest priority,
-- and stay within 1.2x without.
--
-- `facts` is a summary of the facts (0028, 0035) of every chat of the site
-- created on UTC day `day` (Unix ms / 86,400,000) that has them, encoded
-- and written by the report lane. NULL (or no row): read the chats.
-- `version` is a random number the summary was made with: a node that
-- keeps the summary in memory reads only this to know it still holds.
CREATE TABLE report_days (
    site_id TEXT NOT NULL REFERENCES sites(id),
    day     BIGINT NOT NULL,
    facts   BYTEA,
    version BIGINT,
    PRIMARY KEY (site_id, day)
);
-- Compact already: stored out of line, not compressed again.
ALTER TABLE report_days ALTER COLUMN facts SET STORAGE EXTERNAL;

-- A change to the facts of a chat of a day that has ended (by the
-- database's clock) empties that day's summary in the same transaction.
-- Days not yet ended are left alone: chat's writes of today never touch
-- this table, nor call a function, and no summary is made of a day until
-- an hour after it ended.
CREATE FUNCTION report_day_ended(created_at BIGINT) RETURNS BOOLEAN LANGUAGE sql VOLATILE AS $$
    SELECT created_at < floor(extract(epoch FROM clock_timestamp()) / 86400) * 86400000
$$;

-- The row is made if missing and locked either way, so that a report
-- making the day's summary at this moment (under the same lock) waits for
-- this transaction, or this one for it and then empties what it wrote. A
-- row that does not exist has no lock to wait on; a summary already empty
-- is not written again (a bulk write of an old day's chats would
-- otherwise write the one row once per chat).
CREATE FUNCTION report_day_emptied(site TEXT, created_at BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d BIGINT := created_at / 86400000;
BEGIN
    IF report_day_ended(created_at) THEN
        INSERT INTO report_days (site_id, day) VALUES (site, d) ON CONFLICT DO NOTHING;
        PERFORM FROM report_days WHERE site_id = site AND day = d FOR UPDATE;
        UPDATE report_days SET facts = NULL WHERE site_id = site AND day = d AND facts IS NOT NULL;
    END IF;
END $$;

CREATE FUNCTION conversations_report_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM report_day_emptied(OLD.site_id, OLD.created_at);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM report_day_emptied(NEW.site_id, NEW.created_at);
    END IF;
    RETURN NULL;
END $$;
-- Not for a message: only when a column reports read changes, for a chat
-- of an ended day (the columns first: no clock read for a message).
CREATE TRIGGER conversations_report_days_updated AFTER UPDATE ON conversations
    FOR EACH ROW WHEN ((
        OLD.messages IS DISTINCT FROM NEW.messages
        OR OLD.first_visitor_at IS DISTINCT FROM NEW.first_visitor_at
        OR OLD.first_assigned_at IS DISTINCT FROM NEW.first_assigned_at
        OR OLD.first_agent_at IS DISTINCT FROM NEW.first_agent_at
        OR OLD.rating_score IS DISTINCT FROM NEW.rating_score
        OR OLD.missed IS DISTINCT FROM NEW.missed
        OR OLD.closed_at IS DISTINCT FROM NEW.closed_at
        OR OLD.offline IS DISTINCT FROM NEW.offline
        OR OLD.group_id IS DISTINCT FROM NEW.group_id
        OR OLD.agent_id IS DISTINCT FROM NEW.agent_id
        OR OLD.created_at IS DISTINCT FROM NEW.created_at
        OR OLD.site_id IS DISTINCT FROM NEW.site_id)
        AND (report_day_ended(OLD.created_at) OR report_day_ended(NEW.created_at)))
    EXECUTE FUNCTION conversations_report_days();
-- A new chat is today's; a row written with an older time (an import) is
-- one of an ended day all the same. Retention's erasures delete.
CREATE TRIGGER conversations_report_days_inserted AFTER INSERT ON conversations
    FOR EACH ROW WHEN (report_day_ended(NEW.created_at)) EXECUTE FUNCTION conversations_report_days();
CREATE TRIGGER conversations_report_days_deleted AFTER DELETE ON conversations
    FOR EACH ROW WHEN (report_day_ended(OLD.created_at)) EXECUTE FUNCTION conversations_report_days();
