-- Every node reads the sessions revoked lately (at start and every few
-- seconds), so a logout or deactivation survives restarts and reaches nodes
-- that missed the bus: an index keeps that read small.
CREATE INDEX sessions_revoked_at ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
