//! A storm worker: one process driving a slice of the clients (the open-file
//! limit is per process, so big rehearsals split their clients over several
//! workers). It speaks JSON lines: a job on the first stdin line, then
//! commands (`send_on`, `send_off`, `report`); on stdout it prints progress
//! events and, last, its report.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::client::{ClientReport, ClientSpec, Controls, Kind, Tally, run_client};
use holdfast_server::store::now_ms;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub kind: Kind,
    pub server: SocketAddr,
    /// Cluster rehearsals: every node. Client `i` starts on node
    /// `(first + i) % len` and fails over to the next ones in turn.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
    /// Loopback source address for this worker's connections.
    pub source: IpAddr,
    /// Agents: indexes into the provisioned agents; visitors: how many.
    pub first: usize,
    pub count: usize,
    pub password: String,
    pub widget_key: String,
    /// Visitors: time between messages.
    pub interval_ms: u64,
    /// Visitors: send the next message as soon as the last is acknowledged
    /// (a relay benchmark) instead of on a timer.
    pub closed_loop: bool,
    /// A soak: count into a [`Tally`] (reported per interval on the
    /// `interval` command) instead of listing every message.
    #[serde(default)]
    pub tally: bool,
}

pub fn agent_email(i: usize) -> String {
    format!("storm-agent-{i}@storm.test")
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

impl Job {
    /// Client `i`'s nodes, its own first.
    fn servers_for(&self, i: usize) -> Vec<SocketAddr> {
        if self.servers.is_empty() {
            return vec![self.server];
        }
        let n = self.servers.len();
        (0..n).map(|k| self.servers[(self.first + i + k) % n]).collect()
    }
}

/// Get a credential for every client over HTTP (each from its own first
/// node), with bounded concurrency.
async fn credentials(job: &Job) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::builder().local_address(job.source).timeout(Duration::from_secs(120)).build()?;
    let tokens = futures_util::stream::iter(0..job.count)
        .map(|i| {
            let http = http.clone();
            let base = format!("http://{}", job.servers_for(i)[0]);
            let job = job.clone();
            async move {
                for attempt in 0..20u32 {
                    let res = match job.kind {
                        Kind::Agent => {
                            http.post(format!("{base}/api/v1/auth/login"))
                                .json(
                                    &serde_json::json!({"email": agent_email(job.first + i), "password": job.password}),
                                )
                                .send()
                                .await
                        }
                        Kind::Visitor => {
                            http.post(format!("{base}/api/v1/visitor/session"))
                                .json(&serde_json::json!({"widget_key": job.widget_key}))
                                .send()
                                .await
                        }
                    };
                    if let Ok(res) = res
                        && res.status().is_success()
                        && let Ok(body) = res.json::<serde_json::Value>().await
                    {
                        let key = if job.kind == Kind::Agent { "access_token" } else { "visitor_token" };
                        if let Some(t) = body[key].as_str() {
                            return Ok(t.to_owned());
                        }
                    }
                    tokio::time::sleep(super::client::backoff(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(3),
                    ))
                    .await;
                }
                Err(anyhow::anyhow!("could not get a credential"))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    tokens.into_iter().collect()
}

use futures_util::StreamExt;

/// The worker process's main.
pub async fn run() -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let job: Job = serde_json::from_str(&lines.next_line().await?.ok_or_else(|| anyhow::anyhow!("no job"))?)?;
    let tokens = credentials(&job).await?;
    emit(serde_json::json!({"event": "credentials", "n": tokens.len(), "at": now_ms()}));
    // Connect only when told, so connects can be timed apart from logins.
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "connect" {
            break;
        }
    }
    let controls = Arc::new(Controls::default());
    let tally = job.tally.then(|| Arc::new(Tally::default()));
    let mut tasks = Vec::with_capacity(tokens.len());
    let mut first_node = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.into_iter().enumerate() {
        let servers = job.servers_for(i);
        first_node.push(servers[0]);
        let spec = ClientSpec {
            kind: job.kind,
            servers,
            source: job.source,
            token,
            interval: Duration::from_millis(job.interval_ms.max(1)),
            closed_loop: job.closed_loop,
            tally: tally.clone(),
        };
        tasks.push(tokio::spawn(run_client(spec, controls.clone())));
        // Pace the initial connects a little; the rehearsal measures
        // reconnect storms, not the first wave.
        if tasks.len() % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Progress: every time the connected count changes, and whenever all are
    // connected again after a drop.
    let progress = {
        let controls = controls.clone();
        let total = job.count;
        tokio::spawn(async move {
            let mut last = usize::MAX;
            loop {
                let n = controls.connected.load(Ordering::Relaxed);
                if n != last {
                    emit(serde_json::json!({"event": "connected", "n": n, "total": total, "at": now_ms()}));
                    last = n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "send_on" => controls.sending.store(true, Ordering::Relaxed),
            "send_off" => controls.sending.store(false, Ordering::Relaxed),
            "interval" => {
                let figures = tally.as_ref().map(|t| t.take_interval()).unwrap_or_default();
                emit(serde_json::json!({"event": "interval", "tally": figures, "at": now_ms()}));
            }
            "report" => break,
            _ => {}
        }
    }
    controls.stop_all();
    progress.abort();
    let mut merged = ClientReport::default();
    let mut connected = 0u64;
    let mut resumed_clients = 0u64;
    // Per first node: (clients, of which resumed and connected at the end).
    let mut by_node: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for (t, node) in tasks.into_iter().zip(first_node) {
        if let Ok(r) = t.await {
            connected += u64::from(r.connected);
            resumed_clients += u64::from(r.resumes > 0 && r.connected);
            let entry = by_node.entry(node.to_string()).or_default();
            entry.0 += 1;
            entry.1 += u64::from(r.resumes > 0 && r.connected);
            merged.acked.extend(r.acked);
            merged.received.extend(r.received);
            merged.duplicated += r.duplicated;
            merged.latencies.extend(r.latencies);
            merged.logouts += r.logouts;
            merged.resumes += r.resumes;
            merged.last_resume_at = merged.last_resume_at.max(r.last_resume_at);
            merged.resume_timings.extend(r.resume_timings);
        }
    }
    let seqs = tally.map(|t| t.seqs());
    emit(serde_json::json!({"event": "report", "connected_at_end": connected, "resumed_clients": resumed_clients,
        "by_first_node": by_node, "report": merged, "seqs": seqs}));
    Ok(())
}
