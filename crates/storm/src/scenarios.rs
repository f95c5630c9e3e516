//! The three rehearsals of May 2018, the loss of a cluster node, and a
//! rolling restart.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::client::{ClientReport, Kind, ResumeTiming, connect_ws};
use super::server::{STORM_PASSWORD, Target};
use super::worker::{Job, agent_email};
use super::{ClusterArgs, Common, finish, percentile};
use crate::rehearsal::{PlanMode, PlanSwitch, serve_plan_service};
use holdfast_server::auth::{HashPool, passwords};
use holdfast_server::store::now_ms;

/// Clients per worker process (well under the 20,000 open-file limit).
pub(crate) const PER_WORKER: usize = 4000;

pub(crate) fn progress(msg: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{msg}");
    } else {
        eprintln!("{msg}");
    }
}

pub(crate) struct Worker {
    stdin: tokio::process::ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    child: tokio::process::Child,
    total: usize,
    connected: usize,
    /// Saw the count fall below total since the last mark.
    dropped: bool,
    report: Option<Value>,
    /// The last answer to `interval` not yet taken (a soak).
    interval: Option<Value>,
    /// All its credentials are obtained (it waits for `connect`).
    pub(crate) ready_to_connect: bool,
}

impl Worker {
    async fn spawn(job: Job, connect_now: bool) -> anyhow::Result<Worker> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("storm-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a storm worker")?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(format!("{}\n", serde_json::to_string(&job)?).as_bytes()).await?;
        if connect_now {
            stdin.write_all(b"connect\n").await?;
        }
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Worker {
            stdin,
            events,
            child,
            total: job.count,
            connected: 0,
            dropped: false,
            report: None,
            interval: None,
            ready_to_connect: false,
        })
    }

    pub(crate) async fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        Ok(self.stdin.flush().await?)
    }

    /// Ask for the figures of the interval that ends now and wait for them.
    pub(crate) async fn interval(&mut self) -> anyhow::Result<Value> {
        self.interval = None;
        self.command("interval").await?;
        let asked = Instant::now();
        loop {
            self.poll();
            if let Some(figures) = self.interval.take() {
                return Ok(figures);
            }
            anyhow::ensure!(asked.elapsed() < Duration::from_secs(30), "a worker did not answer `interval`");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// CPU seconds (user + system) the worker process has used so far.
    pub(crate) fn cpu_s(&self) -> Option<f64> {
        super::server::process_cpu_s(self.child.id()?)
    }

    pub(crate) fn poll(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            match ev["event"].as_str() {
                Some("connected") => {
                    self.connected = ev["n"].as_u64().unwrap_or(0) as usize;
                    if self.connected < self.total {
                        self.dropped = true;
                    }
                }
                Some("report") => self.report = Some(ev),
                Some("interval") => self.interval = Some(ev),
                Some("credentials") => self.ready_to_connect = true,
                _ => {}
            }
        }
    }
}

/// Spawn workers for `count` clients of `kind`, each on its own source address.
/// How a worker's visitors send, and how its clients account for what
/// they see.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pace {
    /// Time between a visitor's messages.
    pub interval_ms: u64,
    /// Send the next message as soon as the last is acknowledged.
    pub closed_loop: bool,
    /// Count per interval (a soak) instead of listing every message.
    pub tally: bool,
}

impl Pace {
    /// A message every `interval_ms` (agents only answer: any value does).
    pub(crate) fn every(interval_ms: u64) -> Pace {
        Pace { interval_ms, ..Pace::default() }
    }
}

pub(crate) async fn spawn_workers(
    target: &Target,
    kind: Kind,
    count: usize,
    next_source: &mut u8,
    pace: Pace,
    connect_now: bool,
) -> anyhow::Result<Vec<Worker>> {
    let mut workers = Vec::new();
    let mut first = 0;
    while first < count {
        let n = PER_WORKER.min(count - first);
        let job = Job {
            kind,
            server: target.addr,
            servers: target.nodes.clone(),
            source: IpAddr::V4(Ipv4Addr::new(127, 0, 0, *next_source)),
            first,
            count: n,
            password: STORM_PASSWORD.into(),
            widget_key: target.widget_key.clone(),
            interval_ms: pace.interval_ms,
            closed_loop: pace.closed_loop,
            tally: pace.tally,
        };
        *next_source = next_source.wrapping_add(1).max(2);
        workers.push(Worker::spawn(job, connect_now).await?);
        first += n;
    }
    Ok(workers)
}

/// Wait until every worker has all its clients connected (after a drop, if
/// `after_drop`), printing progress; gives up after `limit`.
pub(crate) async fn wait_connected(workers: &mut [Worker], what: &str, limit: Duration, after_drop: bool) -> bool {
    let start = Instant::now();
    loop {
        let (mut n, mut total, mut done) = (0, 0, true);
        for w in workers.iter_mut() {
            w.poll();
            n += w.connected;
            total += w.total;
            done &= w.connected == w.total && (!after_drop || w.dropped);
        }
        progress(&format!("{what}: {n}/{total} connected ({:.1} s)", start.elapsed().as_secs_f64()));
        if done {
            eprintln!();
            return true;
        }
        if start.elapsed() > limit {
            eprintln!(" — gave up waiting");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn collect_reports(workers: &mut [Worker]) -> anyhow::Result<Vec<Value>> {
    for w in workers.iter_mut() {
        w.command("report").await?;
    }
    let mut out = Vec::new();
    for w in workers.iter_mut() {
        let start = Instant::now();
        while w.report.is_none() && start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.poll();
        }
        let _ = w.child.wait().await;
        out.push(w.report.take().ok_or_else(|| anyhow!("a worker sent no report"))?);
    }
    Ok(out)
}

pub(crate) fn reports(values: &[Value]) -> Vec<ClientReport> {
    values.iter().filter_map(|v| serde_json::from_value(v["report"].clone()).ok()).collect()
}

/// Agents log in and connect, then visitors connect (each writing every
/// `interval_ms`; agents answer every message), and all start sending.
/// Agents' workers come first in the returned list.
async fn chatting_crowd(
    target: &Target,
    agents: usize,
    visitors: usize,
    interval_ms: u64,
) -> anyhow::Result<Vec<Worker>> {
    let mut source = 2u8;
    let mut agent_workers = spawn_workers(target, Kind::Agent, agents, &mut source, Pace::every(0), true).await?;
    anyhow::ensure!(
        wait_connected(&mut agent_workers, "agents logging in", Duration::from_secs(600), false).await,
        "agents did not all connect"
    );
    let mut visitor_workers =
        spawn_workers(target, Kind::Visitor, visitors, &mut source, Pace::every(interval_ms), true).await?;
    anyhow::ensure!(
        wait_connected(&mut visitor_workers, "visitors connecting", Duration::from_secs(600), false).await,
        "visitors did not all connect"
    );
    let mut all: Vec<Worker> = agent_workers.into_iter().chain(visitor_workers).collect();
    for w in all.iter_mut() {
        w.command("send_on").await?;
        w.dropped = false;
    }
    Ok(all)
}

/// Scenario 1: every socket cut at once; everyone resumes.
pub async fn blip(agents: usize, visitors: usize, common: &Common) -> anyhow::Result<()> {
    anyhow::ensure!(agents > 0 && visitors > 0, "--agents and --visitors must be positive");
    anyhow::ensure!(visitors <= agents * 100, "at most 100 visitors per agent");
    eprintln!("storm blip: {agents} agents, {visitors} visitors");
    let target = Target::start(agents, &[], common).await?;
    // A visitor writes every ~15 s (a brisk live chat); each agent answers
    // every message. 15,000 visitors make ~2,000 messages/s both ways.
    let mut all = chatting_crowd(&target, agents, visitors, 15_000).await?;
    eprintln!("chatting for {} s before the blip", common.phase_s);
    tokio::time::sleep(Duration::from_secs(common.phase_s)).await;

    let hashes_before = target.people_hashes().await?;
    let (server_cpu, machine) = (target.cpu_s(), crate::machine::busy_ticks());
    let cut_at = now_ms();
    let cut = target.fault(json!({"cut_sockets": true})).await?;
    eprintln!("blip: the server cut {} sockets", cut["cut"]);
    let recovered = wait_connected(&mut all, "resuming", Duration::from_secs(120), true).await;
    if let (Some(before), Some(after), Some(m0), Some(m1)) =
        (server_cpu, target.cpu_s(), machine, crate::machine::busy_ticks())
    {
        let secs = (now_ms() - cut_at) as f64 / 1000.0;
        eprintln!(
            "recovery: {secs:.1} s; the server used {:.1} CPU s ({:.2} cores), the whole machine was busy {:.0}%",
            after - before,
            (after - before) / secs,
            100.0 * (m1.0 - m0.0) / (m1.1 - m0.1).max(1e-9),
        );
    }
    eprintln!("chatting for {} s after recovery", common.phase_s);
    tokio::time::sleep(Duration::from_secs(common.phase_s)).await;
    for w in all.iter_mut() {
        w.command("send_off").await?;
    }
    // Let the last messages land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let raw = collect_reports(&mut all).await?;
    let hashes_after = target.people_hashes().await?;
    let n_agent_workers = agents.div_ceil(PER_WORKER);
    let (agent_raw, visitor_raw) = raw.split_at(n_agent_workers);
    let agent_reports = reports(agent_raw);
    let visitor_reports = reports(visitor_raw);

    let resumed: u64 = raw.iter().map(|r| r["resumed_clients"].as_u64().unwrap_or(0)).sum();
    let clients = (agents + visitors) as f64;
    let recovery_at = agent_reports.iter().chain(&visitor_reports).filter_map(|r| r.last_resume_at).max();
    let recovery_s = recovery_at.map_or(f64::NAN, |t| (t - cut_at) as f64 / 1000.0);
    let lost = lost_between(&visitor_reports, &agent_reports) + lost_between(&agent_reports, &visitor_reports);
    let duplicated: u64 = agent_reports.iter().chain(&visitor_reports).map(|r| r.duplicated).sum();
    let logouts: u64 = agent_reports.iter().chain(&visitor_reports).map(|r| r.logouts).sum();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let recovered_at = recovery_at.unwrap_or(i64::MAX);
    // Before: sent and delivered before the cut (a message caught in the
    // blip belongs to neither phase); after: sent once everyone was back.
    for (sent, ms) in agent_reports.iter().chain(&visitor_reports).flat_map(|r| r.latencies.iter()) {
        if (*sent as f64 + ms) < cut_at as f64 {
            before.push(*ms);
        } else if *sent > recovered_at {
            after.push(*ms);
        }
    }
    let messages: usize = agent_reports.iter().chain(&visitor_reports).map(|r| r.acked.len()).sum();
    eprintln!("{messages} messages acknowledged; {} before / {} after samples", before.len(), after.len());
    print_resume_timings(agent_reports.iter().chain(&visitor_reports), cut_at);
    if !recovered {
        eprintln!("warning: not every client resumed within 120 s");
    }
    finish(&[
        ("scenario", "blip".into()),
        ("agents", agents.to_string()),
        ("visitors", visitors.to_string()),
        ("resumed_pct", format!("{:.1}", 100.0 * resumed as f64 / clients)),
        ("recovery_s", format!("{recovery_s:.2}")),
        ("password_hashes", format!("{}", (hashes_after - hashes_before).round())),
        ("logouts", logouts.to_string()),
        ("lost", lost.to_string()),
        ("duplicated", duplicated.to_string()),
        ("p99_before_ms", format!("{:.1}", percentile(&mut before, 99.0))),
        ("p99_after_ms", format!("{:.1}", percentile(&mut after, 99.0))),
    ]);
    Ok(())
}

/// Scenario 4: a cluster of `nodes` loses one to `kill -9` mid-chat; its
/// clients move to the others with their credentials and cursors.
pub async fn node_loss(nodes: usize, args: &ClusterArgs) -> anyhow::Result<()> {
    on_a_cluster("node-loss", nodes, args, |cluster| node_loss_on(cluster, args)).await
}

/// Start `nodes` nodes on a fresh database (dropped afterwards) with the
/// scenario's agents provisioned, and run `body` on them.
async fn on_a_cluster<F, Fut>(scenario: &str, nodes: usize, args: &ClusterArgs, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Vec<Target>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (agents, visitors) = (args.agents, args.visitors);
    anyhow::ensure!(agents >= nodes && visitors >= nodes, "at least one agent and one visitor per node");
    anyhow::ensure!(visitors <= agents * 100, "at most 100 visitors per agent");
    eprintln!("storm {scenario}: {nodes} nodes, {agents} agents, {visitors} visitors");
    super::server::with_cluster(&args.database_url, &args.nats_url, nodes, agents, args.keep_database, body).await
}

async fn node_loss_on(mut cluster: Vec<Target>, args: &ClusterArgs) -> anyhow::Result<()> {
    let (agents, visitors, phase_s) = (args.agents, args.visitors, args.phase_s);
    let nodes = cluster.len();
    eprintln!("nodes: {}", cluster.iter().map(|t| t.base.as_str()).collect::<Vec<_>>().join(" "));
    let mut all = chatting_crowd(&cluster[0], agents, visitors, args.message_every_ms).await?;
    eprintln!("chatting for {phase_s} s before the node is lost");
    tokio::time::sleep(Duration::from_secs(phase_s)).await;

    let mut survivors = cluster.split_off(1);
    let mut doomed = cluster.pop().ok_or_else(|| anyhow!("no node to kill"))?;
    let mut hashes_before = 0.0;
    for t in &survivors {
        hashes_before += t.people_hashes().await?;
    }
    let killed_at = now_ms();
    doomed.kill9()?;
    eprintln!("kill -9 of {} ({} nodes left)", doomed.base, survivors.len());
    // Every worker has clients on every node, so every worker sees a drop.
    let recovered = wait_connected(&mut all, "moving to the surviving nodes", Duration::from_secs(120), true).await;
    eprintln!("chatting for {phase_s} s after recovery");
    tokio::time::sleep(Duration::from_secs(phase_s)).await;
    for w in all.iter_mut() {
        w.command("send_off").await?;
    }
    // Deliveries right after a node loss can take seconds on a busy
    // machine: late is not lost, so wait before counting.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let raw = collect_reports(&mut all).await?;
    let (mut hashes_after, mut away) = (0.0, crate::server::TurnedAway::default());
    for t in &mut survivors {
        hashes_after += t.people_hashes().await?;
        away += t.turned_away().await?;
    }
    // Why a client's resume took more than one try: the survivors said
    // they were unavailable.
    eprintln!(
        "survivors turned away as unavailable: {} chat-lane requests, {} hellos, {} welcomes",
        away.chat_lane, away.hellos, away.welcomes
    );
    let n_agent_workers = agents.div_ceil(PER_WORKER);
    let (agent_raw, visitor_raw) = raw.split_at(n_agent_workers);
    let agent_reports = reports(agent_raw);
    let visitor_reports = reports(visitor_raw);

    // Resumed: of the clients that started on the lost node, those that
    // resumed elsewhere and were connected at the end.
    let lost_node = doomed.addr.to_string();
    let (mut moved, mut resumed) = (0u64, 0u64);
    for r in &raw {
        if let Some((n, ok)) = r["by_first_node"].get(&lost_node).and_then(|v| Some((v[0].as_u64()?, v[1].as_u64()?))) {
            moved += n;
            resumed += ok;
        }
    }
    let recovery_at = agent_reports.iter().chain(&visitor_reports).filter_map(|r| r.last_resume_at).max();
    let recovery_s = recovery_at.map_or(f64::NAN, |t| (t - killed_at) as f64 / 1000.0);
    let lost = lost_between(&visitor_reports, &agent_reports) + lost_between(&agent_reports, &visitor_reports);
    let duplicated: u64 = agent_reports.iter().chain(&visitor_reports).map(|r| r.duplicated).sum();
    let logouts: u64 = agent_reports.iter().chain(&visitor_reports).map(|r| r.logouts).sum();
    let messages: usize = agent_reports.iter().chain(&visitor_reports).map(|r| r.acked.len()).sum();
    eprintln!("{messages} messages acknowledged; {moved} clients had started on the lost node");
    print_resume_timings(agent_reports.iter().chain(&visitor_reports), killed_at);
    if !recovered {
        eprintln!("warning: not every client was back within 120 s");
    }
    drop(survivors);
    finish(&[
        ("scenario", "node-loss".into()),
        ("nodes", nodes.to_string()),
        ("agents", agents.to_string()),
        ("visitors", visitors.to_string()),
        ("resumed_pct", format!("{:.1}", 100.0 * resumed as f64 / (moved.max(1)) as f64)),
        ("recovery_s", format!("{recovery_s:.2}")),
        ("password_hashes", format!("{}", (hashes_after - hashes_before).round())),
        ("logouts", logouts.to_string()),
        ("lost", lost.to_string()),
        ("duplicated", duplicated.to_string()),
    ]);
    Ok(())
}

/// Scenario 5: a release rolled over a cluster. While agents and visitors
/// chat, each node in turn is drained (SIGTERM: it tells its sockets to
/// reconnect after a jittered delay of at most `DRAIN_SPREAD`) and started
/// again on the same address. Nobody may have to log in again.
pub async fn rolling_restart(nodes: usize, args: &ClusterArgs) -> anyhow::Result<()> {
    on_a_cluster("rolling-restart", nodes, args, |cluster| rolling_restart_on(cluster, args)).await
}

/// Counters of what nodes do to keep sockets whole: envelopes the bus
/// could not send or missed, sockets kicked as too slow, gaps read from
/// the store, re-reads of whole sockets.
pub const DIAGNOSTICS: [&str; 5] = [
    "holdfast_bus_dropped_total",
    "holdfast_bus_missed_total",
    "holdfast_slow_consumers_total",
    "holdfast_socket_gap_fills_total",
    "holdfast_socket_resyncs_total",
];

pub async fn diagnostics(t: &Target) -> anyhow::Result<[f64; DIAGNOSTICS.len()]> {
    Ok(diagnostics_in(&t.metrics_text().await?))
}

/// The same, from a `/metrics` text already read.
pub fn diagnostics_in(metrics: &str) -> [f64; DIAGNOSTICS.len()] {
    DIAGNOSTICS.map(|name| crate::server::metric_in(metrics, name, &[]))
}

/// The longest a drained node asks its sockets to wait before they
/// reconnect (`chat::session`, `KickReason::Drain`).
const DRAIN_SPREAD: Duration = Duration::from_secs(5);

async fn rolling_restart_on(mut cluster: Vec<Target>, args: &ClusterArgs) -> anyhow::Result<()> {
    let (agents, visitors, phase_s) = (args.agents, args.visitors, args.phase_s);
    let nodes = cluster.len();
    eprintln!("nodes: {}", cluster.iter().map(|t| t.base.as_str()).collect::<Vec<_>>().join(" "));
    // Every worker has clients starting on every node (client i starts on
    // node i mod n), so every drain drops some clients of every worker.
    let mut all = chatting_crowd(&cluster[0], agents, visitors, args.message_every_ms).await?;
    eprintln!("chatting for {phase_s} s before the roll");
    tokio::time::sleep(Duration::from_secs(phase_s)).await;

    // Hashes are counted per node life: a restarted node starts from zero,
    // so a node's count is banked just before it is drained.
    let mut hashes_before = 0.0;
    for t in &cluster {
        hashes_before += t.people_hashes().await?;
    }
    let mut banked = 0.0;
    // What the nodes did to keep every socket whole, banked per node life
    // like the hashes: for the diagnosis when something is lost.
    let mut banked_counts = [0.0; DIAGNOSTICS.len()];
    let (mut worst_back, mut worst_drain, mut all_back) = (Duration::ZERO, Duration::ZERO, true);
    for node in cluster.iter_mut() {
        banked += node.people_hashes().await?;
        for (sum, value) in banked_counts.iter_mut().zip(diagnostics(node).await?) {
            *sum += value;
        }
        for w in all.iter_mut() {
            w.poll();
            w.dropped = false;
        }
        let started = Instant::now();
        let drained = node.restart_drained().await?;
        eprintln!("{} drained in {:.2} s and started again", node.base, drained.as_secs_f64());
        let back = wait_connected(&mut all, "reconnecting", Duration::from_secs(120), true).await;
        let took = started.elapsed();
        eprintln!("every client back {:.2} s after the SIGTERM", took.as_secs_f64());
        all_back &= back;
        worst_back = worst_back.max(took);
        worst_drain = worst_drain.max(drained);
        tokio::time::sleep(Duration::from_secs(phase_s)).await;
    }
    for w in all.iter_mut() {
        w.command("send_off").await?;
    }
    // As after a node loss: late is not lost, so wait before counting.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let raw = collect_reports(&mut all).await?;
    let (mut hashes_after, mut counts) = (banked, banked_counts);
    for t in &cluster {
        hashes_after += t.people_hashes().await?;
        for (sum, value) in counts.iter_mut().zip(diagnostics(t).await?) {
            *sum += value;
        }
    }
    let counts: Vec<String> = DIAGNOSTICS.iter().zip(counts).map(|(name, n)| format!("{name} {n}")).collect();
    eprintln!("over all nodes: {}", counts.join(", "));
    let n_agent_workers = agents.div_ceil(PER_WORKER);
    let (agent_raw, visitor_raw) = raw.split_at(n_agent_workers);
    let (agent_reports, visitor_reports) = (reports(agent_raw), reports(visitor_raw));
    let everyone = || agent_reports.iter().chain(&visitor_reports);
    let (to_agents, to_visitors) =
        (lost_between(&visitor_reports, &agent_reports), lost_between(&agent_reports, &visitor_reports));
    let lost = to_agents + to_visitors;
    let duplicated: u64 = everyone().map(|r| r.duplicated).sum();
    let logouts: u64 = everyone().map(|r| r.logouts).sum();
    let messages: usize = everyone().map(|r| r.acked.len()).sum();
    let resumes: u64 = everyone().map(|r| r.resumes).sum();
    eprintln!(
        "{messages} messages acknowledged; {resumes} resumes; lost {to_agents} to agents, {to_visitors} to visitors"
    );
    if lost > 0 {
        let got: HashSet<(&str, i64)> =
            everyone().flat_map(|r| r.received.iter().map(|(c, s)| (c.as_str(), *s))).collect();
        let missing: Vec<_> =
            everyone().flat_map(|r| r.acked.iter()).filter(|(c, s)| !got.contains(&(c.as_str(), *s))).take(5).collect();
        eprintln!("some acknowledged but never received (conversation, seq): {missing:?}");
    }
    if !all_back {
        eprintln!("warning: not every client was back within 120 s of a drain");
    }
    let within = all_back && worst_back <= DRAIN_SPREAD + Duration::from_secs(5);
    finish(&[
        ("scenario", "rolling-restart".into()),
        ("nodes", nodes.to_string()),
        ("agents", agents.to_string()),
        ("visitors", visitors.to_string()),
        ("worst_drain_s", format!("{:.2}", worst_drain.as_secs_f64())),
        ("worst_back_s", format!("{:.2}", worst_back.as_secs_f64())),
        ("back_within_drain_plus_5s", within.to_string()),
        ("password_hashes", format!("{}", (hashes_after - hashes_before).round())),
        ("logouts", logouts.to_string()),
        ("lost", lost.to_string()),
        ("duplicated", duplicated.to_string()),
    ]);
    Ok(())
}

/// What the resumes cost the clients: time from the drop to the welcome,
/// time of the attempt that got it, and attempts (refusals and timeouts
/// before it). Diagnostics for the table, not part of the final line.
fn print_resume_timings<'a>(reports: impl Iterator<Item = &'a ClientReport>, cut_at: i64) {
    let timings: Vec<ResumeTiming> = reports.flat_map(|r| r.resume_timings.iter().copied()).collect();
    if timings.is_empty() {
        return;
    }
    let mut seen: Vec<f64> = timings.iter().map(|t| (t.dropped_at - cut_at) as f64).collect();
    let mut total: Vec<f64> = timings.iter().map(|t| t.to_welcome_ms).collect();
    let mut last: Vec<f64> = timings.iter().map(|t| t.attempt_ms).collect();
    let retried = timings.iter().filter(|t| t.attempts > 1).count();
    // The slowest hundredth: what their failed attempts were.
    let mut slow = timings.clone();
    slow.sort_by(|a, b| b.to_welcome_ms.total_cmp(&a.to_welcome_ms));
    slow.truncate(timings.len().div_ceil(100));
    let sum = |f: fn(&ResumeTiming) -> u32| slow.iter().map(f).sum::<u32>();
    let most = timings.iter().map(|t| t.attempts).max().unwrap_or(0);
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "resumes: drop seen after the cut p50 {:.0} ms, max {:.0} ms; drop to welcome p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms; last attempt p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {retried} took more than one attempt \
         (at most {most}); the slowest {} (from {:.0} ms) failed {} connects, {} welcomes as unavailable, {} \
         sockets closed before a welcome",
        percentile(&mut seen, 50.0),
        max(&seen),
        percentile(&mut total, 50.0),
        percentile(&mut total, 99.0),
        max(&total),
        percentile(&mut last, 50.0),
        percentile(&mut last, 99.0),
        max(&last),
        slow.len(),
        slow.last().map_or(0.0, |t| t.to_welcome_ms),
        sum(|t| t.failed.connect),
        sum(|t| t.failed.unavailable),
        sum(|t| t.failed.dropped),
    );
}

/// Messages `senders` had acknowledged that no receiver ever got.
pub(crate) fn lost_between(senders: &[ClientReport], receivers: &[ClientReport]) -> usize {
    let got: HashSet<(&str, i64)> =
        receivers.iter().flat_map(|r| r.received.iter().map(|(c, s)| (c.as_str(), *s))).collect();
    senders.iter().flat_map(|r| r.acked.iter()).filter(|(c, s)| !got.contains(&(c.as_str(), *s))).count()
}

/// A stand-in plan service on a loopback port, and its switch.
async fn plan_stub(mode: PlanMode) -> anyhow::Result<(String, PlanSwitch)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/banners", listener.local_addr()?);
    let switch = PlanSwitch::default();
    switch.set(mode);
    tokio::spawn(serve_plan_service(listener, switch.clone()));
    Ok((url, switch))
}

/// Scenario 2: K agents log in at once while the dashboard lane is flooded
/// and the plan service hangs.
pub async fn login_flood(agents: usize, overload: usize, common: &Common) -> anyhow::Result<()> {
    anyhow::ensure!(agents > 0, "--agents must be positive");
    eprintln!("storm login-flood: {agents} agents, dashboard at {overload}x capacity, plan service hanging");
    let (plan_url, _switch) = plan_stub(PlanMode::Hang).await?;
    let target = Target::start(agents, &["--plan-url", &plan_url, "--plan-interval", "1"], common).await?;

    // What the hash pool alone needs for K hashes, on this machine, now.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = Arc::new(HashPool::new(threads, agents * 2, Duration::from_secs(600)));
    let hash = passwords::hash_now(STORM_PASSWORD).map_err(|e| anyhow!("{e}"))?;
    let started = Instant::now();
    let verifications: Vec<_> = (0..agents)
        .map(|_| {
            let (pool, hash) = (pool.clone(), hash.clone());
            tokio::spawn(async move { pool.verify(STORM_PASSWORD, &hash).await })
        })
        .collect();
    for v in verifications {
        let _ = v.await;
    }
    let hash_pool_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(pool);
    eprintln!("hash pool alone: {agents} hashes in {hash_pool_ms:.0} ms");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Dashboard flood: overload × the lane's concurrency, looping. It runs
    // on a runtime of its own, and the liveness probe on another, so the
    // flood's clients queueing in this process are not counted as the
    // server's latency.
    let dashboard_clients = overload * holdfast_server::admission::AdmissionConfig::default().dashboard.concurrency;
    let flood = {
        let (stop, base, token) = (stop.clone(), target.base.clone(), target.admin_token.clone());
        on_own_runtime("dashboard-flood", 1, async move {
            let http =
                reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build()?;
            let clients: Vec<_> = (0..dashboard_clients)
                .map(|i| {
                    let (http, stop, base, token) = (http.clone(), stop.clone(), base.clone(), token.clone());
                    tokio::spawn(async move {
                        let path = if i % 2 == 0 { "/api/v1/search?q=storm" } else { "/api/v1/banners" };
                        let mut n = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let _ = http.get(format!("{base}{path}")).bearer_auth(&token).send().await;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut sent = 0;
            for c in clients {
                sent += c.await.unwrap_or(0);
            }
            Ok(sent)
        })
    };
    // Liveness probe every 20 ms throughout.
    let livez = {
        let (stop, base) = (stop.clone(), target.base.clone());
        on_own_runtime("livez-probe", 1, async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
            let mut lat = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                if http.get(format!("{base}/livez")).send().await.is_ok() {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(lat)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("dashboard flooded by {dashboard_clients} clients; {agents} agents log in now");
    let login_http =
        reqwest::Client::builder().timeout(Duration::from_secs(120)).pool_max_idle_per_host(agents).build()?;
    let logins: Vec<_> = (0..agents)
        .map(|i| {
            let (http, base) = (login_http.clone(), target.base.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                for _ in 0..10 {
                    let res = http
                        .post(format!("{base}/api/v1/auth/login"))
                        .json(&json!({"email": agent_email(i), "password": STORM_PASSWORD}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => return Some(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(r) => {
                            let wait = r
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                .unwrap_or(1);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                None
            })
        })
        .collect();
    let mut login_ms = Vec::new();
    for l in logins {
        if let Ok(Some(ms)) = l.await {
            login_ms.push(ms);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let dashboard_requests = flood.await??;
    let mut livez_ms = livez.await??;
    let shed = target.metric("holdfast_lane_shed_total{lane=\"dashboard\"}").await?;
    eprintln!("{dashboard_requests} dashboard requests sent; {} livez probes", livez_ms.len());
    let ok = login_ms.len();
    finish(&[
        ("scenario", "login-flood".into()),
        ("agents", agents.to_string()),
        ("overload", overload.to_string()),
        ("login_success_pct", format!("{:.1}", 100.0 * ok as f64 / agents as f64)),
        ("login_p50_ms", format!("{:.1}", percentile(&mut login_ms, 50.0))),
        ("login_p99_ms", format!("{:.1}", percentile(&mut login_ms, 99.0))),
        ("hash_pool_ms", format!("{hash_pool_ms:.1}")),
        ("livez_p99_ms", format!("{:.1}", percentile(&mut livez_ms, 99.0))),
        ("shed_dashboard", format!("{shed}")),
    ]);
    Ok(())
}

/// Run `work` on a runtime of `threads` workers in threads of its own, so
/// load it generates does not queue behind (or delay) this process's other
/// clients.
pub(crate) fn on_own_runtime<T: Send + 'static>(
    name: &str,
    threads: usize,
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<anyhow::Result<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).thread_name(name).enable_all().build();
        let _ = tx.send(match runtime {
            Ok(rt) => rt.block_on(work),
            Err(e) => Err(e.into()),
        });
    });
    rx
}

/// One agent and one visitor in a conversation, for timing messages.
pub(crate) struct Pair {
    agent: super::client::Ws,
    visitor: super::client::Ws,
    conv: Option<String>,
    n: u64,
    /// When the agent last spoke: it only listens, and a socket silent for
    /// the server's idle timeout (75 s) is closed, so it pings as a console does.
    agent_spoke: Instant,
}

/// How often the timing pair's agent pings.
const PAIR_PING_EVERY: Duration = Duration::from_secs(20);

pub(crate) async fn next_json(ws: &mut super::client::Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("socket closed"),
        }
    }
}

impl Pair {
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Pair> {
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let access = target.login(&agent_email(0), STORM_PASSWORD).await?;
        let mut agent = connect_ws(target.addr, source, "/api/v1/agent/socket").await?;
        agent.send(Message::Text(json!({"type": "hello", "v": 1, "token": access}).to_string().into())).await?;
        agent
            .send(Message::Text(json!({"type": "set_availability", "availability": "online"}).to_string().into()))
            .await?;
        let (_, token) = target.visitor_session().await?;
        let mut visitor = connect_ws(target.addr, source, "/api/v1/visitor/socket").await?;
        visitor.send(Message::Text(json!({"type": "hello", "v": 1, "token": token}).to_string().into())).await?;
        Ok(Pair { agent, visitor, conv: None, n: 0, agent_spoke: Instant::now() })
    }

    /// Visitor → agent: milliseconds until the agent has the message.
    pub(crate) async fn round(&mut self) -> anyhow::Result<f64> {
        if self.agent_spoke.elapsed() >= PAIR_PING_EVERY {
            self.agent.send(Message::Text(json!({"type": "ping"}).to_string().into())).await?;
            self.agent_spoke = Instant::now();
        }
        self.n += 1;
        let client_id = format!("side-{}", self.n);
        let mut frame = json!({"type": "send", "client_id": client_id, "body": "how is my order?"});
        if let Some(c) = &self.conv {
            frame["conv"] = json!(c);
        }
        let t = Instant::now();
        self.visitor.send(Message::Text(frame.to_string().into())).await?;
        // The visitor's ack is read too: unread acks would pile up until the
        // server disconnects the visitor as a slow consumer.
        let acked = async {
            loop {
                let f = next_json(&mut self.visitor).await?;
                match f["type"].as_str() {
                    Some("ack") if f["client_id"] == client_id.as_str() => return anyhow::Ok(()),
                    Some("error") => anyhow::bail!("the visitor's message was refused: {f}"),
                    _ => {}
                }
            }
        };
        let delivered = async {
            loop {
                let f = next_json(&mut self.agent).await?;
                if f["type"] == "message" && f["client_id"] == client_id.as_str() {
                    return anyhow::Ok((t.elapsed().as_secs_f64() * 1000.0, f["conv"].as_str().map(str::to_owned)));
                }
            }
        };
        let ((), (ms, conv)) = tokio::try_join!(acked, delivered)?;
        self.conv = conv;
        Ok(ms)
    }
}

/// Scenario 3: the plan service answers, hangs, fails and recovers.
pub async fn side_service(common: &Common) -> anyhow::Result<()> {
    // Each login uses a fresh account, so the per-account rate limit (a
    // burst of 10, then one per 6 s) never enters the figures.
    // 200 logins and about 4,000 messages per 10 s phase: each p99 rests on
    // a few samples (logins) and some forty (messages), not on the single
    // worst one.
    const LOGINS_PER_PHASE: usize = 200;
    const LOGIN_AGENTS: usize = 1 + 4 * LOGINS_PER_PHASE;
    const ROUNDS_PER_LOGIN: usize = 10;
    eprintln!("storm side-service: plan service ok → hang → 500s → recovered");
    let (plan_url, switch) = plan_stub(PlanMode::Ok).await?;
    let target = Target::start(LOGIN_AGENTS, &["--plan-url", &plan_url, "--plan-interval", "1"], common).await?;
    let mut pair = Pair::open(&target).await?;
    pair.round().await?; // starts and routes the conversation
    let phases =
        [("baseline", PlanMode::Ok), ("hang", PlanMode::Hang), ("fail", PlanMode::Fail), ("recovered", PlanMode::Ok)];
    let phase_len = Duration::from_secs(common.phase_s.max(3) * 2);
    let mut results = Vec::new();
    let mut next_agent = 1;
    for (name, mode) in phases {
        switch.set(mode);
        let started = Instant::now();
        // Logins and messages take turns, so a message never waits behind a
        // hash of the same run and each figure measures only its own path.
        let (mut logins, mut messages) = (Vec::new(), Vec::new());
        while started.elapsed() < phase_len {
            if logins.len() < LOGINS_PER_PHASE {
                let t = Instant::now();
                target.login(&agent_email(next_agent), STORM_PASSWORD).await?;
                logins.push(t.elapsed().as_secs_f64() * 1000.0);
                next_agent += 1;
            }
            for _ in 0..ROUNDS_PER_LOGIN {
                messages.push(pair.round().await?);
            }
        }
        let health: Value = target.http.get(format!("{}/readyz", target.base)).send().await?.json().await?;
        let row = (
            name,
            percentile(&mut logins, 99.0),
            percentile(&mut messages, 99.0),
            health["checks"]["plan"]["status"].as_str().unwrap_or("?").to_owned(),
            health["ready"].as_bool().unwrap_or(false),
        );
        eprintln!(
            "  {:<10} login p99 {:>7.1} ms  message p99 {:>6.1} ms  plan {:<9} ready {}",
            row.0, row.1, row.2, row.3, row.4
        );
        results.push(row);
    }
    let base = &results[0];
    let worst_login = results[1..].iter().map(|r| r.1).fold(0.0, f64::max);
    let worst_message = results[1..].iter().map(|r| r.2).fold(0.0, f64::max);
    let opened = target.metric("holdfast_breaker_opened_total").await?;
    let always_ready = results.iter().all(|r| r.4);
    finish(&[
        ("scenario", "side-service".into()),
        ("login_p99_ratio", format!("{:.2}", worst_login / base.1.max(0.001))),
        ("message_p99_ratio", format!("{:.2}", worst_message / base.2.max(0.001))),
        ("breaker_opened", format!("{opened}")),
        ("always_ready", always_ready.to_string()),
    ]);
    Ok(())
}
