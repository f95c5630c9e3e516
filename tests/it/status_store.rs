//! The status page's store, one test body per case run against both
//! backends: SQLite in a temporary directory and PostgreSQL in a fresh
//! database, where `a` and `b` are two connection pools (two "nodes").

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use holdfast_server::status::error::Error;
use holdfast_server::store::now_ms;
use holdfast_server::store::postgres::PostgresStore;
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::status::{
    AffectedComponent, ComponentFields, ComponentStatus, Impact, IncidentKind, IncidentStatus, IncidentWrite,
    StatusStore, SubscriberKind,
};

use crate::services::{Keep, TestDb, both_stores};
use crate::support::WAIT;

struct Backend {
    a: Arc<dyn StatusStore>,
    b: Arc<dyn StatusStore>,
    _keep: Keep,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StatusStore> = Arc::new(SqliteStore::open(dir.path()).await.unwrap().status_store());
    Backend { a: store.clone(), b: store, _keep: Keep::Dir(dir) }
}

async fn postgres() -> Backend {
    let db = TestDb::create().await;
    let a: Arc<dyn StatusStore> = Arc::new(PostgresStore::connect(&db.url, 4).await.unwrap().status_store());
    let b: Arc<dyn StatusStore> = Arc::new(PostgresStore::connect(&db.url, 4).await.unwrap().status_store());
    Backend { a, b, _keep: Keep::Db(db) }
}

both_stores!(
    components_are_seeded_once_and_keep_their_fields,
    an_incident_and_its_components_are_written_in_one_transaction,
    each_queued_notification_is_claimed_by_one_runner_until_its_lease_ends,
    monitors_keep_their_check_state_and_probes_roll_up_per_day,
    one_process_leads_at_a_time,
);

/// A new incident (or, with a maintenance status, maintenance) write.
fn open(name: &str, status: IncidentStatus, components: Vec<(String, ComponentStatus)>) -> IncidentWrite {
    IncidentWrite {
        incident_id: None,
        kind: status.kind(),
        name: Some(name.into()),
        status,
        impact: None,
        body: format!("{name}: {}", status.as_str()),
        components,
        scheduled_for: None,
        scheduled_until: None,
        auto: false,
    }
}

fn update(id: &str, status: IncidentStatus, components: Vec<(String, ComponentStatus)>) -> IncidentWrite {
    IncidentWrite { incident_id: Some(id.into()), name: None, ..open("", status, components) }
}

async fn component_ids(store: &dyn StatusStore) -> Vec<String> {
    store.components().await.unwrap().into_iter().map(|c| c.id).collect()
}

async fn components_are_seeded_once_and_keep_their_fields(s: Backend) {
    let (x, y) = tokio::join!(s.a.seed_components(&["One", "Two"]), s.b.seed_components(&["One", "Two"]));
    assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|seeded| **seeded).count(), 1, "seeded once");
    assert!(!s.a.seed_components(&["Three"]).await.unwrap(), "never again");
    let names: Vec<String> = s.b.components().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["One", "Two"]);
    let (p, q) = tokio::join!(s.a.page_id(), s.b.page_id());
    assert_eq!(p.unwrap(), q.unwrap(), "one page id");

    let fields = ComponentFields {
        description: Some(Some("The API".into())),
        group: Some(Some("Backend".into())),
        only_show_if_degraded: Some(true),
        ..Default::default()
    };
    let api = s.a.create_component("Api", fields).await.unwrap();
    assert_eq!((api.position, api.status), (3, ComponentStatus::Operational));
    assert_eq!((api.description.as_deref(), api.group.as_deref()), (Some("The API"), Some("Backend")));
    assert!(api.only_show_if_degraded);
    assert!(matches!(s.b.create_component("Api", ComponentFields::default()).await, Err(Error::Conflict(_))));
    let rename = ComponentFields { name: Some("One".into()), ..Default::default() };
    assert!(matches!(s.b.update_component(&api.id, rename).await, Err(Error::Conflict(_))));
    let moved =
        s.b.update_component(&api.id, ComponentFields { position: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!((moved.position, moved.group.as_deref(), moved.only_show_if_degraded), (0, Some("Backend"), true));
    assert_eq!(s.a.components().await.unwrap()[0].id, api.id, "ordered by position");
    assert!(matches!(s.a.update_component("nope", ComponentFields::default()).await, Err(Error::NotFound(_))));

    let before = s.a.status_version().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (down, old) = s.a.set_component_status(&api.id, ComponentStatus::MajorOutage).await.unwrap();
    assert_eq!((down.status, old), (ComponentStatus::MajorOutage, ComponentStatus::Operational));
    let (_, old) = s.b.set_component_status(&api.id, ComponentStatus::PartialOutage).await.unwrap();
    assert_eq!(old, ComponentStatus::MajorOutage, "the state it replaced");
    assert!(s.b.status_version().await.unwrap() > before, "the version moves with the page");
    assert!(matches!(s.a.set_component_status("nope", ComponentStatus::Operational).await, Err(Error::NotFound(_))));
    assert_eq!(s.b.component(&api.id).await.unwrap().unwrap().status, ComponentStatus::PartialOutage);
    assert!(s.b.component("nope").await.unwrap().is_none());
}

async fn an_incident_and_its_components_are_written_in_one_transaction(s: Backend) {
    s.a.seed_components(&["Web", "Api"]).await.unwrap();
    let ids = component_ids(s.a.as_ref()).await;
    let (web, api) = (ids[0].clone(), ids[1].clone());

    let mut first = open("Web down", IncidentStatus::Investigating, vec![(web.clone(), ComponentStatus::MajorOutage)]);
    first.auto = true;
    let first = s.a.write_incident(first).await.unwrap();
    assert_eq!((first.kind, first.impact, first.auto), (IncidentKind::Incident, Impact::None, true));
    assert_eq!(first.components, std::slice::from_ref(&web));
    assert_eq!(first.updates.len(), 1);
    assert_eq!(
        first.updates[0].affected,
        [AffectedComponent {
            code: web.clone(),
            name: "Web".into(),
            old_status: ComponentStatus::Operational,
            new_status: ComponentStatus::MajorOutage
        }]
    );
    assert_eq!((first.monitoring_at, first.resolved_at), (None, None));
    assert_eq!(s.b.component(&web).await.unwrap().unwrap().status, ComponentStatus::MajorOutage);

    // An unknown component fails the whole write: nothing is left behind.
    let broken = open(
        "Broken",
        IncidentStatus::Identified,
        vec![(api.clone(), ComponentStatus::PartialOutage), ("nope".into(), ComponentStatus::MajorOutage)],
    );
    assert!(matches!(s.b.write_incident(broken).await, Err(Error::NotFound(_))));
    assert_eq!(s.a.incidents(IncidentKind::Incident, false, 100).await.unwrap().len(), 1);
    assert_eq!(s.a.component(&api).await.unwrap().unwrap().status, ComponentStatus::Operational);
    let nameless = IncidentWrite { name: None, ..open("", IncidentStatus::Investigating, vec![]) };
    assert!(matches!(s.a.write_incident(nameless).await, Err(Error::BadRequest(_))));

    // An update from the other node: new states, the old ones recorded.
    let mut monitoring = update(
        &first.id,
        IncidentStatus::Monitoring,
        vec![(web.clone(), ComponentStatus::Operational), (api.clone(), ComponentStatus::DegradedPerformance)],
    );
    monitoring.impact = Some(Impact::Major);
    let monitoring = s.b.write_incident(monitoring).await.unwrap();
    assert_eq!((monitoring.status, monitoring.impact), (IncidentStatus::Monitoring, Impact::Major));
    assert!(monitoring.monitoring_at.is_some());
    assert_eq!(monitoring.components, [web.clone(), api.clone()], "by position");
    assert_eq!(monitoring.updates.len(), 2, "oldest first");
    assert_eq!(monitoring.updates[1].affected[0].old_status, ComponentStatus::MajorOutage);
    assert_eq!(monitoring.updates[1].affected[1].old_status, ComponentStatus::Operational);
    let wrong_kind = update(&first.id, IncidentStatus::Scheduled, vec![]);
    assert!(matches!(s.a.write_incident(wrong_kind).await, Err(Error::BadRequest(_))));
    let unknown = update("nope", IncidentStatus::Resolved, vec![]);
    assert!(matches!(s.a.write_incident(unknown).await, Err(Error::NotFound(_))));
    let resolved = s.a.write_incident(update(&first.id, IncidentStatus::Resolved, vec![])).await.unwrap();
    assert!(resolved.resolved_at.is_some());
    assert_eq!(resolved.monitoring_at, monitoring.monitoring_at, "kept");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = s.b.write_incident(open("Later", IncidentStatus::Investigating, vec![])).await.unwrap();
    let all: Vec<String> =
        s.a.incidents(IncidentKind::Incident, false, 10).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(all, [later.id.clone(), first.id.clone()], "newest first");
    let open_ones = s.a.incidents(IncidentKind::Incident, true, 10).await.unwrap();
    assert_eq!(open_ones.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [later.id.as_str()]);
    assert_eq!(s.b.incidents(IncidentKind::Incident, false, 1).await.unwrap().len(), 1, "limit");

    let postmortem = s.b.set_postmortem(&first.id, "## What happened").await.unwrap();
    assert_eq!(postmortem.status, IncidentStatus::Postmortem);
    assert_eq!(postmortem.postmortem.as_deref(), Some("## What happened"));
    assert!(matches!(s.a.set_postmortem("nope", "x").await, Err(Error::NotFound(_))));

    let from = now_ms() + 3_600_000;
    let mut maintenance = open("Upgrade", IncidentStatus::Scheduled, vec![(api.clone(), ComponentStatus::Operational)]);
    (maintenance.scheduled_for, maintenance.scheduled_until) = (Some(from), Some(from + 3_600_000));
    let maintenance = s.a.write_incident(maintenance).await.unwrap();
    assert_eq!((maintenance.kind, maintenance.impact), (IncidentKind::Maintenance, Impact::Maintenance));
    assert_eq!((maintenance.started_at, maintenance.scheduled_until), (from, Some(from + 3_600_000)));
    assert!(matches!(s.a.set_postmortem(&maintenance.id, "x").await, Err(Error::NotFound(_))), "incidents only");
    assert_eq!(s.b.incidents(IncidentKind::Maintenance, true, 10).await.unwrap().len(), 1);
    assert_eq!(s.b.incident(&maintenance.id).await.unwrap().unwrap().name, "Upgrade");
    assert!(s.b.incident("nope").await.unwrap().is_none());
}

async fn each_queued_notification_is_claimed_by_one_runner_until_its_lease_ends(s: Backend) {
    let hook = s.a.add_subscriber(SubscriberKind::Webhook, "http://hooks.example/1", Some("key"), true).await.unwrap();
    let again = s.b.add_subscriber(SubscriberKind::Webhook, "http://hooks.example/1", Some("other"), true).await;
    let again = again.unwrap();
    assert_eq!((again.id.as_str(), again.secret.as_deref()), (hook.id.as_str(), Some("key")), "the same one");
    let mail = s.a.add_subscriber(SubscriberKind::Email, "reader@example.com", None, false).await.unwrap();
    assert!(mail.confirmed_at.is_none());
    assert_eq!(s.a.enqueue_notification("webhook 1", "email 1").await.unwrap(), 1, "confirmed subscribers only");
    let confirmed = s.b.confirm_subscriber(&mail.token).await.unwrap().unwrap();
    assert!(confirmed.confirmed_at.is_some());
    let twice = s.a.confirm_subscriber(&mail.token).await.unwrap().unwrap();
    assert_eq!(twice.confirmed_at, confirmed.confirmed_at, "the first confirmation stands");
    assert!(s.a.confirm_subscriber("forged").await.unwrap().is_none());
    assert_eq!(s.b.enqueue_notification("webhook 2", "email 2").await.unwrap(), 2);
    s.a.enqueue_delivery(&mail.id, "confirm link").await.unwrap();

    // Two runners claim at once: each delivery goes to one of them.
    let now = now_ms();
    let lease = now + 60_000;
    let (x, y) = tokio::join!(s.a.claim_deliveries(now, lease, 10), s.b.claim_deliveries(now, lease, 10));
    let claimed: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).collect();
    let ids: HashSet<&str> = claimed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!((claimed.len(), ids.len()), (4, 4), "every one once");
    let mut sent: Vec<(&str, &str)> =
        claimed.iter().map(|d| (d.subscriber.target.as_str(), d.payload.as_str())).collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("http://hooks.example/1", "webhook 1"),
            ("http://hooks.example/1", "webhook 2"),
            ("reader@example.com", "confirm link"),
            ("reader@example.com", "email 2"),
        ]
    );
    let hook_delivery = claimed.iter().find(|d| d.subscriber.kind == SubscriberKind::Webhook).unwrap();
    assert_eq!(hook_delivery.subscriber.secret.as_deref(), Some("key"));
    assert!(s.b.claim_deliveries(now + 1000, lease, 10).await.unwrap().is_empty(), "leased");

    // The lease ends with nothing relayed (the relay died): claimed again.
    let retaken = s.a.claim_deliveries(lease + 1, lease + 60_000, 10).await.unwrap();
    assert_eq!(retaken.len(), 4);
    assert!(retaken.iter().all(|d| d.created_at >= now - 60_000 && d.created_at <= now_ms()), "when it was caused");
    let [relayed, failing, given_up, forgotten] = &retaken[..] else { unreachable!() };
    let handed: Vec<String> = [relayed, failing, given_up].iter().map(|d| d.id.clone()).collect();
    s.b.deliveries_relayed(&handed, lease + 2).await.unwrap();
    // The outbox reports how its attempts went; that claims nothing again.
    s.a.delivery_done(&relayed.id, lease + 3).await.unwrap();
    s.b.delivery_failed(&failing.id, "receiver answered 500", Some(lease + 70_000)).await.unwrap();
    s.a.delivery_failed(&given_up.id, "bad address", None).await.unwrap();
    let due: Vec<_> = s.b.claim_deliveries(lease + 70_000, lease + 130_000, 1).await.unwrap();
    let left: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(left, [forgotten.id.as_str()], "only the one never relayed");
    assert!(s.a.claim_deliveries(lease + 70_000, lease + 130_000, 10).await.unwrap().is_empty());
    let errors: Vec<(String, Option<String>)> =
        s.a.subscribers().await.unwrap().into_iter().map(|s| (s.target, s.delivery_error)).collect();
    let failing_target = failing.subscriber.target.clone();
    assert!(
        errors.iter().any(|(t, e)| *t == failing_target && e.is_some()),
        "the outbox's last error reaches the subscriber list: {errors:?}"
    );
    let found = s.b.subscriber(&hook.id).await.unwrap().expect("found by id");
    assert_eq!((found.target.as_str(), found.secret.as_deref()), ("http://hooks.example/1", Some("key")));
    assert!(s.b.subscriber("nope").await.unwrap().is_none());

    assert!(s.b.remove_subscriber(&hook.token).await.unwrap());
    assert!(!s.a.remove_subscriber(&hook.token).await.unwrap());
    let left: Vec<String> = s.a.subscribers().await.unwrap().into_iter().map(|s| s.target).collect();
    assert_eq!(left, ["reader@example.com"]);
    let far = lease + 1_000_000;
    let rest = s.b.claim_deliveries(far, far + 1, 10).await.unwrap();
    assert!(rest.iter().all(|d| d.subscriber.id == mail.id), "a removed subscriber's queue goes with it");
}

async fn monitors_keep_their_check_state_and_probes_roll_up_per_day(s: Backend) {
    s.a.seed_components(&["Web"]).await.unwrap();
    let web = component_ids(s.a.as_ref()).await.remove(0);
    let tcp = s.a.create_monitor("Web TCP", &web, "tcp://127.0.0.1:9", 5000, false).await.unwrap();
    assert_eq!((tcp.failures, tcp.last_check_at, tcp.last_failure_at, tcp.builtin), (0, None, None, false));
    assert!(matches!(s.b.create_monitor("Web TCP", &web, "tcp://x:1", 5000, false).await, Err(Error::Conflict(_))));
    // Built-in probes are re-pointed, never duplicated, and never replace
    // an operator's monitor of the same name.
    let probe = s.a.create_monitor("Readiness", &web, "http://node-a/readyz", 1000, true).await.unwrap();
    let moved = s.b.create_monitor("Readiness", &web, "http://node-b/readyz", 2000, true).await.unwrap();
    assert_eq!((moved.id, moved.target.as_str(), moved.interval_ms), (probe.id, "http://node-b/readyz", 2000));
    let kept = s.b.create_monitor("Web TCP", &web, "http://elsewhere/", 1000, true).await.unwrap();
    assert_eq!((kept.target.as_str(), kept.builtin), ("tcp://127.0.0.1:9", false));
    let names: Vec<String> = s.a.monitors().await.unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["Readiness", "Web TCP"], "built-in first");

    s.a.record_check(&tcp.id, 1000, 1, Some("connect failed")).await.unwrap();
    s.b.record_check(&tcp.id, 2000, 2, Some("connect timed out")).await.unwrap();
    s.a.record_check(&tcp.id, 3000, 0, None).await.unwrap();
    let after = s.b.monitors().await.unwrap().into_iter().find(|m| m.id == tcp.id).unwrap();
    assert_eq!((after.failures, after.last_check_at, after.last_failure_at), (0, Some(3000), Some(2000)));
    assert_eq!(after.last_error.as_deref(), Some("connect timed out"), "the last failure's reason stays");
    s.b.record_check(&tcp.id, 4000, 1, Some("refused")).await.unwrap();
    let after = s.a.monitors().await.unwrap().into_iter().find(|m| m.id == tcp.id).unwrap();
    assert_eq!((after.failures, after.last_failure_at, after.last_error.as_deref()), (1, Some(4000), Some("refused")));

    let day = 20_000;
    let at = day * 86_400_000 + 5;
    let probes = (0..8).map(|i| {
        let store = if i % 2 == 0 { s.a.clone() } else { s.b.clone() };
        let web = web.clone();
        async move { store.record_probe(&web, at, i != 3).await }
    });
    for r in futures_util::future::join_all(probes).await {
        r.unwrap();
    }
    s.a.record_probe(&web, at - 86_400_000, false).await.unwrap();
    let days = s.b.uptime(day - 1).await.unwrap();
    let summary: Vec<(i64, i64, i64)> = days.iter().map(|d| (d.day, d.ok, d.total)).collect();
    assert_eq!(summary, [(day - 1, 0, 1), (day, 7, 8)]);
    assert_eq!(s.a.uptime(day).await.unwrap().len(), 1, "since that day");
}

async fn one_process_leads_at_a_time(s: Backend) {
    let mut lead = s.a.try_lead().await.unwrap().expect("nobody leads yet");
    assert!(s.b.try_lead().await.unwrap().is_none(), "the other waits");
    assert!(s.a.try_lead().await.unwrap().is_none(), "and so does a second try of the holder");
    assert!(lead.still_held().await);
    drop(lead);
    let started = tokio::time::Instant::now();
    let mut next = loop {
        if let Some(lead) = s.b.try_lead().await.unwrap() {
            break lead;
        }
        assert!(started.elapsed() < WAIT, "the lead was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(next.still_held().await);
    assert!(s.a.try_lead().await.unwrap().is_none());
}

/// A raw connection to a file of a SQLite data dir.
async fn raw(file: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(file).create_if_missing(true);
    sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
}

async fn tables(file: &std::path::Path) -> Vec<String> {
    let db = raw(file).await;
    let names = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'status%'")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    names
}

/// A data dir from before `status.sqlite` kept the status page in the chat
/// file: its first start under this version copies every row over once,
/// and drops the tables from the chat file.
#[tokio::test]
async fn an_old_data_dirs_status_page_moves_to_a_file_of_its_own_once() {
    let dir = tempfile::tempdir().unwrap();
    let chat = dir.path().join("holdfast.db");
    let db = raw(&chat).await;
    let old = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/sqlite")).await.unwrap();
    old.run_to(9, &db).await.unwrap();
    for sql in [
        "INSERT INTO meta (key, value) VALUES ('status_page_id', 'page-1'), ('status_components_seeded', '1')",
        "INSERT INTO status_components (id, name, position, status, created_at, updated_at)
         VALUES ('c1', 'Chat widget', 1, 'partial_outage', 1, 2)",
        "INSERT INTO status_incidents (id, kind, name, status, impact, created_at, updated_at, started_at)
         VALUES ('i1', 'incident', 'Slow chat', 'identified', 'minor', 1, 2, 1)",
        "INSERT INTO status_incident_components (incident_id, component_id) VALUES ('i1', 'c1')",
        "INSERT INTO status_incident_updates (id, incident_id, status, body, created_at)
         VALUES ('u1', 'i1', 'identified', 'We know why', 2)",
        "INSERT INTO status_subscribers (id, kind, target, token, confirmed_at, created_at)
         VALUES ('s1', 'webhook', 'https://hooks.example/x', 'tok-1', 1, 1)",
        "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at) VALUES ('d1', 's1', '{}', 0, 1)",
        "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, created_at, failures, last_error)
         VALUES ('m1', 'Shop', 'c1', 'https://shop.example', 60000, 1, 2, 'timed out')",
        "INSERT INTO status_probe_days (component_id, day, ok, total) VALUES ('c1', 20000, 9, 10)",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;

    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    let store = sqlite.status_store();
    assert!(tables(&chat).await.is_empty(), "no status table is left in the chat file");
    assert_eq!(store.page_id().await.unwrap(), "page-1");
    assert!(!store.seed_components(&["Other"]).await.unwrap(), "seeded before the move");
    let components = store.components().await.unwrap();
    assert_eq!(components.len(), 1);
    assert_eq!((components[0].name.as_str(), components[0].status), ("Chat widget", ComponentStatus::PartialOutage));
    let incident = store.incident("i1").await.unwrap().unwrap();
    assert_eq!((incident.components, incident.updates.len()), (vec!["c1".to_owned()], 1));
    assert_eq!(store.subscribers().await.unwrap()[0].target, "https://hooks.example/x");
    assert_eq!(store.claim_deliveries(now_ms(), now_ms() + 60_000, 10).await.unwrap()[0].id, "d1");
    let monitor = store.monitors().await.unwrap().remove(0);
    assert_eq!((monitor.failures, monitor.last_error.as_deref()), (2, Some("timed out")));
    let days = store.uptime(0).await.unwrap();
    assert_eq!((days.len(), days[0].ok, days[0].total), (1, 9, 10));
    sqlite.close().await;

    // Once: a second start copies nothing again (and has nothing to copy).
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    let store = sqlite.status_store();
    assert_eq!(store.components().await.unwrap().len(), 1);
    assert_eq!(store.uptime(0).await.unwrap()[0].total, 10);
    sqlite.close().await;
}

/// The status page's writes do not wait for the chat file's write lock:
/// with it held (as the chat writer's group commits hold it nearly all the
/// time under load), a probe result is recorded at once.
#[tokio::test]
async fn status_writes_do_not_wait_while_chat_holds_its_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    let store = sqlite.status_store();
    store.seed_components(&["Chat widget"]).await.unwrap();
    let component = component_ids(&store).await.remove(0);
    let chat = raw(&dir.path().join("holdfast.db")).await;
    let mut busy = chat.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *busy).await.unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(WAIT, store.record_probe(&component, now_ms(), true)).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    sqlx::query("ROLLBACK").execute(&mut *busy).await.unwrap();
    drop(busy);
    chat.close().await;
    assert_eq!(store.uptime(0).await.unwrap()[0].total, 1);
    sqlite.close().await;
}
