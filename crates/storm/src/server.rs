//! The server a rehearsal runs against: provisioned and started as a child
//! process on a temporary data dir, or a `--target` already running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};

use holdfast_server::auth::passwords;
use holdfast_server::store::{Availability, NewAgent, Role, Site, Store, sqlite::SqliteStore};

pub const STORM_PASSWORD: &str = "storm-password-1";

/// Create a site, an admin and `agents` agents in the SQLite data dir `dir`.
pub async fn provision(dir: &Path, agents: usize) -> anyhow::Result<Site> {
    let store = SqliteStore::open(dir).await.map_err(|e| anyhow!("cannot open {}: {e}", dir.display()))?;
    provision_store(&store, agents).await
}

/// Create a site, an admin and `agents` agents (one shared password hash:
/// provisioning is not what is being measured), then close the store.
/// Run `body` on a cluster of `nodes` nodes over a fresh database made on
/// the PostgreSQL server at `server_url`, with `agents` agents provisioned.
/// The database is dropped afterwards, whatever the outcome, unless kept.
pub async fn with_cluster<T, F, Fut>(
    server_url: &str,
    nats_url: &str,
    nodes: usize,
    agents: usize,
    keep_database: bool,
    body: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Vec<Target>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use holdfast_server::store::postgres;
    let db_name = format!("holdfast_storm_{}", holdfast_server::store::new_id().replace('-', ""));
    let db_url = postgres::create_database(server_url, &db_name)
        .await
        .map_err(|e| anyhow!("cannot create a database on {server_url}: {e:?}"))?;
    let outcome = async {
        let store = postgres::PostgresStore::connect(&db_url, 4)
            .await
            .map_err(|e| anyhow!("cannot prepare the database {db_name}: {e:?}"))?;
        let site = provision_store(&store, agents).await;
        store.close().await;
        let site = site?;
        body(Target::start_cluster(nodes, &db_url, nats_url, &site.widget_key).await?).await
    }
    .await;
    if keep_database {
        eprintln!("kept the database {db_name}");
    } else if let Err(e) = postgres::drop_database(server_url, &db_name).await {
        eprintln!("warning: could not drop the database {db_name}: {e:?}");
    }
    outcome
}

pub async fn provision_store(store: &dyn Store, agents: usize) -> anyhow::Result<Site> {
    let site = store.create_site("Storm").await.map_err(|e| anyhow!("{e}"))?;
    let hash = passwords::hash_now(STORM_PASSWORD).map_err(|e| anyhow!("{e}"))?;
    store
        .create_agent(NewAgent {
            site_id: &site.id,
            email: "storm-admin@storm.test",
            name: "Storm admin",
            role: Role::Admin,
            password_hash: &hash,
            chat_limit: 1,
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    // Agents start online (as after a blip, they were online before), so the
    // rehearsal does not open with thousands of availability broadcasts.
    for i in 0..agents {
        let email = super::worker::agent_email(i);
        let agent = store
            .create_agent(NewAgent {
                site_id: &site.id,
                email: &email,
                name: &format!("Agent {i}"),
                role: Role::Agent,
                password_hash: &hash,
                chat_limit: 100,
            })
            .await
            .map_err(|e| anyhow!("{e}"))?;
        store.set_availability(&agent.id, Availability::Online).await.map_err(|e| anyhow!("{e}"))?;
    }
    store.close().await;
    Ok(site)
}

/// What a started server wrote to its log (stderr, at `RUST_LOG=warn`),
/// counted as it is passed on to ours: a soak shows, and its test asserts,
/// that none of it was a storage error or a slow connection pool.
#[derive(Debug, Default)]
pub struct ServerLog {
    /// Lines at WARN or ERROR.
    pub warnings: AtomicU64,
    /// Lines naming a storage error (`error=storage error`).
    pub storage_errors: AtomicU64,
    /// sqlx's "time to acquire exceeded slow threshold".
    pub slow_acquires: AtomicU64,
}

impl ServerLog {
    fn count(&self, line: &str) {
        if line.contains("WARN") || line.contains("ERROR") {
            self.warnings.fetch_add(1, Ordering::Relaxed);
        }
        if line.contains("storage error") {
            self.storage_errors.fetch_add(1, Ordering::Relaxed);
        }
        if line.contains("exceeded slow threshold") {
            self.slow_acquires.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (warnings, storage errors, slow acquires) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        (get(&self.warnings), get(&self.storage_errors), get(&self.slow_acquires))
    }
}

pub struct Target {
    pub base: String,
    pub addr: SocketAddr,
    /// Cluster rehearsals: every node's address (clients spread over them
    /// and fail over in turn); empty for one node.
    pub nodes: Vec<SocketAddr>,
    pub widget_key: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    child: Option<Child>,
    /// Keeps the temporary data dir until the rehearsal ends.
    _dir: Option<tempfile::TempDir>,
    /// The arguments it was started with, to start it again.
    args: Vec<String>,
    /// Its log, counted (servers started here only; shared across restarts).
    pub log: Arc<ServerLog>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Target {
    /// Start `holdfast serve` on a fresh data dir with `agents` agents.
    pub async fn start(agents: usize, extra: &[&str], common: &super::Common) -> anyhow::Result<Target> {
        if let Some(base) = &common.target {
            return Self::existing(base, common).await;
        }
        let dir = tempfile::tempdir()?;
        let site = provision(dir.path(), agents).await?;
        let data = dir.path().to_string_lossy().into_owned();
        let mut args = vec!["--data", data.as_str()];
        args.extend_from_slice(extra);
        let mut target = Self::spawn(&args, site.widget_key).await?;
        target._dir = Some(dir);
        Ok(target)
    }

    /// `n` nodes of a cluster on the database at `database_url` (already
    /// provisioned) and NATS at `nats_url`, under a subject prefix of their own.
    pub async fn start_cluster(
        n: usize,
        database_url: &str,
        nats_url: &str,
        widget_key: &str,
    ) -> anyhow::Result<Vec<Target>> {
        let prefix = format!("storm_{}", holdfast_server::store::new_id().replace('-', ""));
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node_id = format!("storm-node-{i}");
            // Each node's own data dir (the status page keeps its state there).
            let dir = tempfile::tempdir()?;
            let data = dir.path().to_string_lossy().into_owned();
            let args = [
                "--data",
                &data,
                "--database-url",
                database_url,
                "--nats-url",
                nats_url,
                "--nats-prefix",
                &prefix,
                "--node-id",
                &node_id,
            ];
            let mut node = Self::spawn(&args, widget_key.to_owned()).await?;
            node._dir = Some(dir);
            nodes.push(node);
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(|t| t.addr).collect();
        for node in &mut nodes {
            node.nodes = addrs.clone();
        }
        Ok(nodes)
    }

    /// Start `holdfast serve` on a store provisioned and filled beforehand
    /// (`args` name it: `--data`, `--database-url`), and log in as the
    /// storm admin. The caller keeps the data dir.
    pub async fn serve(args: &[&str], widget_key: String) -> anyhow::Result<Target> {
        Self::spawn(args, widget_key).await
    }

    /// Start `holdfast serve` with fault injection and `args`, and log in
    /// as the storm admin.
    async fn spawn(args: &[&str], widget_key: String) -> anyhow::Result<Target> {
        Self::spawn_logged("127.0.0.1:0", args, widget_key, Arc::default(), None).await
    }

    /// Start it on `listen`; log in as the storm admin unless `admin_token`
    /// (a restarted node's, still valid) is given.
    async fn spawn_logged(
        listen: &str,
        args: &[&str],
        widget_key: String,
        log: Arc<ServerLog>,
        admin_token: Option<String>,
    ) -> anyhow::Result<Target> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", listen, "--fault-injection"])
            // A rehearsal's worker holds up to 15,000 clients on one
            // 127.0.0.x address: no cap per address.
            .args(["--max-connections-per-address", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the server")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?).lines();
        let banner = lines.next().ok_or_else(|| anyhow!("the server exited at start"))??;
        std::thread::spawn(move || for _ in lines {});
        let errors = BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
        let counted = log.clone();
        std::thread::spawn(move || {
            for line in errors.map_while(std::result::Result::ok) {
                counted.count(&line);
                eprintln!("{line}");
            }
        });
        let base = banner.rsplit(' ').next().unwrap_or_default().to_owned();
        let addr: SocketAddr = base.trim_start_matches("http://").parse().context("server banner")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let mut target = Target {
            base,
            addr,
            nodes: Vec::new(),
            widget_key,
            admin_token: String::new(),
            http,
            child: Some(child),
            _dir: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            log,
        };
        target.admin_token = match admin_token {
            Some(token) => token,
            None => target.login("storm-admin@storm.test", STORM_PASSWORD).await?,
        };
        Ok(target)
    }

    /// `kill -9` the server and start it again on the same data dir (a new
    /// port: read `base`/`addr` again).
    pub async fn restart_after_kill9(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut next =
            Self::spawn_logged("127.0.0.1:0", &args, self.widget_key.clone(), self.log.clone(), None).await?;
        next._dir = self._dir.take();
        next.nodes = std::mem::take(&mut self.nodes);
        *self = next;
        Ok(())
    }

    /// Stop the server as an orchestrator does in a rolling restart
    /// (SIGTERM: it drains, telling its sockets to reconnect), wait for it
    /// to exit, and start the same release again on the same address and
    /// data dir. Returns how long the drain took. Its admin token is kept,
    /// so the restart itself runs no password hash.
    pub async fn restart_drained(&mut self) -> anyhow::Result<Duration> {
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not a node this rehearsal started"))?;
        let pid = libc::pid_t::try_from(child.id()).context("pid")?;
        let started = std::time::Instant::now();
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        anyhow::ensure!(unsafe { libc::kill(pid, libc::SIGTERM) } == 0, "cannot signal {pid}");
        while child.try_wait()?.is_none() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "{} did not drain within 60 s", self.base);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let drained = started.elapsed();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (listen, token) = (self.addr.to_string(), self.admin_token.clone());
        let mut next =
            Self::spawn_logged(&listen, &args, self.widget_key.clone(), self.log.clone(), Some(token)).await?;
        next._dir = self._dir.take();
        next.nodes = std::mem::take(&mut self.nodes);
        *self = next;
        Ok(drained)
    }

    /// The data dir of a server started here on a temporary one.
    pub fn data_dir(&self) -> Option<&Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// `kill -9` the node (SIGKILL: no drain, no goodbye to its sockets).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not a node this rehearsal started"))?;
        if child.try_wait()?.is_none() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    async fn existing(base: &str, common: &super::Common) -> anyhow::Result<Target> {
        let base = base.trim_end_matches('/').to_owned();
        let addr: SocketAddr = base.trim_start_matches("http://").parse().context("--target must be http://IP:PORT")?;
        anyhow::ensure!(addr.ip().is_loopback(), "rehearsals target loopback addresses only");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let widget_key = common.widget_key.clone().ok_or_else(|| anyhow!("--target needs --widget-key"))?;
        let mut target = Target {
            base,
            addr,
            nodes: Vec::new(),
            widget_key,
            admin_token: String::new(),
            http,
            child: None,
            _dir: None,
            args: Vec::new(),
            log: Arc::default(),
        };
        target.admin_token = target.login(&common.admin_email, &common.admin_password).await?;
        Ok(target)
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        body["access_token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("login failed ({status}): {body}"))
    }

    /// A new visitor of the site: (visitor id, visitor token).
    pub async fn visitor_session(&self) -> anyhow::Result<(String, String)> {
        let session: serde_json::Value = self
            .http
            .post(format!("{}/api/v1/visitor/session", self.base))
            .json(&serde_json::json!({"widget_key": self.widget_key}))
            .send()
            .await?
            .json()
            .await?;
        let field = |name: &str| session[name].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {name}"));
        Ok((field("visitor_id")?, field("visitor_token")?))
    }

    /// A counter or gauge from `/metrics` (summed over labels).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        metric_at(&self.http, &self.base, name).await
    }

    /// The whole `/metrics` text, to read several figures ([`metric_in`])
    /// from one request.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        metrics_text_at(&self.http, &self.base).await
    }

    /// Sockets this server turned away as unavailable before welcoming
    /// them: at the hello (admission) and at the welcome (the store).
    pub async fn turned_away(&self) -> anyhow::Result<TurnedAway> {
        let ends = "holdfast_socket_ends_total";
        let unavailable = r#"code="unavailable""#;
        let text = self.metrics_text().await?;
        Ok(TurnedAway {
            chat_lane: metric_in(&text, "holdfast_lane_shed_total", &[r#"lane="chat""#]),
            hellos: metric_in(&text, ends, &[unavailable, r#"reason="hello refused""#]),
            welcomes: metric_in(&text, ends, &[unavailable, r#"reason="welcome failed""#]),
        })
    }

    /// Password hashes the server ran for people (not for the status
    /// page's login probe).
    pub async fn people_hashes(&self) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        Ok(metric_in(&text, "holdfast_password_hashes_total", &[])
            - metric_in(&text, "holdfast_probe_password_hashes_total", &[]))
    }

    pub async fn fault(&self, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let res = self
            .http
            .post(format!("{}/api/v1/ops/faults", self.base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "fault injection refused: {}", res.status());
        Ok(res.json().await?)
    }

    /// The server process's resident memory in MiB (own process only).
    pub fn rss_mb(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// CPU seconds (user + system) the server process has used so far.
    pub fn cpu_s(&self) -> Option<f64> {
        process_cpu_s(self.child.as_ref()?.id())
    }

    /// Hold the server process to `cpus` cores until the share is dropped,
    /// as if it ran on a machine of that size (servers started here only).
    pub fn limit_cpus(&self, cpus: f64) -> anyhow::Result<crate::machine::CpuShare> {
        let pid = self.child.as_ref().context("a server not started here cannot be limited")?.id();
        crate::machine::CpuShare::limit(pid, cpus)
    }
}

/// What a node turned away as unavailable, by where: requests of the
/// chat lane shed by admission (messages, new visitors' sessions), hellos
/// shed by admission, welcomes that failed on the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct TurnedAway {
    pub chat_lane: f64,
    pub hellos: f64,
    pub welcomes: f64,
}

impl std::ops::AddAssign for TurnedAway {
    fn add_assign(&mut self, other: TurnedAway) {
        self.chat_lane += other.chat_lane;
        self.hellos += other.hellos;
        self.welcomes += other.welcomes;
    }
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    stat_cpu_s(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time (s) a `/proc/PID/stat` line records.
pub fn stat_cpu_s(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th of the line, in USER_HZ (100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A counter or gauge from the `/metrics` of the server at `base` (summed
/// over labels), for a task that holds no `Target`.
pub async fn metric_at(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    metric_labelled(http, base, name, &[]).await
}

/// A counter or gauge summed over its series whose labels include each of
/// `labels` (`code="unavailable"`).
pub async fn metric_labelled(http: &reqwest::Client, base: &str, name: &str, labels: &[&str]) -> anyhow::Result<f64> {
    Ok(metric_in(&metrics_text_at(http, base).await?, name, labels))
}

/// The whole `/metrics` text of the server at `base`.
pub async fn metrics_text_at(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http.get(format!("{base}/metrics")).send().await?.text().await?)
}

/// What [`metric_labelled`] reads, from a `/metrics` text already
/// fetched: several figures from one request.
pub fn metric_in(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        // The value follows the last space: a label's value may hold one.
        .filter(|l| labels.iter().all(|label| l.rsplit_once(' ').is_some_and(|(series, _)| series.contains(label))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
