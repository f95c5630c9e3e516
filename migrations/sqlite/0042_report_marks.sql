-- Reports (`store/reports.rs`) read a chat's rating and missed mark from
-- its row, as its other facts (0035): joined from `ratings` and
-- `missed_chats`, a 30-day report of a year's history read both tables
-- whole (docs/benchmarks.md, `bench reports`). Kept by triggers on the
-- two tables, whoever writes them; nothing changes for a message.
ALTER TABLE conversations ADD COLUMN rating_score INTEGER;
ALTER TABLE conversations ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET rating_score = (SELECT r.score FROM ratings r WHERE r.conversation_id = conversations.id)
WHERE id IN (SELECT conversation_id FROM ratings);
UPDATE conversations SET missed = 1 WHERE id IN (SELECT conversation_id FROM missed_chats);

CREATE TRIGGER ratings_mark_insert AFTER INSERT ON ratings BEGIN
    UPDATE conversations SET rating_score = NEW.score WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER ratings_mark_update AFTER UPDATE ON ratings BEGIN
    UPDATE conversations SET rating_score = NULL WHERE id = OLD.conversation_id;
    UPDATE conversations SET rating_score = NEW.score WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER ratings_mark_delete AFTER DELETE ON ratings BEGIN
    UPDATE conversations SET rating_score = NULL WHERE id = OLD.conversation_id;
END;
CREATE TRIGGER missed_mark_insert AFTER INSERT ON missed_chats BEGIN
    UPDATE conversations SET missed = 1 WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER missed_mark_update AFTER UPDATE OF conversation_id ON missed_chats BEGIN
    UPDATE conversations SET missed = 0 WHERE id = OLD.conversation_id;
    UPDATE conversations SET missed = 1 WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER missed_mark_delete AFTER DELETE ON missed_chats BEGIN
    UPDATE conversations SET missed = 0 WHERE id = OLD.conversation_id;
END;
