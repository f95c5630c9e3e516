-- Holdfast schema v4 (SQLite): what the monitor loop knows about each
-- monitor between checks, kept in the store so that a restart (or, on
-- PostgreSQL, another node taking over the checks) goes on counting
-- instead of starting from zero.

-- Consecutive failed checks up to the last one.
ALTER TABLE status_monitors ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
-- Why the last failed check failed (kept after a passing one, for operators).
ALTER TABLE status_monitors ADD COLUMN last_error TEXT;
-- When it was last checked: the next check is due an interval later.
ALTER TABLE status_monitors ADD COLUMN last_check_at INTEGER;
-- When a check last failed: the quiet period before `monitoring` counts from it.
ALTER TABLE status_monitors ADD COLUMN last_failure_at INTEGER;
