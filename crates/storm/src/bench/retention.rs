//! `holdfast bench retention`: the retention job erasing a big history
//! while chat goes on. `--conversations` closed chats of `--messages`
//! messages each, all ended more than `--keep-days` days ago, are written
//! straight into a fresh store (`store::seed`, a batch per transaction:
//! SQLite in a temporary data dir, or a new PostgreSQL database with
//! `--database-url`); then a server in its own process runs the relay for
//! twice `--seconds`, in turns of `--turn-ms`: the site's policy off, then
//! set to `--keep-days` by its admin over HTTP, and so on. The job (every
//! second here) erases in its small batches while the policy is on, and
//! stops at its next batch once it is off; a turn with the policy lasts
//! until the job's run under way has ended. Message latency
//! without and with the job, interleaved in the same run, with what it
//! erased meanwhile and the relay's lost and doubled messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use holdfast_server::store::postgres::{self, PostgresStore};
use holdfast_server::store::seed::{SeedBatch, SeedConversation, SeedEvent, SeedVisitor};
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::{Availability, ConversationStatus, Role, Store, new_id, now_ms};

use crate::server::{Target, metric_in, metrics_text_at, provision, provision_store};
use crate::{finish, percentile};

/// Conversations written per transaction.
const BATCH: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

/// What `bench retention` is asked for.
#[derive(Args, Debug, Clone)]
pub struct Plan {
    /// Closed conversations to erase.
    #[arg(long, default_value_t = 100_000)]
    pub conversations: usize,
    /// Messages in each.
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
    /// The policy set in the turns with the job: conversations ended longer
    /// ago are erased (the history ends a day before that).
    #[arg(long, default_value_t = 30)]
    pub keep_days: u32,
    /// The relay beside the job (before, then while it erases).
    #[command(flatten)]
    pub relay: super::BesideRelay,
    /// PostgreSQL server to make a fresh database on (dropped at the end);
    /// without it, SQLite in a temporary data dir.
    #[arg(long)]
    pub database_url: Option<String>,
}

pub(super) async fn retention(plan: Plan) -> anyhow::Result<()> {
    anyhow::ensure!(plan.conversations > 0 && plan.messages > 0, "--conversations and --messages must be positive");
    anyhow::ensure!(plan.keep_days >= 1, "--keep-days must be at least 1");
    plan.relay.check()?;
    let store_name = if plan.database_url.is_some() { "postgres" } else { "sqlite" };
    eprintln!(
        "bench retention: {} conversations of {} messages to erase, {store_name}",
        plan.conversations, plan.messages
    );
    let dir = tempfile::tempdir()?;
    let outcome = match &plan.database_url {
        None => {
            let site = provision(dir.path(), plan.relay.pairs).await?;
            let store = SqliteStore::open(dir.path()).await.map_err(|e| anyhow!("cannot open the data dir: {e}"))?;
            seed(&plan, &store, &site.id, |b| store.seed_history(b)).await?;
            store.seed_finished().await.map_err(|e| anyhow!("{e:?}"))?;
            store.close().await;
            let data = dir.path().to_string_lossy().into_owned();
            measure(&plan, &["--data", &data], site.widget_key).await
        }
        Some(server) => {
            let name = format!("holdfast_bench_{}", new_id().replace('-', ""));
            let url = postgres::create_database(server, &name)
                .await
                .map_err(|e| anyhow!("cannot create a database on {server}: {e:?}"))?;
            let seeded = async {
                let store = PostgresStore::connect(&url, 4).await.map_err(|e| anyhow!("{e:?}"))?;
                let site = provision_store(&store, plan.relay.pairs).await?;
                let store = PostgresStore::connect(&url, 4).await.map_err(|e| anyhow!("{e:?}"))?;
                seed(&plan, &store, &site.id, |b| store.seed_history(b)).await?;
                store.seed_finished().await.map_err(|e| anyhow!("{e:?}"))?;
                store.close().await;
                let data = dir.path().to_string_lossy().into_owned();
                measure(&plan, &["--data", &data, "--database-url", &url], site.widget_key).await
            };
            let outcome = seeded.await;
            if let Err(e) = postgres::drop_database(server, &name).await {
                eprintln!("warning: could not drop the database {name}: {e:?}");
            }
            outcome
        }
    };
    let mut rows = outcome?;
    rows.insert(0, ("store", store_name.into()));
    rows.insert(0, ("scenario", "retention".into()));
    finish(&rows);
    Ok(())
}

/// Write the history: closed, answered conversations of `plan.messages`
/// messages, a visitor each, spread over the year before the cutoff. The
/// relay's agents stay the only ones online.
async fn seed<W, Fut>(plan: &Plan, store: &dyn Store, site_id: &str, write: W) -> anyhow::Result<()>
where
    W: Fn(SeedBatch) -> Fut,
    Fut: Future<Output = holdfast_server::error::Result<()>>,
{
    let fail = |e: holdfast_server::error::Error| anyhow!("{e:?}");
    let group = store.groups(site_id).await.map_err(fail)?.into_iter().next().ok_or_else(|| anyhow!("no group"))?;
    let agent = store
        .agents(site_id)
        .await
        .map_err(fail)?
        .into_iter()
        .find(|a| a.role == Role::Agent)
        .ok_or_else(|| anyhow!("no agent"))?;
    let end = now_ms() - (i64::from(plan.keep_days) + 1) * DAY_MS;
    let span = 365 * DAY_MS;
    let step = span / plan.conversations as i64;
    let started = Instant::now();
    let mut made = 0;
    while made < plan.conversations {
        let n = BATCH.min(plan.conversations - made);
        let mut batch = SeedBatch { site_id: site_id.to_owned(), ..SeedBatch::default() };
        for i in made..made + n {
            let created_at = end - span + i as i64 * step;
            let visitor = new_id();
            batch.visitors.push(SeedVisitor { id: visitor.clone(), first_seen: created_at, last_seen: created_at });
            batch.conversations.push(conversation(plan.messages, created_at, &group.id, &agent.id, visitor));
        }
        write(batch).await.map_err(fail)?;
        made += n;
        crate::scenarios::progress(&format!("history: {made} conversations"));
    }
    eprintln!();
    eprintln!("history written in {:.1} s", started.elapsed().as_secs_f64());
    for a in store.agents(site_id).await.map_err(fail)? {
        if a.role == Role::Agent {
            store.set_availability(&a.id, Availability::Offline).await.map_err(fail)?;
        }
    }
    Ok(())
}

/// A visitor's question, an assignment, `messages` messages in turn, and a
/// close, a second apart.
fn conversation(messages: usize, created_at: i64, group: &str, agent: &str, visitor: String) -> SeedConversation {
    let mut events = Vec::with_capacity(messages + 2);
    let mut push = |kind: &'static str, who: &'static str, body: Option<String>| {
        let seq = events.len() + 1;
        let author_id = match who {
            "visitor" => Some(visitor.clone()),
            "agent" => Some(agent.to_owned()),
            _ => None,
        };
        let data = if kind == "assigned" { format!("{{\"agent_id\":\"{agent}\"}}") } else { "{}".to_owned() };
        let client_id = body.as_ref().map(|_| format!("c{seq}"));
        events.push(SeedEvent {
            id: new_id(),
            kind,
            author_kind: who,
            author_id,
            client_id,
            body,
            data,
            created_at: created_at + seq as i64 * 1000,
        });
    };
    push("message", "visitor", Some("Hello, is my order on its way to Canada?".into()));
    push("assigned", "system", None);
    for i in 1..messages {
        let who = if i % 2 == 1 { "agent" } else { "visitor" };
        push("message", who, Some(format!("message {i} of a chat the retention policy will erase")));
    }
    push("closed", "agent", None);
    let closed_at = created_at + events.len() as i64 * 1000;
    SeedConversation {
        id: new_id(),
        visitor_id: visitor,
        group_id: group.to_owned(),
        agent_id: Some(agent.to_owned()),
        status: ConversationStatus::Closed,
        offline: false,
        created_at,
        assigned_at: Some(created_at + 2000),
        closed_at: Some(closed_at),
        events,
        score: None,
        missed: None,
    }
}

/// The relay for twice `seconds` on a server started with `args`, in
/// turns: the policy off, then on, and so on.
async fn measure(plan: &Plan, args: &[&str], widget_key: String) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut args = args.to_vec();
    args.extend(["--retention-every-secs", "1"]);
    let target = Target::serve(&args, widget_key).await?;
    let policy = Policy::of(&target).await?;
    let (began, relay_began) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let turns = {
        let (stop, turn_ms, keep_days) = (stop.clone(), plan.relay.turn_ms as i64, plan.keep_days);
        tokio::spawn(async move {
            let mut busy = Vec::new();
            let Ok(from) = relay_began.await else { return anyhow::Ok(busy) };
            let mut quiet_from = from;
            loop {
                let (start, end) = super::sleep_through_quiet_turn(quiet_from, turn_ms).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                policy.set(keep_days).await?;
                super::sleep_until_ms(end).await;
                policy.set(0).await?;
                // The batch under way when the policy went off still
                // ends: the turn lasts until the job's run is over.
                quiet_from = policy.settled(end).await?;
                busy.push((start, quiet_from));
            }
            anyhow::Ok(busy)
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
    let busy_spans = turns.await??;
    let relay = relay?;
    let erased = target.metric("holdfast_retention_expired_conversations_total").await?;
    let erased_messages = target.metric("holdfast_retention_expired_messages_total").await?;
    anyhow::ensure!(erased > 0.0, "the retention job erased nothing while the relay ran");
    anyhow::ensure!(
        erased < plan.conversations as f64,
        "the job erased the whole history before the relay ended: its last turns had nothing to erase; \
         give more --conversations"
    );
    plan.relay.dump(&relay.samples, "erasing", &busy_spans)?;
    let (mut quiet, mut busy) = super::BesideRelay::split(&relay.samples, &busy_spans)?;
    let (p99_quiet, p99_busy) = (percentile(&mut quiet, 99.0), percentile(&mut busy, 99.0));
    let busy_s = busy_spans.iter().map(|(start, end)| end - start).sum::<i64>() as f64 / 1000.0;
    let (_, storage_errors, _) = target.log.counts();
    Ok(vec![
        ("conversations", plan.conversations.to_string()),
        ("messages_each", plan.messages.to_string()),
        ("relay_pairs", plan.relay.pairs.to_string()),
        ("relay_rate", plan.relay.rate.to_string()),
        ("relay_seconds", (2 * plan.relay.seconds).to_string()),
        ("turn_ms", plan.relay.turn_ms.to_string()),
        ("erased_conversations", format!("{erased:.0}")),
        ("erased_messages", format!("{erased_messages:.0}")),
        ("erasing_s", format!("{busy_s:.1}")),
        ("erased_per_s", format!("{:.0}", erased / busy_s.max(0.001))),
        ("messages_quiet", quiet.len().to_string()),
        ("messages_while_erasing", busy.len().to_string()),
        ("p99_quiet_ms", format!("{p99_quiet:.2}")),
        ("p99_while_erasing_ms", format!("{p99_busy:.2}")),
        ("p99_ratio", format!("{:.2}", p99_busy / p99_quiet.max(0.01))),
        ("lost", relay.lost.to_string()),
        ("duplicated", relay.duplicated.to_string()),
        ("storage_errors", storage_errors.to_string()),
    ])
}

/// The site's retention policy, set by its admin over HTTP as in the
/// console, and the job's count of what it erased.
struct Policy {
    http: reqwest::Client,
    base: String,
    token: String,
    settings: serde_json::Value,
}

impl Policy {
    async fn of(target: &Target) -> anyhow::Result<Policy> {
        let (http, base, token) = (target.http.clone(), target.base.clone(), target.admin_token.clone());
        let site: serde_json::Value =
            http.get(format!("{base}/api/v1/admin/site")).bearer_auth(&token).send().await?.json().await?;
        Ok(Policy { http, base, token, settings: site["settings"].clone() })
    }

    /// Keep ended chats `days` (0: for ever).
    async fn set(&self, days: u32) -> anyhow::Result<()> {
        let mut settings = self.settings.clone();
        settings["retention_days"] = serde_json::json!(days);
        let url = format!("{}/api/v1/admin/site/settings", self.base);
        let res = self.http.put(url).bearer_auth(&self.token).json(&settings).send().await?;
        anyhow::ensure!(res.status().is_success(), "the policy was refused: {}", res.text().await?);
        Ok(())
    }

    /// When the job's run under way as the policy went off (at `since`,
    /// Unix ms) has ended: the first run the job ends after that, whatever
    /// its outcome. The run finishes the batch it is in (counted only as
    /// that batch ends: on SQLite 25 chats at 2% of the writer, about a
    /// second on a quiet machine, many under a loaded one), then reads
    /// the policy off and stops, so nothing is erased after this.
    async fn settled(&self, since: i64) -> anyhow::Result<i64> {
        let before = self.runs().await?;
        while self.runs().await? == before {
            anyhow::ensure!(
                now_ms() - since < RUN_ENDS_WITHIN_MS,
                "the retention job's run did not end within {RUN_ENDS_WITHIN_MS} ms of its policy going off"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(now_ms().max(since))
    }

    /// The job's runs ended so far, well or not.
    async fn runs(&self) -> anyhow::Result<f64> {
        let text = metrics_text_at(&self.http, &self.base).await?;
        let ended = ["holdfast_retention_runs_total", "holdfast_retention_errors_total"];
        Ok(ended.iter().map(|name| metric_in(&text, name, &[])).sum())
    }
}

/// How long a run of the job may take to end once its policy is off: its
/// batch in flight at the job's pace, on a machine busy with CI's tests.
const RUN_ENDS_WITHIN_MS: i64 = 60_000;
