//! `holdfast bench reports`: reports on a big history, and live chat
//! beside them. A year of `--conversations` chats and `--events` events
//! is written straight into a fresh store (SQLite in a temporary data
//! dir, or a new PostgreSQL database with `--database-url`) through
//! `store::seed`, a batch per transaction; then a server in its own
//! process (on PostgreSQL, once its lead has summarized every settled
//! day: `summaries_made_s`) answers 30-day reports over HTTP (several
//! windows, an admin's report of the whole site with its groups and
//! agents, and an agent's own), timed from the client; then the relay
//! runs for twice `--seconds`, in turns of `--turn-ms`: no reports, then
//! reports asked for in a loop (one at a time, the windows in turn), and
//! so on. Message
//! latency without and with reports, in the same run and interleaved, so
//! that what drifts over the run weighs on both alike.
//!
//! The history: a conversation every `days / conversations` on average,
//! in time order, each in one of `--groups` groups and (when an agent
//! had it) with one of the group's agents; 7% missed (a visitor who
//! waited or left), 8% offline messages, the rest answered (assigned,
//! a first reply after a wait of seconds to minutes, messages both ways,
//! read receipts, a close), 35% of those rated (good, bad or 1–5).
//! A visitor has two conversations. The events are spread so that they
//! add up to `--events` exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use holdfast_server::store::postgres::{self, PostgresStore};
use holdfast_server::store::seed::{SeedBatch, SeedConversation, SeedEvent, SeedVisitor};
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::{Availability, ConversationStatus, Role, Store, new_id, now_ms};

use crate::server::{Target, provision, provision_store};
use crate::{finish, percentile};

/// Conversations written per transaction.
const BATCH: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

/// What `bench reports` is asked for.
#[derive(Args, Debug, Clone)]
pub struct Plan {
    #[arg(long, default_value_t = 1_000_000)]
    pub conversations: usize,
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// Days the history spans, ending two days ago.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    #[arg(long, default_value_t = 20)]
    pub agents: usize,
    #[arg(long, default_value_t = 4)]
    pub groups: usize,
    /// Different 30-day windows asked for, spread over the history.
    #[arg(long, default_value_t = 6)]
    pub windows: usize,
    /// Times each window is asked for (by the admin, and by an agent).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The relay beside the reports: twice `--seconds` in all.
    #[command(flatten)]
    pub relay: super::BesideRelay,
    /// PostgreSQL server to make a fresh database on (dropped at the end
    /// unless `--keep`); without it, SQLite in a temporary data dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep the data dir or database afterwards, and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Measure on a history kept by an earlier `--keep` run instead of
    /// writing one: its data dir, or (with `--database-url`) its database
    /// name. Kept afterwards; `seed_s` is then 0. The history's days are
    /// those of the day it was written.
    #[arg(long, value_name = "DIR_OR_DATABASE")]
    pub reuse: Option<String>,
    /// PostgreSQL: empty the summaries of settled days (`report_days`)
    /// after the reports are timed, as an upgrade from a release without
    /// them finds a history: the lead makes them all again while the relay
    /// runs, and reports asked meanwhile make their own days first. How
    /// long that takes, and chat's p99 and the reports' times meanwhile,
    /// are printed apart (`backfill_*`); the other figures leave it out.
    #[arg(long, requires = "database_url")]
    pub cold: bool,
}

/// When reports were asked for beside the relay: each turn with reports,
/// from its start to the end of its last report, and each report asked
/// for, from its request to its answer (Unix ms), with its time (ms).
#[derive(Default)]
struct Turns {
    busy: Vec<(i64, i64)>,
    reports: Vec<(i64, i64)>,
    report_ms: Vec<f64>,
}

/// The store being seeded, whichever it is.
enum Seeding {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Seeding {
    fn store(&self) -> &dyn Store {
        match self {
            Seeding::Sqlite(s) => s,
            Seeding::Postgres(s) => s,
        }
    }

    async fn write(&self, batch: SeedBatch) -> anyhow::Result<()> {
        match self {
            Seeding::Sqlite(s) => s.seed_history(batch).await,
            Seeding::Postgres(s) => s.seed_history(batch).await,
        }
        .map_err(|e| anyhow!("cannot write the history: {e:?}"))
    }

    async fn finished(&self) -> anyhow::Result<()> {
        match self {
            Seeding::Sqlite(s) => s.seed_finished().await,
            Seeding::Postgres(s) => s.seed_finished().await,
        }
        .map_err(|e| anyhow!("cannot analyze the history: {e:?}"))
    }

    async fn close(&self) {
        match self {
            Seeding::Sqlite(s) => s.close().await,
            Seeding::Postgres(s) => s.close().await,
        }
    }
}

pub(super) async fn reports(plan: Plan) -> anyhow::Result<()> {
    anyhow::ensure!(plan.conversations > 0 && plan.days >= 30, "--conversations must be positive, --days at least 30");
    anyhow::ensure!(plan.events >= 2 * plan.conversations, "--events must be at least twice --conversations");
    anyhow::ensure!(plan.groups > 0 && plan.windows > 0 && plan.repeats > 0, "--groups, --windows, --repeats > 0");
    plan.relay.check()?;
    let store_name = if plan.database_url.is_some() { "postgres" } else { "sqlite" };
    eprintln!(
        "bench reports: {} conversations, {} events over {} days, {store_name}",
        plan.conversations, plan.events, plan.days
    );
    if let Some(kept) = &plan.reuse {
        let mut rows = measure_kept(&plan, kept).await?;
        rows.insert(0, ("store", store_name.into()));
        rows.insert(0, ("scenario", "reports".into()));
        finish(&rows);
        return Ok(());
    }
    let agents = plan.agents.max(plan.relay.pairs);
    let dir = tempfile::tempdir()?;
    let (seeding, widget_key, db) = match &plan.database_url {
        None => {
            let site = provision(dir.path(), agents).await?;
            let store = SqliteStore::open(dir.path()).await.map_err(|e| anyhow!("cannot open the data dir: {e}"))?;
            (Seeding::Sqlite(store), site.widget_key, None)
        }
        Some(server) => {
            let name = format!("holdfast_bench_{}", new_id().replace('-', ""));
            let url = postgres::create_database(server, &name)
                .await
                .map_err(|e| anyhow!("cannot create a database on {server}: {e:?}"))?;
            let connect = || async {
                PostgresStore::connect(&url, 4).await.map_err(|e| anyhow!("cannot connect to {name}: {e:?}"))
            };
            let site = provision_store(&connect().await?, agents).await?;
            (Seeding::Postgres(connect().await?), site.widget_key, Some((server.clone(), name, url)))
        }
    };
    let outcome = async {
        let mut rows = seed(&plan, seeding, &widget_key).await?;
        let url = db.as_ref().map(|d| d.2.as_str());
        rows.extend(measure(&plan, dir.path(), url, widget_key).await?);
        anyhow::Ok(rows)
    }
    .await;
    if plan.keep {
        match &db {
            Some((_, name, _)) => eprintln!("kept the database {name}"),
            None => eprintln!("kept the data dir {}", dir.keep().display()),
        }
    } else if let Some((server, name, _)) = &db
        && let Err(e) = postgres::drop_database(server, name).await
    {
        eprintln!("warning: could not drop the database {name}: {e:?}");
    }
    let mut rows = outcome?;
    rows.insert(0, ("store", store_name.into()));
    rows.insert(0, ("scenario", "reports".into()));
    finish(&rows);
    Ok(())
}

/// The history of a site kept by an earlier run, measured as it is.
async fn measure_kept(plan: &Plan, kept: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    // With PostgreSQL the server's data dir holds only its files.
    let files = tempfile::tempdir()?;
    let (dir, url) = match &plan.database_url {
        None => (std::path::Path::new(kept), None),
        Some(server) => (files.path(), Some(postgres::database_url(server, kept).map_err(|e| anyhow!("{e:?}"))?)),
    };
    let store: Box<dyn Store> = match &url {
        None => Box::new(SqliteStore::open(dir).await.map_err(|e| anyhow!("cannot open {kept}: {e}"))?),
        Some(url) => Box::new(PostgresStore::connect(url, 2).await.map_err(|e| anyhow!("cannot open {kept}: {e:?}"))?),
    };
    let sites = store.sites().await.map_err(|e| anyhow!("{e}"))?;
    store.close().await;
    let [site] = sites.as_slice() else { anyhow::bail!("{kept} has {} sites, not one", sites.len()) };
    let mut rows = vec![
        ("conversations", plan.conversations.to_string()),
        ("events", plan.events.to_string()),
        ("days", plan.days.to_string()),
        ("reused", "true".to_owned()),
    ];
    rows.extend(measure(plan, dir, url.as_deref(), site.widget_key.clone()).await?);
    Ok(rows)
}

/// Write the history; its figures.
async fn seed(plan: &Plan, seeding: Seeding, widget_key: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let seeding = Arc::new(seeding);
    let store = seeding.store();
    let site = store.site_by_widget_key(widget_key).await.map_err(|e| anyhow!("{e}"))?;
    let site = site.ok_or_else(|| anyhow!("the provisioned site is gone"))?;
    let groups = make_groups(store, &site.id, plan.groups).await?;

    let started = Instant::now();
    let mut history = History::new(plan, &groups);
    let mut writing = tokio::task::JoinSet::new();
    let mut written = 0;
    while written < plan.conversations {
        let n = BATCH.min(plan.conversations - written);
        let batch = history.batch(&site.id, n);
        written += n;
        // Two batches in flight: the next is made while one is written.
        while writing.len() >= 2 {
            writing.join_next().await.ok_or_else(|| anyhow!("no write"))???;
        }
        let (seeding, done) = (seeding.clone(), written);
        writing.spawn(async move { seeding.write(batch).await.map(|()| done) });
        crate::scenarios::progress(&format!("history: {written} conversations, {} events", history.events_made));
    }
    while let Some(done) = writing.join_next().await {
        done??;
    }
    eprintln!();
    let seed_s = started.elapsed().as_secs_f64();
    let analyzed = Instant::now();
    seeding.finished().await?;
    let analyze_s = analyzed.elapsed().as_secs_f64();
    anyhow::ensure!(history.events_made == plan.events, "made {} events, not {}", history.events_made, plan.events);
    eprintln!("history written in {seed_s:.1} s, analyzed in {analyze_s:.1} s");

    // Only the relay's agents stay online: routing must not give its
    // chats to an agent nobody plays.
    let relay_agents: Vec<String> = (0..plan.relay.pairs).map(crate::worker::agent_email).collect();
    for agent in store.agents(&site.id).await.map_err(|e| anyhow!("{e}"))? {
        if agent.role == Role::Agent && !relay_agents.contains(&agent.email) {
            store.set_availability(&agent.id, Availability::Offline).await.map_err(|e| anyhow!("{e}"))?;
        }
    }
    seeding.close().await;
    Ok(vec![
        ("conversations", plan.conversations.to_string()),
        ("events", plan.events.to_string()),
        ("days", plan.days.to_string()),
        ("seed_s", format!("{seed_s:.1}")),
        ("seed_rows_per_s", format!("{:.0}", (plan.conversations + plan.events) as f64 / seed_s)),
        ("analyze_s", format!("{analyze_s:.1}")),
    ])
}

/// Reports and live chat on the written history, served from `dir` (and
/// the database at `database_url`, if any).
async fn measure(
    plan: &Plan,
    dir: &std::path::Path,
    database_url: Option<&str>,
    widget_key: String,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let data = dir.to_string_lossy().into_owned();
    let mut args = vec!["--data", data.as_str()];
    if let Some(url) = database_url {
        // The lead's rounds of summaries (`reports::keep_summaries`) a
        // second apart, not five minutes: every settled day is summarized
        // before anything is timed, as on a server that has run a while.
        args.extend(["--database-url", url, "--report-summaries-every-secs", "1"]);
    }
    let started = Instant::now();
    let target = Target::serve(&args, widget_key).await?;
    let summaries_made_s = match database_url {
        Some(_) => {
            summaries_made(&target).await?;
            Some(started.elapsed().as_secs_f64())
        }
        None => None,
    };
    let agent_token = target.login(&crate::worker::agent_email(0), crate::server::STORM_PASSWORD).await?;
    let windows = windows(plan.days, plan.windows);
    // A history kept by a run from before the relay closed its chats (or
    // one that failed) may hold some still open.
    let left_open = close_open_chats(&target).await?;

    // Reports, timed from the client: an admin's (the site, every group
    // and agent) and an agent's own, each window `repeats` times.
    let mut admin_ms = Vec::new();
    let mut agent_ms = Vec::new();
    let mut chats = Vec::new();
    for (from, to) in &windows {
        for _ in 0..plan.repeats {
            let (ms, report) = timed_report(&target, &target.admin_token, from, to).await?;
            anyhow::ensure!(report["groups"].as_array().is_some_and(|g| g.len() == plan.groups), "groups: {report}");
            chats.push(report["site"]["chats"].as_f64().unwrap_or(0.0));
            admin_ms.push(ms);
            agent_ms.push(timed_report(&target, &agent_token, from, to).await?.0);
        }
        crate::scenarios::progress(&format!("reports: {from} to {to}"));
    }
    eprintln!();

    // As if no summary had ever been made (`--cold`): emptied as the
    // relay's measured time begins, and made again by the lead while it
    // runs; the span until they all are is watched.
    let (cold_began, relay_began_cold) = tokio::sync::oneshot::channel();
    let backfill = match (plan.cold, database_url) {
        (true, Some(url)) => {
            let (held, url) = (summaries_held(url).await?, url.to_owned());
            Some(tokio::spawn(async move {
                relay_began_cold.await?;
                psql(&url, "UPDATE report_days SET facts = NULL, version = NULL").await?;
                watch_backfill(url, held, now_ms()).await
            }))
        }
        _ => None,
    };
    // Live chat: one relay run of twice `seconds`, in turns of `turn_ms`:
    // no reports, then reports asked for in a loop, and so on. Turns
    // rather than halves, so that what drifts over a run (the machine, a
    // checkpoint of the history) falls on both sides alike.
    let (began, relay_began) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let asking = {
        let (stop, windows, turn_ms) = (stop.clone(), windows.clone(), plan.relay.turn_ms as i64);
        let (http, base, token) = (target.http.clone(), target.base.clone(), target.admin_token.clone());
        tokio::spawn(async move {
            let mut turns = Turns::default();
            let Ok(from) = relay_began.await else { return turns };
            let _ = cold_began.send(());
            let mut windows = windows.iter().cycle();
            let mut quiet_from = from;
            loop {
                let (start, end) = super::sleep_through_quiet_turn(quiet_from, turn_ms).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                while now_ms() < end && !stop.load(Ordering::Relaxed) {
                    let Some((first_day, last_day)) = windows.next() else { break };
                    let (started, asked_at) = (Instant::now(), now_ms());
                    let url = format!("{base}/api/v1/reports?from={first_day}&to={last_day}");
                    if http.get(url).bearer_auth(&token).send().await.is_ok_and(|r| r.status().is_success()) {
                        turns.report_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                        turns.reports.push((asked_at, now_ms()));
                    }
                }
                quiet_from = now_ms().max(end);
                turns.busy.push((start, quiet_from));
            }
            turns
        })
    };
    let relay = super::measure_relay(
        std::slice::from_ref(&target),
        plan.relay.pairs,
        2 * plan.relay.seconds,
        Some(plan.relay.rate),
        Some(began),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let Turns { busy: busy_spans, reports: asked, report_ms } = asking.await?;
    let relay = relay?;
    plan.relay.dump(&relay.samples, "report", &asked)?;
    // The relay's visitors are gone: close their chats, or a run on this
    // history later would give them back to its agents, who would answer
    // nobody (counted lost) and carry them as extra load.
    let closed = close_open_chats(&target).await?;
    // With `--cold`, the messages and reports from the emptying until the
    // lead had made every summary again are counted apart.
    let backfill = match backfill {
        Some(watch) => Some(watch.await??),
        None => None,
    };
    let in_backfill =
        |at: i64| backfill.as_ref().is_some_and(|b| b.emptied_at <= at && b.made_at.is_none_or(|m| at < m));
    let (samples, backfill_samples): (Vec<_>, Vec<_>) = relay.samples.iter().partition(|(sent, _)| !in_backfill(*sent));
    let mut backfill_latencies: Vec<f64> = backfill_samples.iter().map(|(_, latency)| *latency).collect();
    let (mut backfill_reports_ms, mut during_ms): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for ((asked_at, _), ms) in asked.iter().zip(report_ms) {
        if in_backfill(*asked_at) { &mut backfill_reports_ms } else { &mut during_ms }.push(ms);
    }
    // A message sent within a turn with reports, or while the last
    // report of one was still being answered, was sent during reports.
    let (mut quiet, mut busy) = super::BesideRelay::split(&samples, &busy_spans)?;
    let (p99_quiet, p99_busy) = (percentile(&mut quiet, 99.0), percentile(&mut busy, 99.0));
    let p99_backfill = percentile(&mut backfill_latencies, 99.0);
    let (_, storage_errors, _) = target.log.counts();
    let summaries = match database_url {
        Some(url) => summaries_held(url).await?,
        None => 0,
    };
    let backfill_s = backfill.as_ref().and_then(|b| b.made_at.map(|m| (m - b.emptied_at) as f64 / 1000.0));

    let ms = |v: &mut Vec<f64>, p: f64| format!("{:.1}", percentile(v, p));
    Ok(vec![
        ("windows", windows.len().to_string()),
        ("chats_per_window", format!("{:.0}", percentile(&mut chats, 50.0))),
        ("admin_report_median_ms", ms(&mut admin_ms, 50.0)),
        ("admin_report_max_ms", ms(&mut admin_ms, 100.0)),
        ("agent_report_median_ms", ms(&mut agent_ms, 50.0)),
        ("agent_report_max_ms", ms(&mut agent_ms, 100.0)),
        ("relay_pairs", plan.relay.pairs.to_string()),
        ("relay_rate", plan.relay.rate.to_string()),
        ("relay_seconds", (2 * plan.relay.seconds).to_string()),
        ("turn_ms", plan.relay.turn_ms.to_string()),
        ("messages_quiet", quiet.len().to_string()),
        ("messages_during_reports", busy.len().to_string()),
        ("p99_quiet_ms", format!("{p99_quiet:.2}")),
        ("p99_during_reports_ms", format!("{p99_busy:.2}")),
        ("p99_ratio", format!("{:.2}", p99_busy / p99_quiet.max(0.01))),
        ("reports_during_relay", asked.len().to_string()),
        ("report_during_relay_median_ms", ms(&mut during_ms, 50.0)),
        ("report_during_relay_max_ms", ms(&mut during_ms, 100.0)),
        ("summaries_made_s", super::optional(summaries_made_s, 1)),
        ("summaries_held_after", summaries.to_string()),
        ("backfill_s", super::optional(backfill_s, 1)),
        ("messages_during_backfill", backfill_latencies.len().to_string()),
        ("p99_during_backfill_ms", format!("{p99_backfill:.2}")),
        ("backfill_p99_ratio", format!("{:.2}", p99_backfill / p99_quiet.max(0.01))),
        ("reports_during_backfill", backfill_reports_ms.len().to_string()),
        ("report_during_backfill_median_ms", ms(&mut backfill_reports_ms, 50.0)),
        ("report_during_backfill_max_ms", ms(&mut backfill_reports_ms, 100.0)),
        ("lost", relay.lost.to_string()),
        ("duplicated", relay.duplicated.to_string()),
        ("storage_errors", storage_errors.to_string()),
        ("open_chats_found", left_open.to_string()),
        ("chats_closed_after", closed.to_string()),
    ])
}

/// Run `sql` on the PostgreSQL database at `url` with `psql`; what it
/// printed, unaligned and without headers.
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let run = psql_command(url)?.args(["-c", sql]).output();
    let out = run.await.map_err(|e| anyhow!("cannot run psql (Debian: postgresql-client): {e}"))?;
    anyhow::ensure!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `psql` on the database at `url`, quiet, unaligned, without headers,
/// stopping at the first error.
fn psql_command(url: &str) -> anyhow::Result<tokio::process::Command> {
    // Without the options only the server's driver reads (libpq refuses them).
    let mut url = reqwest::Url::parse(url).map_err(|e| anyhow!("the database URL: {e}"))?;
    url.set_query(None);
    let mut command = tokio::process::Command::new("psql");
    command.args(["-qtA", "-v", "ON_ERROR_STOP=1", url.as_str()]);
    Ok(command)
}

/// One `psql` kept open, asked one statement at a time. The backfill is
/// watched four times a second: a `psql` started each time (a process,
/// and a database backend forked for it) cost the chat it watched.
struct PsqlSession {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl PsqlSession {
    fn open(url: &str) -> anyhow::Result<PsqlSession> {
        let mut child = psql_command(url)?
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow!("cannot run psql (Debian: postgresql-client): {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("psql without its pipes");
        };
        let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        Ok(PsqlSession { _child: child, stdin, lines })
    }

    /// The number `sql`, a query of one row and one column, gives. (A
    /// statement that printed nothing would leave this waiting.)
    async fn number(&mut self, sql: &str) -> anyhow::Result<usize> {
        use tokio::io::AsyncWriteExt as _;
        self.stdin.write_all(format!("{sql};\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = self.lines.next_line().await?;
        let line = line.ok_or_else(|| anyhow!("psql ended (an error: see above) on {sql:?}"))?;
        line.parse().map_err(|_| anyhow!("psql gave {line:?} for {sql:?}"))
    }
}

/// Wait until a round of the lead's summaries (the first began after
/// `target` started) ended with none left to make.
async fn summaries_made(target: &Target) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let rounds = target.metric("holdfast_report_summary_rounds_total").await?;
        if rounds >= 1.0 && target.metric("holdfast_report_summaries_missing").await? == 0.0 {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < SUMMARIES_WAIT, "the lead made no summaries in {SUMMARIES_WAIT:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The longest wait for the lead to make the history's summaries.
const SUMMARIES_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The span of `--cold`'s backfill: from the emptying of the summaries
/// to the moment the database held as many full ones again as before
/// (Unix ms), if it did before the relay ended.
struct Backfill {
    emptied_at: i64,
    made_at: Option<i64>,
}

/// Watch the database at `url` until it holds `held` full summaries
/// again, or `SUMMARIES_WAIT` passed (then `made_at` is `None`).
async fn watch_backfill(url: String, held: usize, emptied_at: i64) -> anyhow::Result<Backfill> {
    let mut session = PsqlSession::open(&url)?;
    let started = Instant::now();
    while started.elapsed() < SUMMARIES_WAIT {
        if session.number(SUMMARIES_HELD).await? >= held {
            return Ok(Backfill { emptied_at, made_at: Some(now_ms()) });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Ok(Backfill { emptied_at, made_at: None })
}

/// Summaries of ended days the PostgreSQL database at `url` holds.
async fn summaries_held(url: &str) -> anyhow::Result<usize> {
    let count = psql(url, SUMMARIES_HELD).await?;
    count.parse().map_err(|_| anyhow!("psql counted {count:?}"))
}

const SUMMARIES_HELD: &str = "SELECT count(*) FROM report_days WHERE facts IS NOT NULL";

/// Close every queued and active chat of the site over the REST API, as
/// its admin would from the console; how many.
async fn close_open_chats(target: &Target) -> anyhow::Result<usize> {
    let mut closed = 0;
    for status in ["active", "queued"] {
        let url = format!("{}/api/v1/conversations?status={status}&limit=1000", target.base);
        let res = target.http.get(url).bearer_auth(&target.admin_token).send().await?;
        anyhow::ensure!(res.status().is_success(), "listing {status} chats: {}", res.status());
        let list: Vec<serde_json::Value> = res.json().await?;
        for chat in list {
            let id = chat["id"].as_str().ok_or_else(|| anyhow!("a chat without an id: {chat}"))?;
            let url = format!("{}/api/v1/conversations/{id}/close", target.base);
            let res = target.http.post(url).bearer_auth(&target.admin_token).send().await?;
            anyhow::ensure!(res.status().is_success(), "closing {id}: {}", res.status());
            closed += 1;
        }
    }
    Ok(closed)
}

/// The site's default group and `count - 1` more, each agent in one or two.
async fn make_groups(store: &dyn Store, site_id: &str, count: usize) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let fail = |e: holdfast_server::error::Error| anyhow!("{e}");
    let mut ids: Vec<String> = store.groups(site_id).await.map_err(fail)?.into_iter().map(|g| g.id).collect();
    ids.truncate(1);
    for i in 1..count {
        ids.push(store.create_group(site_id, &format!("Group {i}"), false).await.map_err(fail)?.id);
    }
    let agents: Vec<String> = store
        .agents(site_id)
        .await
        .map_err(fail)?
        .into_iter()
        .filter(|a| a.role == Role::Agent)
        .map(|a| a.id)
        .collect();
    anyhow::ensure!(!agents.is_empty(), "no agents");
    let mut groups: Vec<(String, Vec<String>)> = ids.into_iter().map(|id| (id, Vec::new())).collect();
    // Group g has agents g and g + 1 (modulo), so every agent is in one.
    for g in 0..groups.len().max(agents.len()) {
        for agent in [&agents[g % agents.len()], &agents[(g + 1) % agents.len()]] {
            let (group_id, members) = &mut groups[g % count];
            if !members.contains(agent) {
                store.add_agent_to_group(agent, group_id).await.map_err(fail)?;
                members.push(agent.clone());
            }
        }
    }
    anyhow::ensure!(groups.iter().all(|(_, members)| !members.is_empty()), "a group without agents");
    Ok(groups)
}

/// `count` 30-day windows ending today and every `days / count` days before.
fn windows(days: i64, count: usize) -> Vec<(String, String)> {
    let today = now_ms().div_euclid(DAY_MS);
    let step = ((days - 30) / count.max(1) as i64).max(1);
    (0..count as i64).map(|k| today - k * step).map(|to| (civil(to - 29), civil(to))).collect()
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's
/// civil-from-days).
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One report as JSON, and how long it took to arrive.
async fn timed_report(target: &Target, token: &str, from: &str, to: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let res = target
        .http
        .get(format!("{}/api/v1/reports?from={from}&to={to}", target.base))
        .bearer_auth(token)
        .send()
        .await?;
    let status = res.status();
    let body: serde_json::Value = res.json().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status.is_success() && body["site"].is_object(), "report {from}..{to}: {status} {body}");
    Ok((ms, body))
}

/// A small, fast, reproducible random source (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { lo + (self.next() % (hi - lo + 1) as u64) as i64 }
    }

    /// True with probability `p` percent.
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// The history, made a batch at a time, in time order.
struct History<'a> {
    plan: &'a Plan,
    groups: &'a [(String, Vec<String>)],
    rng: Rng,
    start_ms: i64,
    made: usize,
    events_made: usize,
    visitor: String,
}

impl<'a> History<'a> {
    fn new(plan: &'a Plan, groups: &'a [(String, Vec<String>)]) -> History<'a> {
        // Everything ends at least two days ago (an offline message may
        // wait a day for its answer).
        let start_ms = now_ms() - plan.days * DAY_MS - 2 * DAY_MS;
        History { plan, groups, rng: Rng(0x5EED), start_ms, made: 0, events_made: 0, visitor: String::new() }
    }

    fn batch(&mut self, site_id: &str, n: usize) -> SeedBatch {
        let mut batch = SeedBatch { site_id: site_id.to_owned(), ..SeedBatch::default() };
        for _ in 0..n {
            let slot = self.plan.days * DAY_MS / self.plan.conversations as i64;
            let created_at = self.start_ms + self.made as i64 * slot + self.rng.range(0, slot.max(1) - 1);
            if self.made.is_multiple_of(2) {
                self.visitor = new_id();
                batch.visitors.push(SeedVisitor {
                    id: self.visitor.clone(),
                    first_seen: created_at,
                    last_seen: created_at + slot,
                });
            }
            // Events for this one: the rest spread evenly, give or take,
            // leaving at least two for each conversation still to come.
            let (left, to_come) =
                ((self.plan.events - self.events_made) as i64, (self.plan.conversations - self.made) as i64);
            let mean = left / to_come;
            let most = left - 2 * (to_come - 1);
            let n_events = if to_come == 1 { left } else { self.rng.range((mean / 3).max(2), mean * 5 / 3).min(most) };
            let conversation = self.conversation(created_at, n_events.max(2) as usize);
            self.events_made += conversation.events.len();
            batch.conversations.push(conversation);
            self.made += 1;
        }
        batch
    }

    fn conversation(&mut self, created_at: i64, n: usize) -> SeedConversation {
        let (group_id, members) = &self.groups[self.rng.range(0, self.groups.len() as i64 - 1) as usize];
        let agent = members[self.rng.range(0, members.len() as i64 - 1) as usize].clone();
        let visitor = self.visitor.clone();
        let mut events = Vec::with_capacity(n);
        let mut at = created_at;
        let roll = self.rng.range(0, 99);
        let mut k = SeedConversation {
            id: new_id(),
            visitor_id: visitor.clone(),
            group_id: group_id.clone(),
            agent_id: None,
            status: ConversationStatus::Closed,
            offline: false,
            created_at,
            assigned_at: None,
            closed_at: None,
            events: Vec::new(),
            score: None,
            missed: None,
        };
        let event = |events: &mut Vec<SeedEvent>, at: i64, kind: &'static str, who: &'static str| {
            let seq = events.len() + 1;
            let (author_id, body, client_id) = match (kind, who) {
                ("message", "visitor") => {
                    (Some(visitor.clone()), Some(format!("question {seq}")), Some(format!("v{seq}")))
                }
                ("message", _) => (Some(agent.clone()), Some(format!("answer {seq}")), Some(format!("a{seq}"))),
                (_, "visitor") => (Some(visitor.clone()), None, None),
                (_, "agent") => (Some(agent.clone()), None, None),
                _ => (None, None, None),
            };
            let data = match kind {
                "read" => format!("{{\"up_to\":{}}}", seq - 1),
                "assigned" => format!("{{\"agent_id\":\"{agent}\"}}"),
                _ => "{}".to_owned(),
            };
            events.push(SeedEvent {
                id: new_id(),
                kind,
                author_kind: who,
                author_id,
                client_id,
                body,
                data,
                created_at: at,
            });
        };
        if roll < 8 {
            // An offline message, answered by email within a day (most),
            // or still waiting.
            k.offline = true;
            for _ in 1..n.max(2) {
                event(&mut events, at, "message", "visitor");
                at += self.rng.range(5_000, 60_000);
            }
            if self.rng.percent(90) {
                at += self.rng.range(600_000, DAY_MS);
                event(&mut events, at, "closed", "agent");
                k.closed_at = Some(at);
            } else {
                event(&mut events, at, "message", "visitor");
                k.status = ConversationStatus::Offline;
            }
        } else if roll < 15 || n < 4 {
            // Missed: nobody answered; the visitor waited the limit, or left.
            let left = self.rng.percent(40);
            for _ in 1..n.max(2) {
                event(&mut events, at, "message", "visitor");
                at += self.rng.range(5_000, 40_000);
            }
            let waited = if left { self.rng.range(20_000, 110_000) } else { 120_000 };
            k.missed = Some((if left { "left" } else { "waited" }, waited, created_at + waited));
            at = at.max(created_at + waited) + self.rng.range(1_000, 300_000);
            event(&mut events, at, "closed", "visitor");
            k.closed_at = Some(at);
        } else {
            // Answered: assigned, a first reply after a wait, a talk, a close,
            // and maybe a rating.
            k.agent_id = Some(agent.clone());
            let rated = n >= 5 && self.rng.percent(35);
            let talk = n - 3 - usize::from(rated);
            event(&mut events, at, "message", "visitor");
            at += self.rng.range(500, 30_000);
            event(&mut events, at, "assigned", "system");
            k.assigned_at = Some(at);
            // Waits: mostly seconds, a tail of minutes.
            at += if self.rng.percent(85) { self.rng.range(3_000, 60_000) } else { self.rng.range(60_000, 600_000) };
            for i in 0..talk {
                if i > 0 && self.rng.percent(15) {
                    event(&mut events, at, "read", if i % 2 == 0 { "agent" } else { "visitor" });
                } else {
                    event(&mut events, at, "message", if i % 2 == 0 { "agent" } else { "visitor" });
                }
                at += self.rng.range(4_000, 90_000);
            }
            event(&mut events, at, "closed", "agent");
            k.closed_at = Some(at);
            if rated {
                at += self.rng.range(2_000, 60_000);
                let score = match self.rng.range(0, 9) {
                    0..=6 => 5,
                    7 => 1,
                    _ => self.rng.range(1, 5),
                };
                let rating = if score >= 4 { "good" } else { "bad" };
                events.push(SeedEvent {
                    id: new_id(),
                    kind: "rating",
                    author_kind: "visitor",
                    author_id: Some(visitor.clone()),
                    client_id: Some("rating".into()),
                    body: None,
                    data: format!("{{\"rating\":\"{rating}\",\"score\":{score}}}"),
                    created_at: at,
                });
                k.score = Some(score);
            }
        }
        k.events = events;
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(20_541), "2026-03-29");
        assert_eq!(civil(-1), "1969-12-31");
    }
}
