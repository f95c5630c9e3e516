-- Mirrors migrations/sqlite/0015_invitations.sql.
-- Invitations: a site's admin adds a person by email. The address gets a
-- link to choose a password; the admin learns nothing about whether it
-- already has an account on another site (issue 16). The link is a token
-- signed with the server's key naming the invitation, so no secret is
-- stored here.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    site_id     TEXT NOT NULL REFERENCES sites(id),
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    chat_limit  BIGINT NOT NULL,
    invited_by  TEXT NOT NULL REFERENCES agents(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX invitations_site ON invitations(site_id, created_at);
