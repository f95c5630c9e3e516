//! Assembling the server's parts into one shared state: the store, the bus,
//! the hub, auth and chat. Also the first-run bootstrap (demo site and its
//! admin, the installation's operator).

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::abuse::bans::{self, Bans};
use crate::abuse::limits::Floodgate;
use crate::admission::Admission;
use crate::auth::api_tokens::ApiTokens;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::{Auth, HashPool, passwords};
use crate::bus::{Audience, Bus, BusSink, Envelope, Payload, local::LocalBus, nats::NatsBus};
use crate::chat::hub::Hub;
use crate::chat::service::{Chat, DRAIN_RETRY};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::server::{Connections, connection_cap_from_fd_limit};
use crate::side::plan::PlanService;
use crate::status::Status;
use crate::store::status::StatusStore;
use crate::store::{NewAgent, Role, Store, postgres::PostgresStore, sqlite::SqliteStore};

/// PostgreSQL connections of the status page on each node (besides the
/// chat pool, `--database-pool`, and the runner's one lead connection).
pub const STATUS_POOL: u32 = 4;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
    pub chat: Arc<Chat>,
    pub admission: Arc<Admission>,
    pub login_limiter: Arc<LoginLimiter>,
    pub plan: Arc<PlanService>,
    /// The socket cap in force (from config, else the connections' soft
    /// limit, so sockets never take the reserve kept for health and login).
    pub max_sockets: usize,
    /// Every client connection: counts per address and in total, and the
    /// idle ones a full server evicts (`server::run` admits through it).
    pub connections: Arc<Connections>,
    /// WebSockets open on this node, counted from the upgrade (before hello).
    pub open_sockets: Arc<std::sync::atomic::AtomicUsize>,
    /// The status page (its own store view, lane and side tasks).
    pub status: Arc<Status>,
    /// The chat outbox (offline-message emails), delivered by the lead.
    pub outbox: Arc<Outbox>,
    /// Integrations' credentials for the REST API, rate-limited per token.
    pub api_tokens: Arc<ApiTokens>,
    /// Files and images in chat: uploads, signed links, the cleanup.
    pub attachments: Arc<crate::attachments::Attachments>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
}

/// What the first start on an empty data dir created, to show the operator.
pub struct FirstRun {
    pub site_name: String,
    pub widget_key: String,
    pub admin_email: String,
    pub admin_password: String,
}

impl AppState {
    /// Open the store in `config.data_dir` and wire everything up. Returns
    /// the first-run details when the data dir was empty.
    pub async fn build(config: Config) -> Result<(AppState, Option<FirstRun>)> {
        if config.nats_url.is_some() && config.database_url.is_none() {
            return Err(Error::bad_request("--nats-url needs --database-url: the nodes of a cluster share one store"));
        }
        // The status page is in the same store as chat, so every node of a
        // cluster shows one page. On PostgreSQL it has a small pool of its
        // own: a chat storm that takes every chat connection cannot make
        // the status page wait for one.
        let (store, status_store): (Arc<dyn Store>, Arc<dyn StatusStore>) = match &config.database_url {
            Some(url) => (
                Arc::new(PostgresStore::connect(url, config.database_max_connections).await?),
                Arc::new(PostgresStore::connect(url, STATUS_POOL).await?.status_store()),
            ),
            None => {
                let sqlite = SqliteStore::open(&config.data_dir).await?;
                let status = Arc::new(sqlite.status_store());
                (Arc::new(sqlite), status)
            }
        };
        let first_run = bootstrap(store.as_ref(), &config.node_id).await?;
        // Shared by every node (it is in the store), so a token issued by
        // one node resumes on any other.
        let secret = store.meta_init("token_key", &hex::encode(rand::random::<[u8; 32]>())).await?;
        let hashes = HashPool::new(config.hash_threads, config.hash_queue, config.hash_deadline);
        // While logins wait for the hash pool, the lower lanes shrink.
        let admission = Arc::new(Admission::new(&config.admission).yield_to(hashes.backlog()));
        let mut auth_config = config.auth.clone();
        auth_config.renewal_grace = config.sessions.renewal_grace;
        let auth = Arc::new(Auth::new(store.clone(), secret.as_bytes(), hashes, auth_config)?);
        // Revocations outlive restarts: read the ones whose tokens could
        // still be valid before serving anything.
        auth.sync_revocations().await?;
        // A node's heartbeat lasts three beats, for hubs and for the bus.
        let remote_ttl = config.presence_beat * 3;
        let mut hub = Hub::new(config.presence_grace);
        hub.set_remote_ttl(remote_ttl);
        let hub = Arc::new(hub);
        let bus: Arc<dyn Bus> = match &config.nats_url {
            Some(url) => Arc::new(NatsBus::connect(url, &config.nats_prefix, &config.node_id, remote_ttl).await?),
            None => Arc::new(LocalBus::new()),
        };
        // The bans in force, loaded before anything is served.
        let bans: Arc<Bans> = Arc::default();
        bans.sync(store.as_ref()).await?;
        bus.attach(Arc::new(NodeSink { hub: hub.clone(), auth: auth.clone(), bans: bans.clone() }));
        let listen_url = format!("http://{}", config.listen);
        let outbox = Arc::new(Outbox::new(
            store.clone(),
            bus.clone(),
            auth.tokens.clone(),
            config.outbox.clone(),
            &config.status,
            status_store.clone(),
            &listen_url,
        ));
        let mut chat = Chat::new(store.clone(), bus, hub, admission.clone(), outbox.clone());
        chat.bans = bans;
        chat.floodgate = Arc::new(Floodgate::new(config.connections.per_address_exempt.clone()));
        let chat = Arc::new(chat);
        spawn_ban_sync(&chat);
        spawn_drain_retry(&chat);
        if config.nats_url.is_some() {
            spawn_heartbeat(chat.clone(), config.node_id.clone(), config.presence_beat);
        }
        let login_limiter = Arc::new(LoginLimiter::new(config.login_limits));
        let plan = PlanService::new(config.plan.clone());
        plan.spawn();
        let connections = Arc::new(Connections::new(config.connections.clone(), connection_cap_from_fd_limit));
        let max_sockets = config.max_sockets.unwrap_or_else(|| connections.soft_limit());
        let status = Arc::new(Status::open(status_store, config.status.clone(), &listen_url).await?);
        let api_tokens = Arc::new(ApiTokens::new(store.clone(), config.api_token_requests_per_minute));
        spawn_housekeeping(login_limiter.clone(), auth.clone(), &status, chat.floodgate.clone(), &api_tokens);
        let attachments =
            Arc::new(crate::attachments::Attachments::new(store.clone(), auth.tokens.clone(), &config.data_dir)?);
        attachments.spawn_cleanup();
        let state = AppState {
            config: Arc::new(config),
            store,
            auth,
            chat,
            admission,
            login_limiter,
            plan,
            max_sockets,
            connections,
            open_sockets: Arc::default(),
            status,
            outbox,
            api_tokens,
            attachments,
            metrics: crate::telemetry::metrics(),
            started: Instant::now(),
        };
        Ok((state, first_run))
    }
}

/// How often a node reads the sessions revoked lately. The bus tells every
/// node of a logout at once; this catches what a node missed (it was
/// partitioned, or its bus was down) within a few seconds.
const REVOCATION_SYNC: std::time::Duration = std::time::Duration::from_secs(2);

fn spawn_housekeeping(
    limiter: Arc<LoginLimiter>,
    auth: Arc<Auth>,
    status: &Arc<Status>,
    floodgate: Arc<Floodgate>,
    api_tokens: &Arc<ApiTokens>,
) {
    // Holds the status page and the tokens (and through them the store)
    // only while it prunes, so the task ends when the server's state is gone.
    let status = Arc::downgrade(status);
    let api_tokens = Arc::downgrade(api_tokens);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let (Some(status), Some(api_tokens)) = (status.upgrade(), api_tokens.upgrade()) else { return };
            limiter.prune();
            api_tokens.prune();
            status.subscribe_limit.prune();
            floodgate.prune();
        }
    });
    // Holds the auth (and through it the store) only while it reads, so the
    // task ends when the server's state is gone.
    let auth = Arc::downgrade(&auth);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REVOCATION_SYNC);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(auth) = auth.upgrade() else { return };
            match auth.sync_revocations().await {
                Ok(_) => failing = false,
                // Said once per outage, not every two seconds.
                Err(err) if !std::mem::replace(&mut failing, true) => {
                    tracing::warn!(error = %err, "cannot read revoked sessions; the bus still carries them")
                }
                Err(_) => {}
            }
        }
    });
}

/// Every [`bans::SYNC_EVERY`], read whether bans changed in the store and
/// reload them if so: what a node that missed the bus catches up by, and
/// how a ban made by a node without a bus reaches the others.
fn spawn_ban_sync(chat: &Arc<Chat>) {
    // Holds the chat (and through it the store) only while it reads, so
    // the task ends when the server's state is gone.
    let chat = Arc::downgrade(chat);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(bans::SYNC_EVERY);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(chat) = chat.upgrade() else { return };
            match chat.bans.sync(chat.store.as_ref()).await {
                Ok(_) => failing = false,
                Err(err) if !std::mem::replace(&mut failing, true) => {
                    tracing::warn!(error = %err, "cannot read bans; the bus still carries them")
                }
                Err(_) => {}
            }
        }
    });
}

/// Every [`DRAIN_RETRY`], drain again the queues whose last drain failed:
/// a visitor queued on a quiet site during a database blip is routed
/// within a second or so of the database's return, not at the next event.
fn spawn_drain_retry(chat: &Arc<Chat>) {
    let chat = Arc::downgrade(chat);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DRAIN_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(chat) = chat.upgrade() else { return };
            chat.retry_failed_drains().await;
        }
    });
}

/// What a node's bus hands it: a revoked session is refused by this node's
/// `Auth` too (a logout on another node reaches every node), a ban made or
/// lifted anywhere holds here at once, heartbeats go to the hub's
/// presence, everything else to sockets.
struct NodeSink {
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    bans: Arc<Bans>,
}

impl BusSink for NodeSink {
    fn deliver(&self, envelope: Arc<Envelope>) {
        if let Payload::Ban { ban } = &envelope.payload {
            self.bans.apply(ban);
            return;
        }
        if let (Audience::Session { session_id }, Payload::Disconnect { .. }) = (&envelope.audience, &envelope.payload)
        {
            self.auth.forget_session(session_id);
        }
        self.hub.deliver(envelope);
    }
}

/// Cluster mode: tell the other nodes which agents are present here, every
/// beat and as soon as that changes; notice lost nodes and a bus that came
/// back, and have sockets re-read the store then. Ends when the node drains.
///
/// What the other nodes' beats change here is handled by a task of its
/// own: it reads the store and drains queues, and a beat that waited for
/// them would let a slow database make this node look lost to the others
/// (three missed beats), its agents absent and every socket re-reading.
fn spawn_heartbeat(chat: Arc<Chat>, node_id: String, beat: std::time::Duration) {
    spawn_remote_presence(&chat, beat);
    tokio::spawn(async move {
        let mut bus_was_down = false;
        while !chat.hub.is_draining() {
            tokio::select! {
                _ = tokio::time::sleep(beat) => {}
                // Coalesce a burst of connects into one beat.
                _ = chat.hub.presence_dirty.notified() => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
            let agents = chat.hub.present_agents();
            let payload = Payload::Presence { node_id: node_id.clone(), agents, dropped: chat.bus.dropped() };
            let beat = Envelope { site_id: String::new(), audience: Audience::SiteAgents, event: None, payload };
            chat.bus.publish(beat).await;
            if !chat.bus.healthy() {
                chat.hub.keep_remote_presence();
                bus_was_down = true;
                continue;
            }
            if std::mem::take(&mut bus_was_down) {
                tracing::info!("bus back: sockets re-read their conversations");
                chat.hub.request_resync();
            } else if chat.bus.take_missed() {
                chat.hub.request_resync();
            }
            let lost = chat.hub.lost_nodes();
            if !lost.is_empty() {
                tracing::warn!(?lost, "node(s) fell silent: sockets re-read their conversations");
                metrics::counter!("holdfast_nodes_lost_total").increment(lost.len() as u64);
                chat.hub.request_resync();
            }
        }
    });
}

/// Each change of the other nodes' agents, handled as it comes
/// ([`remote_presence_changed`]). Holds the chat only while it handles
/// one; looks every `beat` whether the node is gone or draining.
fn spawn_remote_presence(chat: &Arc<Chat>, beat: std::time::Duration) {
    let hub = chat.hub.clone();
    let chat = Arc::downgrade(chat);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hub.remote_presence_changed.notified() => {}
                _ = tokio::time::sleep(beat) => {
                    if hub.is_draining() || chat.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            }
            let Some(chat) = chat.upgrade() else { return };
            remote_presence_changed(&chat).await;
        }
    });
}

/// Agents came or went on another node: their sites' queues may route now
/// (a chat that arrived here before the agent's heartbeat did), and this
/// node's visitors may need to hear whether anyone is online. An agent's
/// availability can reach the store a moment after their presence reached
/// this node, while the site's agent list is served from memory for
/// `ONLINE_CACHE_TTL`: the sites are looked at again once that has passed,
/// so visitors here hear of an agent who came online in between.
async fn remote_presence_changed(chat: &Arc<Chat>) {
    let mut sites = std::collections::HashSet::new();
    for agent_id in chat.hub.take_remote_changes() {
        match chat.store.agent(&agent_id).await {
            Ok(Some(agent)) => {
                sites.insert(agent.site_id);
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "presence: cannot look up an agent"),
        }
    }
    for site_id in &sites {
        chat.presence_changed(site_id).await;
    }
    if sites.is_empty() {
        return;
    }
    let chat = chat.clone();
    tokio::spawn(async move {
        tokio::time::sleep(crate::chat::service::ONLINE_CACHE_TTL + std::time::Duration::from_millis(100)).await;
        for site_id in &sites {
            chat.presence_changed(site_id).await;
        }
    });
}

/// On an empty store: a demo site and its admin, with a generated
/// password, who is also the installation's operator (role `operator`:
/// the status page and the other sites are theirs). Nodes of a cluster starting together race for it; the store decides
/// which one bootstraps (the first to claim the `bootstrap` meta key).
async fn bootstrap(store: &dyn Store, node_id: &str) -> Result<Option<FirstRun>> {
    if !store.sites().await?.is_empty() {
        return Ok(None);
    }
    if store.meta_init("bootstrap", node_id).await? != node_id {
        return Ok(None);
    }
    let site = store.create_site("Demo site").await?;
    let password = generate_password();
    let hash = passwords::hash_now(&password)?;
    let email = "admin@holdfast.local".to_owned();
    store
        .create_agent(NewAgent {
            site_id: &site.id,
            email: &email,
            name: "Admin",
            role: Role::Operator,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await?;
    Ok(Some(FirstRun {
        site_name: site.name,
        widget_key: site.widget_key,
        admin_email: email,
        admin_password: password,
    }))
}

/// 20 characters from an unambiguous alphabet (~100 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}
