//! Assembling the server's parts into one shared state: the store, the bus,
//! the hub, auth and chat. Also the first-run bootstrap (demo site and admin).

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::admission::Admission;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::{Auth, HashPool, passwords};
use crate::bus::{Bus, BusSink, local::LocalBus};
use crate::chat::hub::Hub;
use crate::chat::service::Chat;
use crate::config::Config;
use crate::error::Result;
use crate::side::plan::PlanService;
use crate::status::Status;
use crate::store::{NewAgent, Role, Store, sqlite::SqliteStore};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
    pub chat: Arc<Chat>,
    pub admission: Arc<Admission>,
    pub login_limiter: Arc<LoginLimiter>,
    pub plan: Arc<PlanService>,
    /// The socket cap in force (from config or the open-file limit).
    pub max_sockets: usize,
    /// WebSockets open on this node, counted from the upgrade (before hello).
    pub open_sockets: Arc<std::sync::atomic::AtomicUsize>,
    /// The status page (its own store view, lane and side tasks).
    pub status: Arc<Status>,
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
        let sqlite = Arc::new(SqliteStore::open(&config.data_dir).await?);
        let store: Arc<dyn Store> = sqlite.clone();
        let first_run = bootstrap(store.as_ref()).await?;
        let secret = store.meta_init("token_key", &hex::encode(rand::random::<[u8; 32]>())).await?;
        let hashes = HashPool::new(config.hash_threads, config.hash_queue, config.hash_deadline);
        let auth = Arc::new(Auth::new(store.clone(), secret.as_bytes(), hashes, config.auth.clone())?);
        let hub = Arc::new(Hub::new(config.presence_grace));
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        bus.attach(hub.clone() as Arc<dyn BusSink>);
        let admission = Arc::new(Admission::new(&config.admission));
        let chat = Arc::new(Chat::new(store.clone(), bus, hub, admission.clone()));
        let login_limiter = Arc::new(LoginLimiter::new(config.login_limits));
        let plan = PlanService::new(config.plan.clone());
        plan.spawn();
        let max_sockets = config.max_sockets.unwrap_or_else(socket_cap_from_fd_limit);
        spawn_housekeeping(login_limiter.clone());
        let status_url = format!("http://{}", config.listen);
        let status = Arc::new(Status::open(sqlite, config.status.clone(), &status_url).await?);
        let state = AppState {
            config: Arc::new(config),
            store,
            auth,
            chat,
            admission,
            login_limiter,
            plan,
            max_sockets,
            open_sockets: Arc::default(),
            status,
            metrics: crate::telemetry::metrics(),
            started: Instant::now(),
        };
        Ok((state, first_run))
    }
}

/// Raise the soft open-file limit to the hard one, and keep headroom below
/// it for the store, listeners and outgoing calls.
fn socket_cap_from_fd_limit() -> usize {
    const HEADROOM: u64 = 256;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    limit.saturating_sub(HEADROOM).max(16) as usize
}

fn spawn_housekeeping(limiter: Arc<LoginLimiter>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.prune();
        }
    });
}

/// On an empty store: a demo site and an admin with a generated password.
async fn bootstrap(store: &dyn Store) -> Result<Option<FirstRun>> {
    if !store.sites().await?.is_empty() {
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
            role: Role::Admin,
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
