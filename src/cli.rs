//! The `holdfast` command line. Every flag can also come from the
//! environment (`HOLDFAST_*`). Errors print one line and exit non-zero.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};

use holdfast_server::app::AppState;
use holdfast_server::auth::{AgentProfile, normalize_email, passwords, valid_email};
use holdfast_server::config::Config;
use holdfast_server::store::{NewAgent, Role, Store, postgres::PostgresStore, sqlite::SqliteStore};
use holdfast_server::telemetry::{LogFormat, init_logs};

mod status_commands;
use status_commands::{IncidentCommand, MonitorCommand, StatusCommand};

#[derive(Parser, Debug)]
#[command(name = "holdfast", version, about = "Self-hosted live chat that survives the storm")]
pub struct Cli {
    /// Log format: text for a terminal, json for collectors.
    #[arg(long, global = true, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DataArg {
    /// Data directory (SQLite database), when no --database-url is given.
    #[arg(long = "data", env = "HOLDFAST_DATA", default_value = "./holdfast-data")]
    pub dir: PathBuf,
    /// PostgreSQL URL (postgres://user@host/db): the store shared by the
    /// nodes of a cluster, instead of SQLite in --data.
    #[arg(long, env = "HOLDFAST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "HOLDFAST_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        opts: ServeOpts,
        // Boxed: the largest set of flags (clippy: large_enum_variant).
        #[command(flatten)]
        status: Box<status_commands::StatusServeArgs>,
    },
    /// Apply the database schema (PostgreSQL with --database-url, else the
    /// SQLite file in --data). `serve` also applies it, and refuses a
    /// schema newer than it knows.
    Migrate {
        #[command(flatten)]
        data: DataArg,
    },
    /// Manage sites.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Manage agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// A visitor's data (an access request).
    Visitor {
        #[command(subcommand)]
        command: VisitorCommand,
    },
    /// Rehearse the outages Holdfast is built to survive.
    Storm {
        #[command(subcommand)]
        command: holdfast_storm::StormCommand,
    },
    /// Measure relay throughput, latency and memory per socket.
    Bench {
        #[command(subcommand)]
        command: holdfast_storm::bench::BenchCommand,
    },
    /// Internal: one process of a storm's clients (JSON lines on stdio).
    #[command(hide = true)]
    StormWorker,
    /// Status page incidents.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// Status page monitors (HTTP and TCP checks).
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// The status page.
    Status {
        #[command(subcommand)]
        command: StatusCommand,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeOpts {
    /// URL of the plan/subscription service whose banners the console shows
    /// (polled in the background; its failure never affects login or chat).
    #[arg(long, env = "HOLDFAST_PLAN_URL")]
    pub plan_url: Option<String>,
    /// Seconds between plan service refreshes.
    #[arg(long, env = "HOLDFAST_PLAN_INTERVAL", default_value_t = 30)]
    pub plan_interval: u64,
    /// Threads that run sockets and requests (the async runtime's workers;
    /// default: one per core). With SQLite, one per core but one leaves the
    /// store's writer thread a core: less CPU a message, less peak
    /// throughput (`docs/deploy.md`, "Sizing"). Password hashing and other
    /// blocking work have threads of their own besides.
    #[arg(long, env = "HOLDFAST_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Most sockets this node holds (default: the connections' soft limit,
    /// below the reserve).
    #[arg(long, env = "HOLDFAST_MAX_SOCKETS")]
    pub max_sockets: Option<usize>,
    /// Seconds a new connection has to send a complete request head (and a
    /// keep-alive connection to finish one it began); slower ones are closed.
    #[arg(long, env = "HOLDFAST_HEADER_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request; keep
    /// it above your proxy's upstream keep-alive (nginx: 60 s).
    #[arg(long, env = "HOLDFAST_KEEPALIVE_TIMEOUT", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub keepalive_timeout: u64,
    /// Most client connections open at once (default: the open-file limit
    /// minus 256).
    #[arg(long, env = "HOLDFAST_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(2..))]
    pub max_connections: Option<u64>,
    /// Connections kept for /livez, /readyz and login when the rest are
    /// full (default: an eighth of --max-connections, 8 to 256).
    #[arg(long, env = "HOLDFAST_CONNECTION_RESERVE", value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_reserve: Option<u64>,
    /// Most connections one client address holds (an IPv6 /64 counts as
    /// one address); 0 for no cap.
    #[arg(long, env = "HOLDFAST_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1000)]
    pub max_connections_per_address: usize,
    /// Addresses exempt from --max-connections-per-address, comma-separated:
    /// your reverse proxies and load balancers.
    #[arg(long, env = "HOLDFAST_PER_ADDRESS_EXEMPT", value_delimiter = ',', default_value = "127.0.0.1,::1")]
    pub per_address_exempt: Vec<std::net::IpAddr>,
    /// A reverse proxy or load balancer (an address or a CIDR) whose
    /// X-Forwarded-For names the client; repeat it, or separate with
    /// commas. From anyone else the header is ignored.
    #[arg(long = "trusted-proxy", env = "HOLDFAST_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = holdfast_server::abuse::client_ip::parse_proxy)]
    pub trusted_proxies: Vec<holdfast_server::abuse::client_ip::IpNet>,
    /// NATS URL (nats://host:4222): events between the nodes of a cluster.
    /// Needs --database-url.
    #[arg(long, env = "HOLDFAST_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS subject prefix; one per cluster sharing a NATS server.
    #[arg(long, env = "HOLDFAST_NATS_PREFIX", default_value = "holdfast")]
    pub nats_prefix: String,
    /// This node's name in the cluster (default: a new id at each start).
    #[arg(long, env = "HOLDFAST_NODE_ID")]
    pub node_id: Option<String>,
    /// Most PostgreSQL connections this node opens.
    #[arg(long, env = "HOLDFAST_DATABASE_POOL", default_value_t = 16)]
    pub database_pool: u32,
    /// Serve /demo: a page to try the chat as the first site's visitor and
    /// as an agent (off by default; for trying Holdfast out).
    #[arg(long, env = "HOLDFAST_DEMO")]
    pub demo: bool,
    /// Seconds before the chat outbox tries a failed email again; the wait
    /// doubles per attempt up to --outbox-retry-max-secs, for 24 hours.
    #[arg(long, env = "HOLDFAST_OUTBOX_RETRY_MIN_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub outbox_retry_min_secs: u64,
    /// The longest wait between two attempts of an outbox delivery.
    #[arg(long, env = "HOLDFAST_OUTBOX_RETRY_MAX_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub outbox_retry_max_secs: u64,
    /// REST requests one API token may make per minute on this node (a
    /// burst of that many, refilled evenly); 0: unlimited.
    #[arg(long, env = "HOLDFAST_API_TOKEN_RATE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub api_token_rate: u32,
    /// Seconds between two runs of the retention job (the sites'
    /// `retention_days`), on the node holding the lead.
    #[arg(long, env = "HOLDFAST_RETENTION_EVERY_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_every_secs: u64,
    /// Seconds between two rounds of making reports' summaries of settled
    /// days (PostgreSQL), on the node holding the lead.
    #[arg(long, env = "HOLDFAST_REPORT_SUMMARIES_EVERY_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub report_summaries_every_secs: u64,
    /// Enable /api/v1/ops/faults for rehearsals (never in production).
    #[arg(long, env = "HOLDFAST_FAULT_INJECTION", hide = true)]
    pub fault_injection: bool,
}

impl Cli {
    /// The async runtime's workers `serve` was given (`--workers`); `None`
    /// for tokio's default, one per core, which other commands take too.
    pub fn workers(&self) -> Option<usize> {
        match &self.command {
            Command::Serve { opts, .. } => opts.workers.map(usize::from),
            _ => None,
        }
    }
}

impl ServeOpts {
    pub fn apply(&self, config: &mut Config) {
        config.plan.url = self.plan_url.clone();
        config.plan.interval = std::time::Duration::from_secs(self.plan_interval.max(1));
        config.max_sockets = self.max_sockets;
        let connections = &mut config.connections;
        connections.header_timeout = std::time::Duration::from_secs(self.header_timeout);
        connections.keepalive_timeout = std::time::Duration::from_secs(self.keepalive_timeout);
        connections.max = self.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        connections.reserve = self.connection_reserve.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        connections.per_address = self.max_connections_per_address;
        connections.per_address_exempt = self.per_address_exempt.clone();
        config.fault_injection = self.fault_injection;
        config.demo = self.demo;
        config.trusted_proxies = self.trusted_proxies.clone();
        config.nats_url = self.nats_url.clone();
        config.nats_prefix = self.nats_prefix.clone();
        if let Some(id) = &self.node_id {
            config.node_id = id.clone();
        }
        config.database_max_connections = self.database_pool;
        config.outbox.retry_min = std::time::Duration::from_secs(self.outbox_retry_min_secs.max(1));
        config.outbox.retry_max =
            std::time::Duration::from_secs(self.outbox_retry_max_secs.max(self.outbox_retry_min_secs));
        config.api_token_requests_per_minute = self.api_token_rate;
        config.retention.every = std::time::Duration::from_secs(self.retention_every_secs);
        config.report_summaries.every = std::time::Duration::from_secs(self.report_summaries_every_secs);
    }
}

#[derive(Subcommand, Debug)]
pub enum SiteCommand {
    /// Create a site; prints its id and widget key.
    Create {
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// List sites.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum VisitorCommand {
    /// Print everything kept about a visitor as one JSON document: their
    /// details, conversations with every event, and bans naming them.
    Export {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Visitor id.
        visitor: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Erase a visitor for good: their details and their conversations'
    /// messages (kept as tombstones), and emails naming them. Prints what
    /// was removed.
    Erase {
        /// Site id.
        #[arg(long)]
        site: String,
        /// Visitor id.
        visitor: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Create an agent; the password is read from standard input.
    Create {
        /// Site id.
        #[arg(long)]
        site: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// `operator` runs the installation (status page, sites) and is an
        /// admin of this site.
        #[arg(long, value_parser = ["admin", "agent", "operator"], default_value = "agent")]
        role: String,
        /// Most chats routing gives this agent at once.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=100))]
        chat_limit: i64,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// List a site's agents.
    List {
        #[arg(long)]
        site: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// Give an agent another role, e.g. make an admin the installation's
    /// operator. A running server's tokens carry the new role from their
    /// next renewal (within the access token's lifetime).
    Role {
        /// The agent's email.
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "agent", "operator"])]
        role: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
}

/// Run the parsed command; `Err` is printed as one line by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_logs(cli.log_format);
    match cli.command {
        Command::Serve { listen, data, opts, status } => serve(listen, &data, &opts, *status).await,
        Command::Migrate { data } => migrate(&data).await,
        Command::Site { command } => site(command).await,
        Command::Agent { command } => agent(command).await,
        Command::Visitor { command } => visitor(command).await,
        Command::Storm { command } => holdfast_storm::run(command).await,
        Command::Bench { command } => holdfast_storm::bench::run(command).await,
        Command::StormWorker => holdfast_storm::worker::run().await,
        Command::Incident { command } => status_commands::incident(command).await,
        Command::Monitor { command } => status_commands::monitor(command).await,
        Command::Status { command } => status_commands::status(command).await,
    }
}

async fn serve(
    listen: SocketAddr,
    data: &DataArg,
    opts: &ServeOpts,
    status: status_commands::StatusServeArgs,
) -> anyhow::Result<()> {
    let dir = &data.dir;
    // In a cluster everything, the status page included, is in PostgreSQL.
    if data.database_url.is_none() {
        check_dir(dir)?;
    }
    let listener = holdfast_server::server::bind(listen).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!("cannot listen on {listen}: the address is already in use"),
        std::io::ErrorKind::PermissionDenied => anyhow!("cannot listen on {listen}: permission denied"),
        _ => anyhow!("cannot listen on {listen}: {e}"),
    })?;
    let addr = listener.local_addr()?;
    let mut config = Config::new(addr, dir.to_owned());
    config.database_url = data.database_url.clone();
    opts.apply(&mut config);
    status.apply(&mut config.status)?;
    let only_status = config.status.only;
    let (state, first_run) = AppState::build(config).await.map_err(|e| store_error("cannot start", &e))?;
    let base = format!("http://{addr}");
    // The banner goes to whoever started us; if they stopped reading
    // (a closed pipe), the server must keep serving, not panic.
    let mut banner = vec![format!("Holdfast listening on {base}")];
    if !only_status {
        banner.push(format!("  agent console: {base}/console"));
        if opts.demo {
            banner.push(format!("  demo page:     {base}/demo"));
        }
    }
    banner.push(format!("  status page:   {base}/status"));
    if let Some(first) = first_run {
        banner.push(format!("First start: created site {:?} (widget key {})", first.site_name, first.widget_key));
        banner.push(format!("  admin login: {}   (the installation's operator)", first.admin_email));
        banner.push(format!("  password:    {}   (shown once; keep it safe)", first.admin_password));
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in banner {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    match (&config_summary(data, opts), opts.nats_url.is_some()) {
        (store, true) => println!("  cluster node: store {store}, events over NATS"),
        (store, false) => tracing::debug!(store, "single node"),
    }
    tracing::info!(%addr, data = %dir.display(), "serving");
    holdfast_server::server::run(listener, state, holdfast_server::server::signal()).await.context("server failed")?;
    Ok(())
}

/// Where the store is, for the operator (never the URL: it may hold a password).
fn config_summary(data: &DataArg, _opts: &ServeOpts) -> String {
    match &data.database_url {
        Some(_) => "PostgreSQL".into(),
        None => format!("SQLite in {}", data.dir.display()),
    }
}

async fn migrate(data: &DataArg) -> anyhow::Result<()> {
    match &data.database_url {
        Some(url) => {
            let (before, after) = holdfast_server::store::postgres::migrate(url)
                .await
                .map_err(|e| anyhow!("cannot migrate: {}", detail(&e)))?;
            let known = holdfast_server::store::postgres::known_schema_version();
            match before {
                Some(v) if v > known => println!(
                    "PostgreSQL schema is version {v}, newer than this holdfast (version {known}); a newer release \
                     only added to it since, so this one may serve it"
                ),
                Some(v) if v == after => println!("PostgreSQL schema is up to date (version {after})"),
                Some(v) => println!("PostgreSQL schema migrated from version {v} to {after}"),
                None => println!("PostgreSQL schema created (version {after})"),
            }
        }
        None => {
            let store = open_sqlite(&data.dir).await?;
            store.close().await;
            println!("SQLite schema in {} is up to date", data.dir.display());
        }
    }
    Ok(())
}

/// The error chain as one line (the store hides detail from HTTP users; an
/// operator at the terminal needs it).
fn detail(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// A store error for the operator, after `context`; a store written by a
/// newer Holdfast is said alone, in one line that names it.
fn store_error(context: &str, err: &holdfast_server::error::Error) -> anyhow::Error {
    match err {
        holdfast_server::error::Error::NewerSchema(message) => anyhow!("{message}"),
        err => anyhow!("{context}: {}", detail(err)),
    }
}

/// A data dir that exists must be a writable directory; one that does not
/// is created.
fn check_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("data dir {} is not a directory", dir.display());
        }
        let probe = dir.join(".holdfast-write-test");
        std::fs::write(&probe, b"").map_err(|e| anyhow!("data dir {} is not writable: {e}", dir.display()))?;
        let _ = std::fs::remove_file(probe);
    } else {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    }
    Ok(())
}

pub(crate) async fn open_sqlite(dir: &Path) -> anyhow::Result<SqliteStore> {
    check_dir(dir)?;
    SqliteStore::open(dir).await.map_err(|e| store_error(&format!("cannot open the data dir {}", dir.display()), &e))
}

/// The store the command names: PostgreSQL with --database-url, else SQLite.
async fn open_store(data: &DataArg) -> anyhow::Result<Box<dyn Store>> {
    match &data.database_url {
        Some(url) => Ok(Box::new(open_postgres(url).await?)),
        None => Ok(Box::new(open_sqlite(&data.dir).await?)),
    }
}

/// The cluster's store, with the few connections a command needs.
pub(crate) async fn open_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    PostgresStore::connect(url, 2).await.map_err(|e| anyhow!("cannot open the database: {}", detail(&e)))
}

async fn visitor(command: VisitorCommand) -> anyhow::Result<()> {
    match command {
        VisitorCommand::Export { site, visitor, data } => {
            let store = open_store(&data).await?;
            let document = holdfast_server::privacy::export_visitor(store.as_ref(), &site, &visitor).await;
            store.close().await;
            let document = document.map_err(|e| anyhow!("{}", detail(&e)))?;
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        VisitorCommand::Erase { site, visitor, data } => {
            let store = open_store(&data).await?;
            let erased = holdfast_server::privacy::erase_visitor(store.as_ref(), &site, &visitor).await;
            let erased = match erased {
                Ok(erased) => erased,
                Err(e) => {
                    store.close().await;
                    bail!("{}", detail(&e));
                }
            };
            // Audited like an admin's erasure, by "the command line".
            let entry = holdfast_server::store::audit::AuditEntry {
                id: holdfast_server::store::new_id(),
                site_id: site.clone(),
                at: holdfast_server::store::now_ms(),
                actor_id: "cli".into(),
                actor_name: "the command line".into(),
                action: "visitor.erased".into(),
                target: Some(visitor.clone()),
                before: None,
                after: serde_json::to_value(erased).ok(),
            };
            let audited = store.append_audit(entry).await;
            store.close().await;
            audited.map_err(|e| anyhow!("erased, but not recorded in the audit log: {}", detail(&e)))?;
            println!("{}", serde_json::json!({"erased": erased}));
        }
    }
    Ok(())
}

async fn site(command: SiteCommand) -> anyhow::Result<()> {
    match command {
        SiteCommand::Create { name, json, data } => {
            let name = name.trim();
            if name.is_empty() || name.len() > 200 {
                bail!("--name must be 1 to 200 characters");
            }
            let store = open_store(&data).await?;
            let site = store.create_site(name).await.map_err(|e| anyhow!("{}", detail(&e)))?;
            if json {
                println!("{}", serde_json::json!({"id": site.id, "name": site.name, "widget_key": site.widget_key}));
            } else {
                println!("site created: {}", site.name);
                println!("  id:         {}", site.id);
                println!("  widget key: {}", site.widget_key);
            }
            store.close().await;
        }
        SiteCommand::List { json, data } => {
            let store = open_store(&data).await?;
            let sites = store.sites().await.map_err(|e| anyhow!("{}", detail(&e)))?;
            if json {
                println!("{}", serde_json::to_string(&sites)?);
            } else {
                for s in sites {
                    println!("{}  {}  {}", s.id, s.widget_key, s.name);
                }
            }
            store.close().await;
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password (one line): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    if password.chars().count() < 8 {
        bail!("the password on standard input is too short (at least 8 characters)");
    }
    if password.len() > holdfast_server::auth::MAX_PASSWORD {
        bail!("the password on standard input is too long (at most {} bytes)", holdfast_server::auth::MAX_PASSWORD);
    }
    Ok(password.to_owned())
}

async fn agent(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create { site, email, name, role, chat_limit, password_stdin: _, json, data } => {
            let email = normalize_email(&email);
            if !valid_email(&email) {
                bail!("--email {email:?} is not a valid email address");
            }
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > 200 {
                bail!("--name must be 1 to 200 characters");
            }
            let role = Role::parse(&role).ok_or_else(|| anyhow!("--role must be admin, agent or operator"))?;
            let password = read_password()?;
            let store = open_store(&data).await?;
            store
                .site(&site)
                .await
                .map_err(|e| anyhow!("{}", detail(&e)))?
                .ok_or_else(|| anyhow!("no site with id {site}"))?;
            let hash = tokio::task::spawn_blocking(move || passwords::hash_now(&password))
                .await?
                .map_err(|e| anyhow!("{}", detail(&e)))?;
            let agent = store
                .create_agent(NewAgent {
                    site_id: &site,
                    email: &email,
                    name: &name,
                    role,
                    password_hash: &hash,
                    chat_limit,
                })
                .await
                .map_err(|e| anyhow!("{}", detail(&e)))?;
            if json {
                println!("{}", serde_json::to_string(&AgentProfile::from(agent))?);
            } else {
                println!("agent created: {} <{}> ({}), id {}", agent.name, agent.email, agent.role.as_str(), agent.id);
            }
            store.close().await;
        }
        AgentCommand::List { site, json, data } => {
            let store = open_store(&data).await?;
            store
                .site(&site)
                .await
                .map_err(|e| anyhow!("{}", detail(&e)))?
                .ok_or_else(|| anyhow!("no site with id {site}"))?;
            let agents = store.agents(&site).await.map_err(|e| anyhow!("{}", detail(&e)))?;
            if json {
                let agents: Vec<AgentProfile> = agents.into_iter().map(Into::into).collect();
                println!("{}", serde_json::to_string(&agents)?);
            } else {
                for a in agents {
                    println!(
                        "{}  {:<8} {:<8} {} <{}>",
                        a.id,
                        a.role.as_str(),
                        a.availability.as_str(),
                        a.name,
                        a.email
                    );
                }
            }
            store.close().await;
        }
        AgentCommand::Role { email, role, json, data } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow!("--role must be admin, agent or operator"))?;
            let store = open_store(&data).await?;
            let agent = store
                .agent_by_email(&normalize_email(&email))
                .await
                .map_err(|e| anyhow!("{}", detail(&e)))?
                // The status probe's account is Holdfast's own.
                .filter(|a| a.role != Role::Probe)
                .ok_or_else(|| anyhow!("no agent with email {email}"))?;
            let update = holdfast_server::store::AgentUpdate { role: Some(role), ..Default::default() };
            store.update_agent(&agent.id, update).await.map_err(|e| anyhow!("{}", detail(&e)))?;
            let agent = store
                .agent(&agent.id)
                .await
                .map_err(|e| anyhow!("{}", detail(&e)))?
                .ok_or_else(|| anyhow!("no agent with email {email}"))?;
            if json {
                println!("{}", serde_json::to_string(&AgentProfile::from(agent))?);
            } else {
                println!("{} <{}> is now {}", agent.name, agent.email, agent.role.as_str());
            }
            store.close().await;
        }
    }
    Ok(())
}
