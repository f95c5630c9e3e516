//! `holdfast bench`: speed and memory, measured over the real protocol
//! against a server in its own process (figures are the server's own:
//! its RSS comes from `/proc/<pid>/status`). See `docs/benchmarks.md`.
//!
//! - `bench relay`: visitor–agent pairs exchange messages as fast as
//!   acknowledgements allow (or at a fixed offered `--rate`); every message
//!   is persisted before it is acknowledged. A message counts when its
//!   recipient has it; latency is send to receipt.
//! - `bench idle`: visitor sockets connect and sit idle; memory per socket.
//! - `bench soak` (`soak.rs`): the relay for minutes, a row per interval.
//! - `bench first-send` (`first_send.rs`): the first message into a long
//!   conversation after a restart, and retries across `kill -9`.
//! - `bench uploads` (`uploads.rs`): many file uploads at once; the
//!   server's RSS growth.
//! - `bench reports` (`reports.rs`): 30-day reports on a year of history,
//!   and message latency with and without reports being built.
//! - `bench retention` (`retention.rs`): the retention job erasing a big
//!   history, and message latency before and while it erases.

mod first_send;
mod pgbench;
pub mod reports;
mod retention;
mod soak;
mod uploads;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::client::Kind;
use crate::scenarios::{
    DIAGNOSTICS, Pace, Worker, collect_reports, diagnostics_in, lost_between, progress, reports, spawn_workers,
    wait_connected,
};
use crate::server::Target;
use crate::{Common, finish, percentile};
use holdfast_server::store::now_ms;

/// The relay that runs beside the work a benchmark measures (`bench
/// reports`, `bench retention`): its message latency without and with
/// that work, in turns of the same run, so that what drifts over a run
/// (the machine, a checkpoint of the history) weighs on both alike.
#[derive(Args, Debug, Clone)]
pub struct BesideRelay {
    /// Relay pairs chatting while message latency is measured.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Seconds of the relay without the work, and as many with it: the
    /// relay runs twice this long.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Messages per second the relay offers.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Length of a turn of the relay: without the work, then with it, and
    /// so on.
    #[arg(long, default_value_t = 2_000)]
    pub turn_ms: u64,
    /// Write every relayed message (`message,SENT_UNIX_MS,LATENCY_MS`) and
    /// every span of the work beside it (`report` or `erasing`,
    /// `START_UNIX_MS,END_UNIX_MS`) to this CSV file, to see where the slow
    /// messages fall.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<std::path::PathBuf>,
}

impl BesideRelay {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.pairs > 0 && self.seconds > 0 && self.rate > 0 && self.turn_ms > 0,
            "--pairs, --seconds, --rate and --turn-ms must be positive"
        );
        Ok(())
    }

    /// Write `--dump`, if asked: the relay's messages (sent at, latency)
    /// and the `spans` of the work, each named `what`.
    fn dump(&self, samples: &[(i64, f64)], what: &str, spans: &[(i64, i64)]) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let Some(path) = &self.dump else { return Ok(()) };
        let mut csv = String::from("what,at_unix_ms,value\n");
        for (sent, latency) in samples {
            let _ = writeln!(csv, "message,{sent},{latency:.3}");
        }
        for (start, end) in spans {
            let _ = writeln!(csv, "{what},{start},{end}");
        }
        std::fs::write(path, csv).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// The relay's messages (sent at, latency) split into those sent
    /// outside every busy span and those sent within one.
    fn split(samples: &[(i64, f64)], busy_spans: &[(i64, i64)]) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (quiet, busy) = Self::partition(samples, busy_spans);
        anyhow::ensure!(!quiet.is_empty() && !busy.is_empty(), "no messages in a turn of the relay");
        Ok((quiet, busy))
    }

    /// The latencies of the messages sent outside every span of `spans`,
    /// and of those sent within one.
    fn partition(samples: &[(i64, f64)], spans: &[(i64, i64)]) -> (Vec<f64>, Vec<f64>) {
        let (mut outside, mut within) = (Vec::new(), Vec::new());
        for (sent, latency) in samples {
            let side =
                if spans.iter().any(|(start, end)| (*start..*end).contains(sent)) { &mut within } else { &mut outside };
            side.push(*latency);
        }
        (outside, within)
    }
}

/// Sleep through a turn without the work, from `quiet_from` (Unix ms),
/// and give the turn with it that follows: `(start, end)`. A turn with
/// the work lasts until the work stops, which may be past its end (a
/// report answered slowly, a batch finishing); the quiet turn after it
/// starts from there, so that an overrun does not eat the other side.
async fn sleep_through_quiet_turn(quiet_from: i64, turn_ms: i64) -> (i64, i64) {
    let start = quiet_from + turn_ms;
    sleep_until_ms(start).await;
    (start, start + turn_ms)
}

/// Sleep until the Unix time `at` (ms): a turn's end.
async fn sleep_until_ms(at: i64) {
    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)).await;
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Message relay throughput and latency.
    Relay {
        #[arg(long, default_value_t = 500)]
        pairs: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Offered rate in messages per second (both directions together);
        /// without it, as fast as acknowledgements allow.
        #[arg(long)]
        rate: Option<u64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The relay held for minutes, with a row per interval (rate, latency,
    /// server memory and CPU, lost and doubled messages, log warnings,
    /// status checks) and the last interval against the first.
    Soak {
        #[arg(long, default_value_t = 200)]
        pairs: usize,
        /// Length of the run (whole intervals).
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Length of one row.
        #[arg(long, default_value_t = 60)]
        interval_s: u64,
        /// Offered rate in messages per second; without it, as fast as
        /// acknowledgements allow.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// The first send into a conversation of `--messages` after a restart,
    /// and retries within and beyond the idempotency window and across
    /// `kill -9`.
    FirstSend {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
    /// The relay on one node and then on two (PostgreSQL + NATS), same run,
    /// beside pgbench's one transaction per message, and two nodes' p99 at
    /// half their peak rate.
    RelayCluster {
        #[arg(long, default_value_t = 200)]
        pairs: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// PostgreSQL server to create each run's database on (dropped at
        /// the end); the URL's own database is only connected to.
        #[arg(long, env = "HOLDFAST_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, env = "HOLDFAST_NATS_URL")]
        nats_url: String,
        /// Hold each node to this many cores (a cgroup's CPU quota; root,
        /// cgroup v1), as if each ran on a machine of its own: a second
        /// node then brings cores, as in a real cluster. Unset, the nodes
        /// share the machine with the database, NATS and the clients.
        #[arg(long, value_name = "CORES")]
        node_cpus: Option<f64>,
    },
    /// Time from process start to a ready `/readyz` on an existing data dir.
    Startup {
        /// Starts to measure (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Server memory while many visitors upload a file at once.
    Uploads {
        #[arg(long, default_value_t = 50)]
        uploads: usize,
        /// Size of each file, in MiB.
        #[arg(long, default_value_t = 10)]
        mb: usize,
    },
    /// 30-day reports on a big history written straight into a fresh
    /// store, and message latency without and with reports in a loop.
    Reports(reports::Plan),
    /// The retention job erasing a big history while the relay runs.
    Retention(retention::Plan),
    /// Memory per idle visitor socket.
    Idle {
        #[arg(long, default_value_t = 15000)]
        sockets: usize,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Use a running Holdfast (provisioned with `holdfast storm provision`).
    #[arg(long)]
    pub target: Option<String>,
    /// The provisioned site's widget key (`--target` only).
    #[arg(long)]
    pub widget_key: Option<String>,
}

impl TargetArgs {
    fn common(&self) -> Common {
        Common {
            target: self.target.clone(),
            admin_email: "storm-admin@storm.test".into(),
            admin_password: crate::server::STORM_PASSWORD.into(),
            widget_key: self.widget_key.clone(),
            phase_s: 0,
        }
    }
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Relay { pairs, seconds, rate, target } => relay(pairs, seconds, rate, &target.common()).await,
        BenchCommand::RelayCluster { pairs, seconds, database_url, nats_url, node_cpus } => {
            relay_cluster(pairs, seconds, &database_url, &nats_url, node_cpus).await
        }
        BenchCommand::Soak { pairs, seconds, interval_s, rate } => soak::soak(pairs, seconds, interval_s, rate).await,
        BenchCommand::FirstSend { messages } => first_send::first_send(messages).await,
        BenchCommand::Idle { sockets, target } => idle(sockets, &target.common()).await,
        BenchCommand::Startup { runs } => startup(runs).await,
        BenchCommand::Uploads { uploads, mb } => uploads::uploads(uploads, mb).await,
        BenchCommand::Reports(plan) => reports::reports(plan).await,
        BenchCommand::Retention(plan) => retention::retention(plan).await,
    }
}

async fn relay(pairs: usize, seconds: u64, rate: Option<u64>, common: &Common) -> anyhow::Result<()> {
    anyhow::ensure!(pairs > 0 && seconds > 0, "--pairs and --seconds must be positive");
    eprintln!(
        "bench relay: {pairs} pairs ({pairs} agents), {seconds} s, rate {}",
        rate.map_or("max".into(), |r| r.to_string())
    );
    let target = Target::start(pairs, &[], common).await?;
    let f = measure_relay(std::slice::from_ref(&target), pairs, seconds, rate, None).await?;
    let mut rows =
        vec![("scenario", "relay".to_owned()), ("pairs", pairs.to_string()), ("seconds", seconds.to_string())];
    if let Some(r) = rate {
        rows.push(("rate", r.to_string()));
    }
    rows.extend([
        ("msgs_per_s", format!("{:.0}", f.msgs_per_s)),
        ("p50_ms", format!("{:.2}", f.p50_ms)),
        ("p99_ms", format!("{:.2}", f.p99_ms)),
        ("server_rss_mb", format!("{:.1}", f.rss_mb)),
        // Server CPU per delivered message: a figure the other processes
        // sharing the cores disturb far less than the rate.
        ("server_cpu_us_per_msg", optional(f.cpu_us_per_msg, 0)),
        ("client_cpu_us_per_msg", optional(f.client_cpu_us_per_msg, 0)),
        ("lost", f.lost.to_string()),
        ("duplicated", f.duplicated.to_string()),
    ]);
    finish(&rows);
    Ok(())
}

/// One relay measurement's figures (servers summed over the nodes).
struct RelayFigures {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    cpu_us_per_msg: Option<f64>,
    /// The same for the load clients' processes together.
    client_cpu_us_per_msg: Option<f64>,
    /// The whole machine's busy share of its CPU time (percent), and its
    /// busy CPU time per message delivered (µs): every process, the
    /// database, NATS and the clients with the servers.
    machine_busy_pct: Option<f64>,
    machine_cpu_us_per_msg: Option<f64>,
    /// The CPU per message delivered of the processes beside the servers
    /// and clients, by command (`SIDE_COMMANDS`): PostgreSQL's, NATS's.
    side_cpu_us_per_msg: Option<Vec<f64>>,
    lost: usize,
    duplicated: u64,
    /// Every message delivered in the measured time: (sent at, Unix ms;
    /// latency, ms).
    samples: Vec<(i64, f64)>,
}

/// What a cluster's nodes say of a phase on `/metrics`, summed over them:
/// `holdfast_bus_delay_seconds`, the events they received against the
/// NATS messages they sent, and the messages their commits held.
#[derive(Default)]
struct NodeFigures {
    sum_s: f64,
    count: f64,
    within_1s: f64,
    received: f64,
    sent: f64,
    batched: f64,
    batches: f64,
}

impl NodeFigures {
    /// Add a node's figures from its `/metrics` text.
    fn add(&mut self, text: &str) {
        use crate::server::metric_in;
        self.sum_s += metric_in(text, "holdfast_bus_delay_seconds_sum", &[]);
        self.count += metric_in(text, "holdfast_bus_delay_seconds_count", &[]);
        self.within_1s += metric_in(text, "holdfast_bus_delay_seconds_bucket", &["le=\"1\""]);
        self.received += metric_in(text, "holdfast_bus_received_total", &[]);
        self.sent += metric_in(text, "holdfast_bus_sent_total", &[]);
        self.batched += metric_in(text, "holdfast_store_batch_size_sum", &[]);
        self.batches += metric_in(text, "holdfast_store_batch_size_count", &[]);
    }

    /// Messages a group commit held on average.
    fn batch_mean(&self) -> Option<f64> {
        (self.batches > 0.0).then(|| self.batched / self.batches)
    }

    /// Events a NATS message carried on average (two nodes: each message
    /// reaches the one other node): 1 without batches.
    fn events_per_message(&self) -> Option<f64> {
        (self.sent > 0.0).then(|| self.received / self.sent)
    }

    fn mean_ms(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum_s * 1000.0 / self.count)
    }

    fn over_1s_pct(&self) -> Option<f64> {
        (self.count > 0.0).then(|| 100.0 * (self.count - self.within_1s) / self.count)
    }
}

impl RelayFigures {
    /// The CPU per message of the `at`th of `SIDE_COMMANDS`.
    fn side(&self, at: usize) -> Option<f64> {
        self.side_cpu_us_per_msg.as_ref()?.get(at).copied()
    }
}

/// A figure to `places` decimals, or `n/a` where it could not be read.
fn optional(figure: Option<f64>, places: usize) -> String {
    figure.map_or("n/a".into(), |f| format!("{f:.places$}"))
}

/// The processes beside a cluster's nodes whose CPU a relay bench reads:
/// the database's (every backend and its helpers) and the bus's.
const SIDE_COMMANDS: &[&str] = &["postgres", "nats-server"];

/// `pairs` visitor–agent pairs chat through `nodes` (clients spread over
/// them) for `seconds`; the servers' figures are summed over the nodes.
/// `began` (if given) is told when the measured time begins (Unix ms).
async fn measure_relay(
    nodes: &[Target],
    pairs: usize,
    seconds: u64,
    rate: Option<u64>,
    began: Option<tokio::sync::oneshot::Sender<i64>>,
) -> anyhow::Result<RelayFigures> {
    // A pair is one visitor and one agent: routing (least busy first)
    // gives each agent exactly one of the conversations.
    let first = &nodes[0];
    let mut source = 2u8;
    let mut workers = spawn_workers(first, Kind::Agent, pairs, &mut source, Pace::every(0), true).await?;
    anyhow::ensure!(
        wait_connected(&mut workers, "agents", Duration::from_secs(300), false).await,
        "agents did not connect"
    );
    // At a fixed rate each visitor sends every 2·pairs/rate seconds (each
    // message is answered, so the total is twice the visitors' rate).
    let (interval_ms, closed_loop) = match rate {
        Some(r) => ((2 * pairs as u64 * 1000 / r.max(1)).max(1), false),
        None => (100, true),
    };
    let mut visitors =
        spawn_workers(first, Kind::Visitor, pairs, &mut source, Pace { interval_ms, closed_loop, tally: false }, true)
            .await?;
    anyhow::ensure!(
        wait_connected(&mut visitors, "visitors", Duration::from_secs(300), false).await,
        "visitors did not connect"
    );
    let n_agent_workers = workers.len();
    workers.extend(visitors);
    for w in workers.iter_mut() {
        w.command("send_on").await?;
    }
    // Warm up (conversations get routed, caches fill), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = || nodes.iter().map(|t| t.cpu_s()).sum::<Option<f64>>();
    let client_cpu = |workers: &[Worker]| workers.iter().map(|w| w.cpu_s()).sum::<Option<f64>>();
    let from = now_ms();
    let started = Instant::now();
    if let Some(tell) = began {
        let _ = tell.send(from);
    }
    let cpu_from = cpu();
    let client_cpu_from = client_cpu(&workers);
    let machine_from = crate::machine::busy_ticks();
    let side_from = crate::machine::cpu_s_by_command(SIDE_COMMANDS);
    let mut peak_rss = 0.0f64;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(nodes.iter().map(|t| t.rss_mb().unwrap_or(0.0)).sum());
        progress(&format!("relay: {:.0}/{seconds} s", started.elapsed().as_secs_f64()));
    }
    eprintln!();
    let to = now_ms();
    let cpu_used = cpu_from.zip(cpu()).map(|(a, b)| b - a);
    let client_cpu_used = client_cpu_from.zip(client_cpu(&workers)).map(|(a, b)| b - a);
    let machine_used = machine_from.zip(crate::machine::busy_ticks()).map(|(a, b)| (b.0 - a.0, b.1 - a.1));
    let side_used = side_from
        .zip(crate::machine::cpu_s_by_command(SIDE_COMMANDS))
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| b - a).collect::<Vec<_>>());
    for w in workers.iter_mut() {
        w.command("send_off").await?;
    }
    // Time for the last messages to arrive before one acknowledged and not
    // received counts as lost. A cluster saturated on one machine delivers
    // a few after more than 3 s (its p99 is seconds): 12 s, as node-loss.
    let settle = if nodes.len() > 1 { 12 } else { 3 };
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let raw = collect_reports(&mut workers).await?;
    let (agent_raw, visitor_raw) = raw.split_at(n_agent_workers);
    let (agent_reports, visitor_reports) = (reports(agent_raw), reports(visitor_raw));
    let samples: Vec<(i64, f64)> = agent_reports
        .iter()
        .chain(&visitor_reports)
        .flat_map(|r| r.latencies.iter())
        .filter(|(sent, _)| (from..to).contains(sent))
        .copied()
        .collect();
    // Where in the phase the tail sits: a p99 that grows with the run's
    // length is a cost that comes due (a checkpoint, a vacuum), not load.
    let (rates, p99s) = timeline(&samples, from, to);
    eprintln!("relay: msgs/s by {TIMELINE_STEP_S} s: {rates}");
    eprintln!("relay: p99 ms by {TIMELINE_STEP_S} s: {p99s}");
    let mut window: Vec<f64> = samples.iter().map(|(_, ms)| *ms).collect();
    let secs = (to - from) as f64 / 1000.0;
    let delivered = window.len().max(1) as f64;
    Ok(RelayFigures {
        msgs_per_s: window.len() as f64 / secs,
        p50_ms: percentile(&mut window, 50.0),
        p99_ms: percentile(&mut window, 99.0),
        rss_mb: peak_rss,
        cpu_us_per_msg: cpu_used.map(|c| c * 1e6 / delivered),
        client_cpu_us_per_msg: client_cpu_used.map(|c| c * 1e6 / delivered),
        machine_busy_pct: machine_used.map(|(busy, all)| 100.0 * busy / all.max(1.0)),
        machine_cpu_us_per_msg: machine_used.map(|(busy, _)| busy * 1e4 / delivered),
        side_cpu_us_per_msg: side_used.map(|used| used.iter().map(|s| s * 1e6 / delivered).collect()),
        lost: lost_between(&visitor_reports, &agent_reports) + lost_between(&agent_reports, &visitor_reports),
        duplicated: agent_reports.iter().chain(&visitor_reports).map(|r| r.duplicated).sum(),
        samples,
    })
}

const TIMELINE_STEP_S: i64 = 5;

/// The rate (messages a second) and the p99 of each `TIMELINE_STEP_S`
/// window of a phase, by when the message was sent: a rate that falls or
/// a tail that grows over a long run shows where.
fn timeline(samples: &[(i64, f64)], from: i64, to: i64) -> (String, String) {
    let step = TIMELINE_STEP_S * 1000;
    let windows = ((to - from + step - 1) / step).max(0) as usize;
    let mut by_window = vec![Vec::new(); windows];
    for (sent, ms) in samples {
        if let Some(w) = by_window.get_mut(((sent - from) / step) as usize) {
            w.push(*ms);
        }
    }
    let rates = by_window.iter().enumerate().map(|(i, w)| {
        // The last window may be cut short by the phase's end.
        let span_ms = (to - from - i as i64 * step).min(step).max(1);
        format!("{:.0}", w.len() as f64 * 1000.0 / span_ms as f64)
    });
    let rates = rates.collect::<Vec<_>>().join(" ");
    let p99s = by_window.iter_mut().map(|w| format!("{:.0}", percentile(w, 99.0))).collect::<Vec<_>>().join(" ");
    (rates, p99s)
}

/// The relay on a one-node and then a two-node cluster (PostgreSQL + NATS),
/// in the same run: what a second node buys. Beside it, what `pgbench`
/// commits at one transaction per message (the baseline the group commit
/// is measured against), and the two nodes' p99 at half their peak rate.
/// With `node_cpus`, every node in every phase is held to that many cores.
async fn relay_cluster(
    pairs: usize,
    seconds: u64,
    database_url: &str,
    nats_url: &str,
    node_cpus: Option<f64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(pairs > 0 && seconds > 0, "--pairs and --seconds must be positive");
    node_cpus.map_or(Ok(()), crate::machine::CpuShare::check)?;
    let limit = |nodes: &[Target]| -> anyhow::Result<Vec<crate::machine::CpuShare>> {
        node_cpus.map_or(Ok(Vec::new()), |cpus| nodes.iter().map(|node| node.limit_cpus(cpus)).collect())
    };
    eprintln!("bench relay-cluster: pgbench, {} clients, {seconds} s", pgbench::CLIENTS);
    let pgbench_tps = pgbench::tps(database_url, seconds).await?;
    let mut figures = Vec::new();
    let mut kept_whole = [0.0; DIAGNOSTICS.len()];
    let mut said = Vec::new();
    for n in [1usize, 2] {
        eprintln!("bench relay-cluster: {pairs} pairs on {n} node(s), {seconds} s");
        let (measured, counters, nodes_said) =
            crate::server::with_cluster(database_url, nats_url, n, pairs, false, |nodes| async move {
                let _shares = limit(&nodes)?;
                let measured = measure_relay(&nodes, pairs, seconds, None, None).await?;
                let mut counters = [0.0; DIAGNOSTICS.len()];
                let mut nodes_said = NodeFigures::default();
                for node in &nodes {
                    let text = node.metrics_text().await?;
                    for (sum, value) in counters.iter_mut().zip(diagnostics_in(&text)) {
                        *sum += value;
                    }
                    nodes_said.add(&text);
                }
                Ok((measured, counters, nodes_said))
            })
            .await?;
        figures.push(measured);
        kept_whole = counters;
        said.push(nodes_said);
    }
    let half_rate = (figures[1].msgs_per_s / 2.0).max(1.0) as u64;
    eprintln!("bench relay-cluster: {pairs} pairs on 2 nodes at {half_rate} msgs/s, {seconds} s");
    let half = crate::server::with_cluster(database_url, nats_url, 2, pairs, false, |nodes| async move {
        let _shares = limit(&nodes)?;
        measure_relay(&nodes, pairs, seconds, Some(half_rate), None).await
    })
    .await?;
    let (one, two) = (&figures[0], &figures[1]);
    let (one_said, two_said) = (&said[0], &said[1]);
    finish(&[
        ("scenario", "relay-cluster".into()),
        ("pairs", pairs.to_string()),
        ("seconds", seconds.to_string()),
        ("node_cpus", node_cpus.map_or("all".into(), |cpus| format!("{cpus:.2}"))),
        ("pgbench_tps", format!("{pgbench_tps:.0}")),
        ("one_node_msgs_per_s", format!("{:.0}", one.msgs_per_s)),
        ("two_nodes_msgs_per_s", format!("{:.0}", two.msgs_per_s)),
        ("ratio", format!("{:.2}", two.msgs_per_s / one.msgs_per_s.max(1.0))),
        ("one_node_vs_pgbench", format!("{:.2}", one.msgs_per_s / pgbench_tps.max(1.0))),
        ("two_nodes_vs_pgbench", format!("{:.2}", two.msgs_per_s / pgbench_tps.max(1.0))),
        ("one_node_p99_ms", format!("{:.2}", one.p99_ms)),
        ("two_nodes_p99_ms", format!("{:.2}", two.p99_ms)),
        // Whether the machine bounds the ratio: how busy it was, and what
        // a message cost it in all (servers, database, NATS, clients).
        ("one_node_machine_busy_pct", optional(one.machine_busy_pct, 1)),
        ("two_nodes_machine_busy_pct", optional(two.machine_busy_pct, 1)),
        ("one_node_machine_cpu_us_per_msg", optional(one.machine_cpu_us_per_msg, 1)),
        ("two_nodes_machine_cpu_us_per_msg", optional(two.machine_cpu_us_per_msg, 1)),
        ("one_node_server_cpu_us_per_msg", optional(one.cpu_us_per_msg, 1)),
        ("two_nodes_server_cpu_us_per_msg", optional(two.cpu_us_per_msg, 1)),
        ("one_node_client_cpu_us_per_msg", optional(one.client_cpu_us_per_msg, 1)),
        ("two_nodes_client_cpu_us_per_msg", optional(two.client_cpu_us_per_msg, 1)),
        ("one_node_database_cpu_us_per_msg", optional(one.side(0), 1)),
        ("two_nodes_database_cpu_us_per_msg", optional(two.side(0), 1)),
        ("one_node_bus_cpu_us_per_msg", optional(one.side(1), 1)),
        ("two_nodes_bus_cpu_us_per_msg", optional(two.side(1), 1)),
        ("half_rate_msgs_per_s", format!("{:.0}", half.msgs_per_s)),
        ("half_rate_p99_ms", format!("{:.2}", half.p99_ms)),
        // What the two nodes did to keep sockets whole at their peak.
        ("two_nodes_bus_dropped", format!("{:.0}", kept_whole[0])),
        ("two_nodes_bus_missed", format!("{:.0}", kept_whole[1])),
        ("two_nodes_slow_consumers", format!("{:.0}", kept_whole[2])),
        ("two_nodes_gap_fills", format!("{:.0}", kept_whole[3])),
        ("two_nodes_resyncs", format!("{:.0}", kept_whole[4])),
        // How long events took between the two nodes at their peak (the
        // whole phase, warm-up and settling included).
        ("two_nodes_bus_delay_mean_ms", optional(two_said.mean_ms(), 1)),
        ("two_nodes_bus_delay_over_1s_pct", optional(two_said.over_1s_pct(), 2)),
        ("two_nodes_bus_events_per_message", optional(two_said.events_per_message(), 1)),
        // What a group commit held: the nodes' batchers split the messages.
        ("one_node_commit_batch_mean", optional(one_said.batch_mean(), 1)),
        ("two_nodes_commit_batch_mean", optional(two_said.batch_mean(), 1)),
        ("lost", (one.lost + two.lost + half.lost).to_string()),
        ("duplicated", (one.duplicated + two.duplicated + half.duplicated).to_string()),
    ]);
    Ok(())
}

async fn idle(sockets: usize, common: &Common) -> anyhow::Result<()> {
    anyhow::ensure!(sockets > 0, "--sockets must be positive");
    eprintln!("bench idle: {sockets} visitor sockets");
    let target = Target::start(1, &[], common).await?;
    // Credentials first (HTTP), so that only socket connects are timed.
    let mut source = 2u8;
    let mut workers =
        spawn_workers(&target, Kind::Visitor, sockets, &mut source, Pace::every(3_600_000), false).await?;
    let waiting = Instant::now();
    while !workers.iter_mut().all(|w| {
        w.poll();
        w.ready_to_connect
    }) {
        anyhow::ensure!(waiting.elapsed() < Duration::from_secs(600), "visitor sessions were not created in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = target.rss_mb().unwrap_or(0.0);
    let started = Instant::now();
    for w in workers.iter_mut() {
        w.command("connect").await?;
    }
    anyhow::ensure!(
        wait_connected(&mut workers, "connecting", Duration::from_secs(600), false).await,
        "sockets did not connect"
    );
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = target.rss_mb().unwrap_or(0.0);
    let _ = collect_reports(&mut workers).await?;
    finish(&[
        ("scenario", "idle".into()),
        ("sockets", sockets.to_string()),
        ("rss_per_socket_kib", format!("{:.1}", (rss_after - rss_before) * 1024.0 / sockets as f64)),
        ("server_rss_idle_mb", format!("{rss_before:.1}")),
        ("server_rss_mb", format!("{rss_after:.1}")),
        ("connect_per_s", format!("{:.0}", sockets as f64 / connect_s)),
    ]);
    Ok(())
}

/// Start `holdfast serve` on a provisioned data dir `runs` times and time
/// each start until `/readyz` answers 200.
async fn startup(runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    crate::server::provision(dir.path(), 50).await?;
    let exe = std::env::current_exe()?;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(200)).build()?;
    let mut times = Vec::new();
    for run in 0..runs.max(1) {
        // A fixed free port, so the poller knows where to look at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}/readyz");
        loop {
            if let Ok(res) = http.get(&url).send().await
                && res.status().is_success()
            {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        progress(&format!("start {}: ready in {ms:.1} ms", run + 1));
        times.push(ms);
        child.kill().await?;
    }
    eprintln!();
    let mut sorted = times.clone();
    finish(&[
        ("scenario", "startup".into()),
        ("runs", times.len().to_string()),
        ("ready_p50_ms", format!("{:.1}", percentile(&mut sorted, 50.0))),
        ("ready_max_ms", format!("{:.1}", times.iter().cloned().fold(0.0, f64::max))),
    ]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::timeline;

    #[test]
    fn the_timeline_puts_each_message_in_the_window_it_was_sent_in() {
        // Two 5 s windows and a part: slow messages only in the second.
        let mut samples: Vec<(i64, f64)> = (0..100).map(|i| (1_000 + i * 40, 10.0)).collect();
        samples.extend((0..100).map(|i| (6_000 + i * 40, 300.0)));
        samples.push((11_500, 20.0));
        samples.push((99_000, 5_000.0)); // after the phase: left out
        let (rates, p99s) = timeline(&samples, 1_000, 12_000);
        assert_eq!(p99s, "10 300 20");
        // 100 messages in each 5 s window, one in the last second.
        assert_eq!(rates, "20 20 1");
        assert_eq!(timeline(&[], 1_000, 1_000), (String::new(), String::new()));
    }
}
