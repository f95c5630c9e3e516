//! Logs (tracing) and metrics (Prometheus text at `/metrics`). Secrets and
//! message bodies are never logged: handlers log ids and outcomes only.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Install the global log subscriber. `RUST_LOG` overrides the level.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process-wide metrics recorder (installed once, shared by every server
/// started in this process, e.g. in tests).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our
            // handle renders nothing, which is visible and harmless.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

/// What a family counts, for its `# HELP` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family Holdfast exports, with its help text: one place, so
/// `/metrics` passes `promtool check metrics` and a family without a help
/// text cannot be added unnoticed (`tests/it/architecture.rs` checks that
/// every family named in the code is here).
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "holdfast_accept_errors_total",
        Kind::Counter,
        "Failed accepts of TCP connections (e.g. out of file descriptors).",
    ),
    ("holdfast_audit_failures_total", Kind::Counter, "Admin actions done but not recorded in the audit log."),
    ("holdfast_banned_refusals_total", Kind::Counter, "Visitor requests and frames refused because of a ban."),
    ("holdfast_bans_total", Kind::Counter, "Bans made by agents."),
    ("holdfast_breaker_opened_total", Kind::Counter, "Times a side service's circuit breaker opened."),
    ("holdfast_breaker_rejected_total", Kind::Counter, "Calls to a side service refused by its open breaker."),
    ("holdfast_breaker_state", Kind::Gauge, "A side service's breaker: 0 closed, 1 open."),
    ("holdfast_bus_backlog", Kind::Gauge, "Events queued for the other nodes, not yet handed to the bus."),
    (
        "holdfast_bus_delay_seconds",
        Kind::Histogram,
        "Time from another node queuing an event for the bus to this node receiving it (by both nodes' clocks), in seconds.",
    ),
    ("holdfast_bus_dropped_total", Kind::Counter, "Events not sent to the other nodes (bus down or its outbox full)."),
    ("holdfast_bus_malformed_total", Kind::Counter, "Bus messages from other nodes that could not be decoded."),
    (
        "holdfast_bus_missed_total",
        Kind::Counter,
        "Times this node's bus subscription fell behind and NATS dropped events for it.",
    ),
    ("holdfast_bus_received_total", Kind::Counter, "Events received from other nodes (a batch holds several)."),
    (
        "holdfast_bus_sent_total",
        Kind::Counter,
        "Messages handed to NATS for the other nodes: an event each, or a batch of several.",
    ),
    ("holdfast_bus_up", Kind::Gauge, "Whether this node's event bus is connected (1) or not (0)."),
    ("holdfast_connections", Kind::Gauge, "Sockets registered with this node's hub, by kind."),
    ("holdfast_hash_pool_abandoned_total", Kind::Counter, "Password hashes dropped because their caller had given up."),
    ("holdfast_hash_pool_rejected_total", Kind::Counter, "Logins refused at once because the hash queue was full."),
    ("holdfast_lane_in_flight", Kind::Gauge, "Requests being served, by priority lane."),
    ("holdfast_lane_shed_total", Kind::Counter, "Requests shed with 503, by priority lane."),
    ("holdfast_lane_waiting", Kind::Gauge, "Requests waiting to be admitted, by priority lane."),
    (
        "holdfast_lenient_renewals_total",
        Kind::Counter,
        "Expired access tokens renewed within grace while the store could not answer.",
    ),
    ("holdfast_login_rate_limited_total", Kind::Counter, "Login attempts refused by a rate limit, by which limit."),
    ("holdfast_login_seconds", Kind::Histogram, "Time to check a password at login, in seconds."),
    ("holdfast_logins_total", Kind::Counter, "Password logins, by result."),
    ("holdfast_messages_total", Kind::Counter, "Chat messages stored, by author kind."),
    (
        "holdfast_missed_chats_total",
        Kind::Counter,
        "Chats marked missed, by reason (waited: the site's limit passed with no reply; left: closed before one).",
    ),
    ("holdfast_nodes_lost_total", Kind::Counter, "Other nodes of the cluster that fell silent."),
    (
        "holdfast_outbox_deliveries_total",
        Kind::Counter,
        "Outbox delivery attempts by kind (email, webhook) and result (sent, retry, failed).",
    ),
    ("holdfast_outbox_queued", Kind::Gauge, "Deliveries waiting in the outbox, as the lead last counted them."),
    ("holdfast_password_hashes_total", Kind::Counter, "Password hashes computed."),
    (
        "holdfast_probe_password_hashes_total",
        Kind::Counter,
        "Password hashes computed for the status page's login probe.",
    ),
    ("holdfast_queue_waiting", Kind::Gauge, "Conversations waiting in a site's queue."),
    ("holdfast_ratings_total", Kind::Counter, "Post-chat ratings stored, by rating (good, bad)."),
    (
        "holdfast_runtime_workers",
        Kind::Gauge,
        "Threads of the async runtime that run this node's sockets and requests (serve --workers).",
    ),
    ("holdfast_routed_total", Kind::Counter, "Conversations assigned by routing, by outcome."),
    ("holdfast_slow_consumers_total", Kind::Counter, "Sockets disconnected because their queue filled."),
    ("holdfast_socket_ends_total", Kind::Counter, "Sockets that ended, by reason."),
    ("holdfast_socket_gap_fills_total", Kind::Counter, "Gaps in a socket's events filled from the store."),
    ("holdfast_socket_replay_reads_total", Kind::Counter, "Store reads to replay events to a resuming socket."),
    (
        "holdfast_socket_resyncs_total",
        Kind::Counter,
        "Times sockets re-read their conversations after a node or bus loss.",
    ),
    ("holdfast_sockets", Kind::Gauge, "Open sockets on this node, by kind."),
    ("holdfast_sockets_refused_total", Kind::Counter, "Socket upgrades refused because the node holds its maximum."),
    ("holdfast_status_checks_total", Kind::Counter, "Status page monitor checks, by result."),
    (
        "holdfast_status_deliveries_total",
        Kind::Counter,
        "Status notifications handed to the outbox (outcome relayed); their sending is counted in holdfast_outbox_deliveries_total.",
    ),
    (
        "holdfast_status_runner",
        Kind::Gauge,
        "Whether this process runs the status page's monitors and deliveries (1) or not (0).",
    ),
    (
        "holdfast_status_subscribe_rate_limited_total",
        Kind::Counter,
        "Status subscriptions refused by the per-address limit.",
    ),
    (
        "holdfast_store_batch_size",
        Kind::Histogram,
        "Changes committed together in one transaction (the SQLite writer's, PostgreSQL's group commit of messages).",
    ),
    (
        "holdfast_store_batches_split_total",
        Kind::Counter,
        "PostgreSQL group commits that failed on what one message may cause and were applied one message at a time.",
    ),
    (
        "holdfast_store_search_pages_merged_total",
        Kind::Counter,
        "Pages of the PostgreSQL message search index's pending list merged beside the writer, not inside a commit.",
    ),
    (
        "holdfast_store_writer_lingered_total",
        Kind::Counter,
        "Small batches the busy SQLite writer held up to a millisecond for more changes before committing.",
    ),
    (
        "holdfast_store_writer_cold_loads_total",
        Kind::Counter,
        "Conversations the SQLite writer read back into its cache (with their idempotency window).",
    ),
    (
        "holdfast_store_writer_evicted_total",
        Kind::Counter,
        "Conversations the SQLite writer dropped from its cache, least recently used first.",
    ),
    ("holdfast_store_up", Kind::Gauge, "Whether the store answered a ping within 300 ms (1) or not (0)."),
    ("holdfast_store_wal_frames", Kind::Gauge, "Frames in the SQLite write-ahead log."),
    ("holdfast_tcp_connections_closed_total", Kind::Counter, "TCP connections closed by the server, by reason."),
    ("holdfast_tcp_connections_max", Kind::Gauge, "The node's TCP connection limit."),
    ("holdfast_tcp_connections_open", Kind::Gauge, "TCP connections open on this node."),
    ("holdfast_visitors_erased_total", Kind::Counter, "Visitors whose data an admin or the operator erased."),
    ("holdfast_retention_runs_total", Kind::Counter, "Runs of the retention job that applied every site's policy."),
    ("holdfast_retention_errors_total", Kind::Counter, "Runs of the retention job that failed (tried again later)."),
    (
        "holdfast_retention_expired_conversations_total",
        Kind::Counter,
        "Ended conversations whose messages a site's retention policy erased.",
    ),
    ("holdfast_retention_expired_messages_total", Kind::Counter, "Message bodies erased by retention policies."),
    ("holdfast_retention_expired_visitors_total", Kind::Counter, "Visitors whose details retention policies erased."),
    (
        "holdfast_retention_expired_deliveries_total",
        Kind::Counter,
        "Sent or failed deliveries whose contents retention policies erased.",
    ),
    (
        "holdfast_retention_expired_audit_entries_total",
        Kind::Counter,
        "Audit log entries deleted once older than their site's audit retention.",
    ),
    (
        "holdfast_report_summaries_made_total",
        Kind::Counter,
        "Summaries of settled days the lead made for reports (PostgreSQL).",
    ),
    (
        "holdfast_report_summaries_missing",
        Kind::Gauge,
        "Settled days left without a summary by the lead's last round (at least: a report went first).",
    ),
    ("holdfast_report_summary_rounds_total", Kind::Counter, "Rounds of the lead keeping reports' summaries."),
    ("holdfast_api_token_rate_limited_total", Kind::Counter, "REST requests refused by an API token's rate limit."),
    (
        "holdfast_visitor_rate_limited_total",
        Kind::Counter,
        "Visitor sessions, conversations and messages refused by a site's flood limits.",
    ),
];

fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}
