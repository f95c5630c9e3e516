//! `holdfast bench soak`: the relay held for minutes, with a row per
//! interval, so that what only shows after a million messages (a cache
//! that stops fitting, a file that grows, a pool that starves) shows as a
//! trend. Clients count into per-worker tallies (`storm::client::Tally`)
//! instead of listing every message: memory stays flat however long it runs.
//! Beside each row, what the writer batched (jobs per commit) and what the
//! machine gave (`machine`: steal time, a fixed work's CPU time), so that a
//! minute that costs more per message can be told apart from a machine
//! that ran slower in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::Value;

use crate::client::{IntervalTally, Kind, SeqSet, TallySeqs};
use crate::scenarios::{Pace, Worker, collect_reports, progress, spawn_workers, wait_connected};
use crate::server::Target;
use crate::{Common, finish};
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::status::StatusStore;

/// One interval's row.
struct Row {
    end_s: f64,
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    cpu_us_per_msg: Option<f64>,
    duplicated: u64,
    /// Lines at WARN or worse in the server's log during the interval.
    warnings: u64,
    /// Status checks run (`holdfast_status_checks_total`) during the interval.
    status_checks: f64,
    /// Jobs per commit of the SQLite writer (`holdfast_store_batch_size`).
    batch: Option<f64>,
    /// The machine: CPU time stolen by the hypervisor (percent), and the
    /// CPU time of a fixed piece of work (µs, `machine::Probe`).
    steal_pct: Option<f64>,
    probe_us: Option<f64>,
    /// Per side, per conversation: the highest seq acknowledged by its end.
    visitor_marks: HashMap<String, i64>,
    agent_marks: HashMap<String, i64>,
}

pub(super) async fn soak(pairs: usize, seconds: u64, interval_s: u64, rate: Option<u64>) -> anyhow::Result<()> {
    anyhow::ensure!(pairs > 0 && interval_s > 0, "--pairs and --interval-s must be positive");
    anyhow::ensure!(seconds >= interval_s, "--seconds must be at least one interval");
    let intervals = (seconds / interval_s) as usize;
    eprintln!(
        "bench soak: {pairs} pairs, {intervals} intervals of {interval_s} s, rate {}",
        rate.map_or("max".into(), |r| r.to_string())
    );
    let mut target = Target::start(pairs, &[], &Common::local()).await?;
    let mut source = 2u8;
    let agents_pace = Pace { tally: true, ..Pace::every(0) };
    let mut workers = spawn_workers(&target, Kind::Agent, pairs, &mut source, agents_pace, true).await?;
    anyhow::ensure!(
        wait_connected(&mut workers, "agents", Duration::from_secs(300), false).await,
        "agents did not connect"
    );
    let visitors_pace = match rate {
        Some(r) => Pace { interval_ms: (2 * pairs as u64 * 1000 / r.max(1)).max(1), closed_loop: false, tally: true },
        None => Pace { interval_ms: 100, closed_loop: true, tally: true },
    };
    let mut visitors = spawn_workers(&target, Kind::Visitor, pairs, &mut source, visitors_pace, true).await?;
    anyhow::ensure!(
        wait_connected(&mut visitors, "visitors", Duration::from_secs(300), false).await,
        "visitors did not connect"
    );
    let n_agent_workers = workers.len();
    workers.extend(visitors);
    for w in workers.iter_mut() {
        w.command("send_on").await?;
    }
    // Warm up (conversations get routed), then start counting from zero.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for w in workers.iter_mut() {
        w.interval().await?;
    }
    let started = Instant::now();
    let mut cpu_before = target.cpu_s();
    let mut warnings_before = target.log.counts().0;
    let mut checks_before = target.metric("holdfast_status_checks_total").await.unwrap_or(0.0);
    let batches = async |target: &Target| {
        let sum = target.metric("holdfast_store_batch_size_sum").await.ok()?;
        Some((sum, target.metric("holdfast_store_batch_size_count").await.ok()?))
    };
    let mut batches_before = batches(&target).await;
    let mut steal = crate::machine::Steal::start();
    let probe = crate::machine::Probe::start()?;
    let mut rows: Vec<Row> = Vec::with_capacity(intervals);
    eprintln!("{}", header());
    for i in 0..intervals {
        let end = started + Duration::from_secs(interval_s * (i as u64 + 1));
        while let Some(left) = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            tokio::time::sleep(left.min(Duration::from_secs(5))).await;
            progress(&format!("soak: {:.0}/{} s", started.elapsed().as_secs_f64(), interval_s * intervals as u64));
        }
        let (agent_workers, visitor_workers) = workers.split_at_mut(n_agent_workers);
        let agents = interval_of(agent_workers).await?;
        let visitors = interval_of(visitor_workers).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let span = elapsed - rows.last().map_or(0.0, |r| r.end_s);
        let received = agents.received + visitors.received;
        let mut latency = agents.latency_ms.clone();
        for (ms, n) in &visitors.latency_ms {
            *latency.entry(*ms).or_default() += n;
        }
        let cpu = target.cpu_s();
        let warnings = target.log.counts().0;
        let checks = target.metric("holdfast_status_checks_total").await.unwrap_or(checks_before);
        let batches_now = batches(&target).await;
        let row = Row {
            end_s: elapsed,
            msgs_per_s: received as f64 / span,
            p50_ms: histogram_percentile(&latency, 50.0),
            p99_ms: histogram_percentile(&latency, 99.0),
            rss_mb: target.rss_mb().unwrap_or(0.0),
            cpu_us_per_msg: cpu_before.zip(cpu).map(|(a, b)| (b - a) * 1e6 / received.max(1) as f64),
            duplicated: agents.duplicated + visitors.duplicated,
            warnings: warnings - warnings_before,
            status_checks: checks - checks_before,
            batch: batches_before
                .zip(batches_now)
                .and_then(|((s0, n0), (s1, n1))| (n1 > n0).then(|| (s1 - s0) / (n1 - n0))),
            steal_pct: steal.percent(),
            probe_us: probe.median_us(),
            visitor_marks: visitors.acked_up_to,
            agent_marks: agents.acked_up_to,
        };
        (cpu_before, warnings_before, checks_before, batches_before) = (cpu, warnings, checks, batches_now);
        eprintln!();
        eprintln!("{}", line(i + 1, &row, None));
        rows.push(row);
    }
    for w in workers.iter_mut() {
        w.command("send_off").await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status_checks = target.metric("holdfast_status_checks_total").await.unwrap_or(0.0);
    let raw = collect_reports(&mut workers).await?;
    let (agent_raw, visitor_raw) = raw.split_at(n_agent_workers);
    let (agent_seqs, visitor_seqs) = (seqs_of(agent_raw)?, seqs_of(visitor_raw)?);
    let acked: usize = [&agent_seqs.0, &visitor_seqs.0].iter().flat_map(|m| m.values()).map(|s| s.len()).sum();
    let mut lost = vec![0usize; rows.len()];
    count_lost(&visitor_seqs.0, &agent_seqs.1, &rows, |r| &r.visitor_marks, &mut lost);
    count_lost(&agent_seqs.0, &visitor_seqs.1, &rows, |r| &r.agent_marks, &mut lost);
    let (warnings, storage_errors, slow_acquires) = target.log.counts();
    // Every check the monitors ran is in the status page's store: stop the
    // server and read its uptime roll-up.
    target.kill9()?;
    let dir = target.data_dir().ok_or_else(|| anyhow!("no data dir"))?;
    let store = SqliteStore::open(dir).await.map_err(|e| anyhow!("cannot open {}: {e}", dir.display()))?;
    let days = store.status_store().uptime(0).await.map_err(|e| anyhow!("cannot read the uptime: {e}"))?;
    store.close().await;
    let (status_ok, status_recorded) = days.iter().fold((0, 0), |(ok, total), d| (ok + d.ok, total + d.total));

    println!();
    println!("{}", header());
    for (i, row) in rows.iter().enumerate() {
        println!("{}", line(i + 1, row, Some(lost[i])));
    }
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    // Memory may grow while caches fill; after the first minute it should not.
    let settled = rows.iter().position(|r| r.end_s >= 59.0).unwrap_or(0);
    let rss_settled = rows[settled].rss_mb;
    let rss_later = rows[settled..].iter().map(|r| r.rss_mb).fold(rss_settled, f64::max);
    finish(&[
        ("scenario", "soak".into()),
        ("pairs", pairs.to_string()),
        ("intervals", rows.len().to_string()),
        ("interval_s", interval_s.to_string()),
        ("first_msgs_per_s", format!("{:.0}", first.msgs_per_s)),
        ("last_msgs_per_s", format!("{:.0}", last.msgs_per_s)),
        ("msgs_ratio", format!("{:.2}", last.msgs_per_s / first.msgs_per_s.max(1.0))),
        ("first_p99_ms", format!("{:.1}", first.p99_ms)),
        ("last_p99_ms", format!("{:.1}", last.p99_ms)),
        ("p99_ratio", format!("{:.2}", last.p99_ms / first.p99_ms.max(1.0))),
        ("rss_at_1min_mb", format!("{rss_settled:.1}")),
        ("rss_growth_after_1min_pct", format!("{:.1}", (rss_later / rss_settled.max(1.0) - 1.0) * 100.0)),
        ("messages", acked.to_string()),
        ("lost", lost.iter().sum::<usize>().to_string()),
        ("duplicated", rows.iter().map(|r| r.duplicated).sum::<u64>().to_string()),
        ("warnings", warnings.to_string()),
        ("storage_errors", storage_errors.to_string()),
        ("slow_acquires", slow_acquires.to_string()),
        ("status_checks", format!("{status_checks:.0}")),
        ("status_recorded", status_recorded.to_string()),
        ("status_failed", (status_recorded - status_ok).to_string()),
    ]);
    Ok(())
}

fn header() -> String {
    format!(
        "{:>8} {:>7} {:>10} {:>7} {:>8} {:>9} {:>9} {:>6} {:>10} {:>8} {:>6} {:>7} {:>7} {:>9}",
        "interval",
        "end_s",
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "rss_mb",
        "cpu_us/m",
        "lost",
        "duplicated",
        "warnings",
        "checks",
        "batch",
        "steal%",
        "probe_us"
    )
}

/// A row of the table; `lost` is known only once the run is over.
fn line(n: usize, r: &Row, lost: Option<usize>) -> String {
    format!(
        "{:>8} {:>7.0} {:>10.0} {:>7.1} {:>8.1} {:>9.1} {:>9} {:>6} {:>10} {:>8} {:>6.0} {:>7} {:>7} {:>9}",
        n,
        r.end_s,
        r.msgs_per_s,
        r.p50_ms,
        r.p99_ms,
        r.rss_mb,
        super::optional(r.cpu_us_per_msg, 0),
        lost.map_or("-".into(), |l| l.to_string()),
        r.duplicated,
        r.warnings,
        r.status_checks,
        super::optional(r.batch, 1),
        super::optional(r.steal_pct, 1),
        super::optional(r.probe_us, 0),
    )
}

/// The interval's figures of one side's workers, merged.
async fn interval_of(workers: &mut [Worker]) -> anyhow::Result<IntervalTally> {
    let mut merged = IntervalTally::default();
    for w in workers.iter_mut() {
        let answer = w.interval().await?;
        let t: IntervalTally = serde_json::from_value(answer["tally"].clone())?;
        merged.received += t.received;
        merged.duplicated += t.duplicated;
        for (ms, n) in t.latency_ms {
            *merged.latency_ms.entry(ms).or_default() += n;
        }
        for (conv, seq) in t.acked_up_to {
            let mark = merged.acked_up_to.entry(conv).or_insert(0);
            *mark = (*mark).max(seq);
        }
    }
    Ok(merged)
}

/// One side's seqs from its workers' reports: (acknowledged, received), per
/// conversation.
type Seqs = (HashMap<String, SeqSet>, HashMap<String, SeqSet>);

fn seqs_of(reports: &[Value]) -> anyhow::Result<Seqs> {
    let (mut acked, mut received) = (HashMap::new(), HashMap::new());
    for report in reports {
        let seqs: TallySeqs = serde_json::from_value(report["seqs"].clone())?;
        for (into, from) in [(&mut acked, seqs.acked), (&mut received, seqs.received)] {
            for (conv, hex) in from {
                let set = SeqSet::from_hex(&hex).ok_or_else(|| anyhow!("a worker sent a malformed seq set"))?;
                into.insert(conv, set);
            }
        }
    }
    Ok((acked, received))
}

/// Messages one side had acknowledged that the other never received, each
/// counted in the first interval whose mark reaches it (the last for those
/// acknowledged while the run drained).
fn count_lost(
    acked: &HashMap<String, SeqSet>,
    received: &HashMap<String, SeqSet>,
    rows: &[Row],
    marks: impl Fn(&Row) -> &HashMap<String, i64>,
    lost: &mut [usize],
) {
    let none = SeqSet::default();
    for (conv, sent) in acked {
        let got = received.get(conv).unwrap_or(&none);
        for seq in sent.iter().filter(|s| !got.contains(*s)) {
            let at = rows.iter().position(|r| marks(r).get(conv).is_some_and(|m| *m >= seq));
            lost[at.unwrap_or(rows.len() - 1)] += 1;
        }
    }
}

/// The p-th percentile (0–100) of a histogram of whole milliseconds, ranked
/// as `storm::percentile` ranks a list.
fn histogram_percentile(histogram: &HashMap<u64, u64>, p: f64) -> f64 {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((p / 100.0) * (total as f64 - 1.0)).round() as u64;
    let mut buckets: Vec<(&u64, &u64)> = histogram.iter().collect();
    buckets.sort_unstable();
    let mut seen = 0;
    for (ms, n) in buckets {
        seen += n;
        if seen > rank {
            return *ms as f64;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histograms_percentiles_rank_as_a_lists_do() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let histogram: HashMap<u64, u64> = values.iter().map(|v| (*v as u64, 1)).collect();
        for p in [0.0, 50.0, 99.0, 100.0] {
            assert_eq!(histogram_percentile(&histogram, p), crate::percentile(&mut values.clone(), p));
        }
        assert_eq!(histogram_percentile(&HashMap::from([(3, 98), (250, 2)]), 99.0), 250.0);
        assert_eq!(histogram_percentile(&HashMap::new(), 99.0), 0.0);
    }

    #[test]
    fn a_seq_set_round_trips_through_hex() {
        let mut set = SeqSet::default();
        for seq in [1, 2, 63, 64, 65, 1000] {
            set.insert(seq);
        }
        let back = SeqSet::from_hex(&set.to_hex()).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), [1, 2, 63, 64, 65, 1000]);
        assert!(back.contains(64) && !back.contains(66) && !back.contains(-1));
    }
}
