-- The status page (PostgreSQL), mirroring migrations/sqlite/0002_status.sql
-- and 0004_monitor_state.sql, so every node of a cluster shows one page.
-- Times are Unix milliseconds (BIGINT); ids are UUID v7 text; JSON is kept
-- as text.

CREATE TABLE status_components (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    description           TEXT,
    group_name            TEXT,
    position              BIGINT NOT NULL DEFAULT 0,
    status                TEXT NOT NULL DEFAULT 'operational'
                          CHECK (status IN ('operational', 'degraded_performance', 'partial_outage',
                                            'major_outage', 'under_maintenance')),
    only_show_if_degraded BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- Incidents and scheduled maintenances share one table: the same updates,
-- components and API objects; `kind` says which status set applies.
CREATE TABLE status_incidents (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('incident', 'maintenance')),
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved',
                                                    'postmortem', 'scheduled', 'in_progress', 'verifying',
                                                    'completed')),
    impact          TEXT NOT NULL CHECK (impact IN ('none', 'minor', 'major', 'critical', 'maintenance')),
    postmortem      TEXT,
    postmortem_at   BIGINT,
    -- Opened by a monitor rather than a person.
    auto            BOOLEAN NOT NULL DEFAULT FALSE,
    scheduled_for   BIGINT,
    scheduled_until BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    started_at      BIGINT NOT NULL,
    monitoring_at   BIGINT,
    resolved_at     BIGINT
);
CREATE INDEX status_incidents_created ON status_incidents(kind, created_at);

CREATE TABLE status_incident_components (
    incident_id  TEXT NOT NULL REFERENCES status_incidents(id),
    component_id TEXT NOT NULL REFERENCES status_components(id),
    PRIMARY KEY (incident_id, component_id)
);

-- The ordered updates of an incident; `affected` is the components' states
-- at that time, as JSON [{code, name, old_status, new_status}].
CREATE TABLE status_incident_updates (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES status_incidents(id),
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    affected    TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL
);
CREATE INDEX status_incident_updates_incident ON status_incident_updates(incident_id, created_at);

CREATE TABLE status_subscribers (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    -- The email address or the webhook URL.
    target       TEXT NOT NULL,
    -- Secret in confirm and unsubscribe links.
    token        TEXT NOT NULL UNIQUE,
    -- Webhooks only: the HMAC key their notifications are signed with.
    secret       TEXT,
    confirmed_at BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (kind, target)
);

-- The outbox: one row per notification per subscriber, delivered by a side
-- task with retries, never on a request's path. A runner claims a due row
-- by moving its next_at past a lease (FOR UPDATE SKIP LOCKED), so two
-- runners never send the same one.
CREATE TABLE status_deliveries (
    id            TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES status_subscribers(id) ON DELETE CASCADE,
    payload       TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_at       BIGINT NOT NULL,
    delivered_at  BIGINT,
    failed_at     BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX status_deliveries_due ON status_deliveries(next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX status_deliveries_subscriber ON status_deliveries(subscriber_id);

CREATE TABLE status_monitors (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    component_id    TEXT NOT NULL REFERENCES status_components(id),
    -- http://… or tcp://host:port
    target          TEXT NOT NULL,
    interval_ms     BIGINT NOT NULL,
    -- Built in (probes of Holdfast itself), re-pointed at every start.
    builtin         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    -- What the monitor loop knows between checks, so the node that takes
    -- the checks over goes on counting: consecutive failures up to the last
    -- check, its error, when it was last checked and last failed.
    failures        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_check_at   BIGINT,
    last_failure_at BIGINT
);

-- Uptime history: probe results rolled up per component and UTC day.
CREATE TABLE status_probe_days (
    component_id TEXT NOT NULL REFERENCES status_components(id),
    day          BIGINT NOT NULL,
    ok           BIGINT NOT NULL DEFAULT 0,
    total        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (component_id, day)
);
