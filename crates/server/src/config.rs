//! Server configuration: built from flags and environment by the CLI, or
//! directly by tests. Every field says why it exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::AdmissionConfig;
use crate::auth::AuthConfig;
use crate::auth::ratelimit::LoginLimits;
use crate::chat::session::SessionLimits;
use crate::server::ConnectionLimits;
use crate::side::plan::PlanConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database (and nothing else yet) lives.
    pub data_dir: PathBuf,
    /// Token and session lifetimes.
    pub auth: AuthConfig,
    /// Socket timeouts.
    pub sessions: SessionLimits,
    /// How long a disconnected agent still counts as present for routing,
    /// so a network blip does not reshuffle their chats.
    pub presence_grace: Duration,
    /// Password hashing threads; defaults to the number of cores.
    pub hash_threads: usize,
    /// Logins that may wait for a hashing thread before new ones are refused.
    pub hash_queue: usize,
    /// A login waiting longer than this for its hash is answered 503.
    pub hash_deadline: Duration,
    /// Largest HTTP request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Print the first-run credentials (off in tests).
    pub announce: bool,
    /// Capacity of each priority lane.
    pub admission: AdmissionConfig,
    /// Login attempts per account and per address.
    pub login_limits: LoginLimits,
    /// The plan/banner side service.
    pub plan: PlanConfig,
    /// Most sockets this node holds at once; new ones beyond are refused
    /// with 503 so the process never runs out of file descriptors. When
    /// `None`, the connections' soft limit (from the open-file limit).
    pub max_sockets: Option<usize>,
    /// Client connections: header and keep-alive timeouts, the cap per
    /// address, the node's limit and the reserve kept for health and login.
    pub connections: ConnectionLimits,
    /// PostgreSQL URL. When set, the store is PostgreSQL, shared by every
    /// node of a cluster, instead of SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Most connections this node opens to PostgreSQL.
    pub database_max_connections: u32,
    /// NATS URL. When set, events reach the sockets of every node through
    /// NATS instead of only this process's (needs `database_url`).
    pub nats_url: Option<String>,
    /// NATS subject prefix: the nodes of one cluster share it, two clusters
    /// on one NATS server must not.
    pub nats_prefix: String,
    /// This node's id in the cluster (heartbeats, dropping its own echo).
    pub node_id: String,
    /// How often a node tells the others which agents are present on it;
    /// three missed beats and the node counts as lost.
    pub presence_beat: Duration,
    /// Allow `/api/v1/ops/faults` (admins only): store failures and socket
    /// cuts for rehearsals. Never on in production.
    pub fault_injection: bool,
    /// The status page, its monitors and notifications.
    pub status: crate::status::StatusConfig,
    /// How the chat outbox retries deliveries (email over `status.smtp`).
    pub outbox: crate::outbox::OutboxConfig,
    /// How the lead applies the sites' retention policies.
    pub retention: crate::privacy::RetentionConfig,
    /// How often the lead keeps reports' summaries of settled days.
    pub report_summaries: crate::reports::SummariesConfig,
    /// Serve `/demo`, a page that chats as the first site's visitor with
    /// its widget key: for trying Holdfast out, off unless asked for.
    pub demo: bool,
    /// Reverse proxies and load balancers whose `X-Forwarded-For` names
    /// the client (`abuse::client_ip`); from anyone else the header is
    /// ignored and the socket's address is the client's. Empty: nobody's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// REST requests one API token may make per minute on this node (a
    /// burst of that many, refilled evenly); 0: unlimited.
    pub api_token_requests_per_minute: u32,
}

impl Config {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            auth: AuthConfig::default(),
            sessions: SessionLimits::default(),
            presence_grace: Duration::from_secs(60),
            hash_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            hash_queue: 4096,
            hash_deadline: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
            announce: true,
            admission: AdmissionConfig::default(),
            login_limits: LoginLimits::default(),
            plan: PlanConfig::default(),
            max_sockets: None,
            connections: ConnectionLimits::default(),
            fault_injection: false,
            status: crate::status::StatusConfig::default(),
            outbox: crate::outbox::OutboxConfig::default(),
            retention: crate::privacy::RetentionConfig::default(),
            report_summaries: crate::reports::SummariesConfig::default(),
            database_url: None,
            database_max_connections: 16,
            nats_url: None,
            nats_prefix: "holdfast".into(),
            node_id: crate::store::new_id(),
            presence_beat: Duration::from_secs(1),
            demo: false,
            trusted_proxies: Vec::new(),
            api_token_requests_per_minute: 600,
        }
    }
}
