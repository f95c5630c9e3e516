-- The status page's own SQLite file, DATA/status.sqlite: its tables as the
-- chat file had them (0002_status.sql, 0005_monitor_state.sql), moved out
-- so that the status page never waits on the chat writer's lock. On the
-- first start of a data dir whose chat file holds status tables, their
-- rows are copied here once (store/sqlite.rs, `import_status`).
-- Times are Unix milliseconds; ids are UUID v7 text.

-- The page's own settings ('status_page_id', 'status_components_seeded')
-- and 'imported_from_chat', set once the copy is done.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE status_components (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    description           TEXT,
    group_name            TEXT,
    position              INTEGER NOT NULL DEFAULT 0,
    status                TEXT NOT NULL DEFAULT 'operational'
                          CHECK (status IN ('operational', 'degraded_performance', 'partial_outage',
                                            'major_outage', 'under_maintenance')),
    only_show_if_degraded INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
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
    postmortem_at   INTEGER,
    -- Opened by a monitor (1) rather than a person (0).
    auto            INTEGER NOT NULL DEFAULT 0,
    scheduled_for   INTEGER,
    scheduled_until INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    monitoring_at   INTEGER,
    resolved_at     INTEGER
);
CREATE INDEX status_incidents_created ON status_incidents(kind, created_at);

CREATE TABLE status_incident_components (
    incident_id  TEXT NOT NULL REFERENCES status_incidents(id),
    component_id TEXT NOT NULL REFERENCES status_components(id),
    PRIMARY KEY (incident_id, component_id)
) WITHOUT ROWID;

-- The ordered updates of an incident; `affected` is the components' states
-- at that time, as JSON [{code, name, old_status, new_status}].
CREATE TABLE status_incident_updates (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES status_incidents(id),
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    affected    TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL
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
    confirmed_at INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (kind, target)
);

-- The outbox: one row per notification per subscriber, delivered by a side
-- task with retries, never on a request's path.
CREATE TABLE status_deliveries (
    id            TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES status_subscribers(id) ON DELETE CASCADE,
    payload       TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    delivered_at  INTEGER,
    failed_at     INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX status_deliveries_due ON status_deliveries(next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE TABLE status_monitors (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    component_id    TEXT NOT NULL REFERENCES status_components(id),
    -- http://… or tcp://host:port
    target          TEXT NOT NULL,
    interval_ms     INTEGER NOT NULL,
    -- Built in (probes of Holdfast itself), re-pointed at every start.
    builtin         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    -- What the monitor loop knows between checks, so that a restart goes
    -- on counting: consecutive failed checks up to the last one, why the
    -- last failed one failed, when it was last checked, when a check last
    -- failed (the quiet period before `monitoring` counts from it).
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_check_at   INTEGER,
    last_failure_at INTEGER
);

-- Uptime history: probe results rolled up per component and UTC day.
CREATE TABLE status_probe_days (
    component_id TEXT NOT NULL REFERENCES status_components(id),
    day          INTEGER NOT NULL,
    ok           INTEGER NOT NULL DEFAULT 0,
    total        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (component_id, day)
) WITHOUT ROWID;
