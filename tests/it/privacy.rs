//! A person's data, through the real server on SQLite and PostgreSQL: an
//! admin exports everything kept about a visitor (details, address,
//! conversations with every event, bans) as one JSON document; agents and
//! another site's admins cannot; the export is audited; and the operator
//! gets the same document from the command line. Erasure removes the
//! visitor's details and words for good, leaves tombstones a resuming
//! client reads without error, drops the email not yet sent, and is
//! audited.

use std::process::Command;

use holdfast_server::store::VisitorUpdate;
use serde_json::{Value, json};

use crate::outbox::admin;
use crate::services::{Node, both_stores};
use crate::support::{Client, TestServer};

/// Email goes to a relay nobody listens on: deliveries stay queued, as
/// undelivered email does while a relay is down.
fn dead_relay(c: &mut holdfast_server::config::Config) {
    c.status.smtp = Some(crate::outbox::relay(crate::outbox::free_port()));
}

async fn sqlite() -> Node {
    Node::sqlite(dead_relay).await
}

async fn postgres() -> Node {
    Node::postgres(dead_relay).await
}

const HOSTILE_NAME: &str = "<script>alert(1)</script> Eve";

/// Eve chats with Ann and is banned; returns Eve's id.
async fn arrange(s: &TestServer) -> String {
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (mut ann, ann_token) = s.online_agent("ann@shop.example").await;
    let (eve, token) = s.visitor(&site).await;
    let update =
        VisitorUpdate { name: Some(HOSTILE_NAME.into()), email: Some("eve@example.com".into()), ..Default::default() };
    s.state.store.update_visitor(&eve, update).await.unwrap();
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    let conv = visitor.say(None, "e1", "my order 1234 is late").await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "message" && f["conv"] == conv.as_str()).await;
    assert_eq!(ann.say(Some(&conv), "a1", "Sorry Eve, on it").await["type"], "ack");
    let (status, _) = s.post("/api/v1/bans", Some(&ann_token), json!({"visitor_id": eve, "reason": "rude"})).await;
    assert_eq!(status, 201);
    eve
}

async fn an_admin_exports_a_visitors_data(node: Node) {
    let s = &node.server;
    let eve = arrange(s).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (ann, _) = s.login("ann@shop.example", "password123").await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;

    let path = format!("/api/v1/admin/visitors/{eve}/export");
    let res = s.http.get(format!("{}{path}", s.base)).bearer_auth(&boss).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(disposition, format!("attachment; filename=\"visitor-{eve}.json\""));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["format"], 1);
    assert_eq!(doc["visitor"]["name"], HOSTILE_NAME);
    assert_eq!(doc["visitor"]["email"], "eve@example.com");
    assert_eq!(doc["visitor"]["last_ip"], "127.0.0.1");
    let conv = &doc["conversations"][0];
    assert_eq!(conv["status"], "closed", "the ban ended it: {conv}");
    let bodies: Vec<&str> = conv["events"].as_array().unwrap().iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, ["my order 1234 is late", "Sorry Eve, on it"]);
    let seqs: Vec<i64> = conv["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "every event, in order");
    assert_eq!(doc["bans"][0]["reason"], "rude");

    // An agent may not; another site's admin finds no such visitor.
    assert_eq!(s.get(&path, Some(&ann)).await.0, 403);
    assert_eq!(s.get(&path, Some(&olga)).await.0, 404);
    assert_eq!(s.get("/api/v1/admin/visitors/nobody/export", Some(&boss)).await.0, 404);
    let long = format!("/api/v1/admin/visitors/{}/export", "x".repeat(200));
    assert_eq!(s.get(&long, Some(&boss)).await.0, 404);
    assert_eq!(s.get(&path, None).await.0, 401);

    // The export is in the audit log.
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!(log[0]["action"], "visitor.exported");
    assert_eq!(log[0]["target"], eve.as_str());
}

async fn an_admin_erases_a_visitor_for_good(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (mut ann, ann_token) = s.online_agent("ann@shop.example").await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;

    // Zoe chats, gives her number, and asks for the transcript by email.
    let (zoe, token) = s.visitor(&site).await;
    let update =
        VisitorUpdate { name: Some("Zoe".into()), email: Some("zoe@example.com".into()), ..Default::default() };
    s.state.store.update_visitor(&zoe, update).await.unwrap();
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    let conv = visitor.say(None, "z1", "call me on 555-0100").await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "message" && f["conv"] == conv.as_str()).await;
    assert_eq!(ann.say(Some(&conv), "a1", "Will do, Zoe").await["type"], "ack");
    let asked = json!({"conv": conv, "to": "zoe@example.com"});
    let (status, body) = s.post("/api/v1/visitor/transcript", Some(&token), asked).await;
    assert_eq!(status, 202, "{body}");
    let (_, hits) = s.get("/api/v1/search?q=555-0100", Some(&ann_token)).await;
    assert_eq!(hits["chats"].as_array().unwrap().len(), 1);
    let (_, by_name) = s.get("/api/v1/search?q=zoe@example.com", Some(&ann_token)).await;
    assert_eq!(by_name["chats"][0]["conversation_id"], conv.as_str(), "{by_name}");

    // Agents and other sites' admins cannot erase her.
    let path = format!("/api/v1/admin/visitors/{zoe}/erase");
    assert_eq!(s.post(&path, Some(&ann_token), json!({})).await.0, 403);
    assert_eq!(s.post(&path, Some(&olga), json!({})).await.0, 404);
    assert_eq!(s.post("/api/v1/admin/visitors/nobody/erase", Some(&boss), json!({})).await.0, 404);

    let (status, erased) = s.post(&path, Some(&boss), json!({})).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["erased"]["messages"], 2, "{erased}");
    assert_eq!(erased["erased"]["deliveries"], 1, "{erased}");

    // Her details are gone; search no longer finds her words.
    let (_, v) = s.get(&format!("/api/v1/visitors/{zoe}"), Some(&ann_token)).await;
    for field in ["name", "email", "page_url", "referrer", "user_agent"] {
        assert!(v[field].is_null(), "{field}: {v}");
    }
    let (_, hits) = s.get("/api/v1/search?q=555-0100", Some(&ann_token)).await;
    assert_eq!(hits["chats"], json!([]));
    let (_, by_name) = s.get("/api/v1/search?q=zoe@example.com", Some(&ann_token)).await;
    assert_eq!(by_name["chats"], json!([]), "her address is forgotten by the index too");
    let (_, doc) = s.get(&format!("/api/v1/admin/visitors/{zoe}/export"), Some(&boss)).await;
    assert!(doc["visitor"]["last_ip"].is_null(), "{doc}");
    let text = doc.to_string();
    assert!(!text.contains("555-0100") && !text.contains("zoe@example.com") && !text.contains("Will do"), "{text}");

    // The email not yet sent is dropped, its contents gone.
    let (_, deliveries) = s.get("/api/v1/admin/deliveries", Some(&boss)).await;
    let mail = deliveries.as_array().unwrap().iter().find(|d| d["template"] == "transcript").expect("the transcript");
    assert_eq!(mail["status"], "failed", "{mail}");
    assert_eq!(mail["recipient"], "(erased)", "{mail}");

    // A client resuming with an old cursor gets tombstones, in order, no error.
    let cursors = std::collections::HashMap::from([(conv.clone(), 0)]);
    let mut again = Client::connect(s, "/api/v1/visitor/socket", &token, cursors).await;
    let first = again.wait_for(|f| f["type"] == "message" && f["seq"] == 1).await;
    assert_eq!((first["erased"].as_bool(), first.get("body")), (Some(true), None), "{first}");
    let reply = again.wait_for(|f| f["type"] == "message" && f["author"]["kind"] == "agent").await;
    assert_eq!(reply["erased"], true, "{reply}");
    let seqs: Vec<i64> = again.events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gap-free");

    // Erasing again removes nothing more; both are in the audit log.
    let (status, erased) = s.post(&path, Some(&boss), json!({})).await;
    assert_eq!((status, &erased["erased"]["messages"]), (200, &json!(0)));
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!((&log[0]["action"], &log[0]["target"]), (&json!("visitor.erased"), &json!(zoe)));
    let first = log.as_array().unwrap().iter().filter(|e| e["action"] == "visitor.erased").nth(1).unwrap();
    assert_eq!(first["after"]["messages"], 2, "{first}");
}

both_stores!(an_admin_exports_a_visitors_data, an_admin_erases_a_visitor_for_good);

/// Retention runs fast here: a "day" is 400 ms, the job every 100 ms.
fn quick_retention(c: &mut holdfast_server::config::Config) {
    dead_relay(c);
    c.retention.every = std::time::Duration::from_millis(100);
    c.retention.day = std::time::Duration::from_millis(400);
    c.retention.batch = 2;
}

/// A chat that ends: the visitor writes, Ann answers and closes it.
/// Returns (visitor id, conversation id).
async fn ended_chat(
    s: &TestServer,
    site: &holdfast_server::store::Site,
    ann: &mut Client,
    name: &str,
) -> (String, String) {
    let (visitor_id, token) = s.visitor(site).await;
    let update =
        VisitorUpdate { name: Some(name.into()), email: Some(format!("{name}@example.com")), ..Default::default() };
    s.state.store.update_visitor(&visitor_id, update).await.unwrap();
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    let words = format!("{name} here, my number is 555-0199");
    let conv = visitor.say(None, "v1", &words).await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "message" && f["conv"] == conv.as_str()).await;
    assert_eq!(ann.say(Some(&conv), &format!("a-{name}"), "Thanks, noted").await["type"], "ack");
    ann.send(json!({"type": "close", "conv": conv})).await;
    ann.wait_for(|f| f["type"] == "closed" && f["conv"] == conv.as_str()).await;
    (visitor_id, conv)
}

async fn bodies(s: &TestServer, token: &str, conv: &str) -> Vec<Value> {
    let (status, events) = s.get(&format!("/api/v1/conversations/{conv}/events"), Some(token)).await;
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().cloned().unwrap_or_else(|| events["events"].as_array().cloned().unwrap());
    events.iter().filter(|e| e["type"] == "message").map(|e| e.get("body").cloned().unwrap_or(Value::Null)).collect()
}

/// A site with its admin (Boss) and an agent online (Ann).
struct Shop {
    site: holdfast_server::store::Site,
    ann: Client,
    ann_token: String,
    boss: String,
}

impl Shop {
    async fn open(s: &TestServer) -> Shop {
        let site = s.site().await;
        admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
        s.agent(&site, "ann@shop.example", 10).await;
        let (ann, ann_token) = s.online_agent("ann@shop.example").await;
        let (boss, _) = s.login("boss@shop.example", "password123").await;
        Shop { site, ann, ann_token, boss }
    }
}

async fn a_sites_retention_erases_ended_chats_older_than_its_days(node: Node) {
    let s = &node.server;
    let Shop { site, mut ann, ann_token, boss } = Shop::open(s).await;

    // Three old chats (more than a batch) end; one is still open.
    let mut old = Vec::new();
    for name in ["zoe", "yan", "xia"] {
        old.push(ended_chat(s, &site, &mut ann, name).await);
    }
    let (_, open_token) = s.visitor(&site).await;
    let mut open_visitor = Client::connect(s, "/api/v1/visitor/socket", &open_token, Default::default()).await;
    let open = open_visitor.say(None, "o1", "still talking").await["conv"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;

    // Only an admin sets the policy, within bounds; it is audited.
    let (_, view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = view["settings"].clone();
    assert_eq!(settings["retention_days"], 0, "kept for ever unless set");
    settings["retention_days"] = json!(4000);
    let put = |token: &str, body: Value| {
        s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(token.to_owned()).json(&body).send()
    };
    let res = put(&boss, settings.clone()).await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.text().await.unwrap().contains("retention_days must be 0"));
    settings["retention_days"] = json!(2);
    assert_eq!(put(&ann_token, settings.clone()).await.unwrap().status().as_u16(), 403);
    assert_eq!(put(&boss, settings.clone()).await.unwrap().status().as_u16(), 200);
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!(log[0]["after"]["retention_days"], 2, "{}", log[0]);

    // The job erases the old chats' words, then their visitors' details,
    // one paced unit at a time; the rest stay.
    let start = std::time::Instant::now();
    loop {
        let mut erased = 0;
        for (visitor_id, conv) in &old {
            let words_gone = bodies(s, &ann_token, conv).await.iter().all(Value::is_null);
            let (_, v) = s.get(&format!("/api/v1/visitors/{visitor_id}"), Some(&ann_token)).await;
            erased += usize::from(words_gone && v["name"].is_null() && v["email"].is_null());
        }
        if erased == old.len() {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "retention never ran: {erased} erased");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (_, conv) in &old {
        assert_eq!(bodies(s, &ann_token, conv).await.len(), 2, "tombstones keep the seqs");
    }
    // A recent chat, ended after the old ones were erased, within the
    // cutoff of two 400 ms days for the next few runs of the job (every
    // 100 ms). (Ended before the policy was set, it could age past the
    // cutoff while PostgreSQL's paced job still rested between batches.)
    let (_, recent) = ended_chat(s, &site, &mut ann, "wes").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, hits) = s.get("/api/v1/search?q=555-0199", Some(&ann_token)).await;
    assert_eq!(hits["chats"].as_array().unwrap().len(), 1, "only the recent chat is found: {hits}");
    assert_eq!(
        bodies(s, &ann_token, &recent).await,
        [json!("wes here, my number is 555-0199"), json!("Thanks, noted")]
    );
    assert_eq!(bodies(s, &ann_token, &open).await, [json!("still talking")], "an open chat is never expired");
    drop(open_visitor);
}

/// A policy lengthened while the job is catching up takes effect at its
/// next batch: an admin who set too few days by mistake does not watch
/// the rest of the history go under the old policy.
async fn a_policy_lengthened_mid_run_stops_the_erasing_at_the_next_batch(node: Node) {
    let s = &node.server;
    let Shop { site, mut ann, ann_token, boss } = Shop::open(s).await;
    // Six old chats: three batches of two, the job resting 1.5 s between.
    let mut old = Vec::new();
    for name in ["zoe", "yan", "xia", "wes", "vic", "uma"] {
        old.push(ended_chat(s, &site, &mut ann, name).await.1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let (_, view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = view["settings"].clone();
    let mut put = |days: u32| {
        settings["retention_days"] = json!(days);
        s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(&boss).json(&settings).send()
    };
    assert_eq!(put(2).await.unwrap().status().as_u16(), 200);
    let erased = async || {
        let mut n = 0;
        for conv in &old {
            n += usize::from(bodies(s, &ann_token, conv).await.iter().all(Value::is_null));
        }
        n
    };
    let start = std::time::Instant::now();
    while erased().await == 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "retention never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Lengthened during the first batch's rest: under the old policy the
    // other two batches would be gone within 3.5 s.
    assert_eq!(put(3650).await.unwrap().status().as_u16(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    assert_eq!(erased().await, 2, "only the batch under way when the policy changed");
}

async fn another_sites_policy_is_not_this_sites(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    s.agent(&site, "ann@shop.example", 10).await;
    let (mut ann, ann_token) = s.online_agent("ann@shop.example").await;
    let (_, kept) = ended_chat(s, &site, &mut ann, "zoe").await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    s.agent(&other, "oz@other.example", 10).await;
    let (mut oz, oz_token) = s.online_agent("oz@other.example").await;
    let (_, theirs) = ended_chat(s, &other, &mut oz, "yan").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (_, view) = s.get("/api/v1/admin/site", Some(&olga)).await;
    let mut settings = view["settings"].clone();
    settings["retention_days"] = json!(1);
    let res = s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(&olga).json(&settings);
    assert_eq!(res.send().await.unwrap().status().as_u16(), 200);
    // The other site's chat goes once it is a "day" old; this site's,
    // as old, stays.
    let start = std::time::Instant::now();
    while !bodies(s, &oz_token, &theirs).await.iter().all(Value::is_null) {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the other site's policy never ran");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(bodies(s, &ann_token, &kept).await[0], json!("zoe here, my number is 555-0199"));
}

/// An entry of `site`'s audit log written `days_ago`, named `action`.
async fn old_entry(s: &TestServer, site_id: &str, action: &str, days_ago: i64) {
    let entry = holdfast_server::store::audit::AuditEntry {
        id: holdfast_server::store::new_id(),
        site_id: site_id.to_owned(),
        at: holdfast_server::store::now_ms() - days_ago * 86_400_000,
        actor_id: "someone".into(),
        actor_name: "Someone".into(),
        action: action.into(),
        target: None,
        before: None,
        after: None,
    };
    s.state.store.append_audit(entry).await.unwrap();
}

async fn actions(s: &TestServer, token: &str) -> Vec<String> {
    let (status, log) = s.get("/api/v1/admin/audit?limit=200", Some(token)).await;
    assert_eq!(status, 200, "{log}");
    log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

async fn the_audit_log_keeps_entries_for_the_sites_days_and_never_under_thirty(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    old_entry(s, &site.id, "test.forty_days_ago", 40).await;
    old_entry(s, &site.id, "test.ten_days_ago", 10).await;
    old_entry(s, &other.id, "test.theirs_forty_days_ago", 40).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;

    // Kept for ever unless set; under 30 days is refused.
    let (_, view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = view["settings"].clone();
    assert_eq!(settings["audit_retention_days"], 0, "kept for ever unless set");
    let put = |body: Value| {
        s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(boss.clone()).json(&body).send()
    };
    for bad in [json!(10), json!(4000), json!("30")] {
        settings["audit_retention_days"] = bad.clone();
        let res = put(settings.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{bad}");
    }
    settings["audit_retention_days"] = json!(30);
    assert_eq!(put(settings.clone()).await.unwrap().status().as_u16(), 200);

    // The job deletes this site's entry older than 30 days. The one of 10
    // days stays although this test's "day" is 400 ms: the store keeps
    // every entry 30 real days whatever a policy says.
    let start = std::time::Instant::now();
    while actions(s, &boss).await.contains(&"test.forty_days_ago".to_owned()) {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the audit retention never ran");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = actions(s, &boss).await;
    assert!(kept.contains(&"test.ten_days_ago".to_owned()), "{kept:?}");
    assert!(kept.contains(&"settings.changed".to_owned()), "the policy's own change is audited: {kept:?}");
    // Another site's policy (for ever) is its own.
    assert!(actions(s, &olga).await.contains(&"test.theirs_forty_days_ago".to_owned()));
    // And the store refuses to delete anything younger, whoever asks.
    let now = holdfast_server::store::now_ms();
    assert!(s.state.store.expire_audit(&site.id, now, 100).await.is_err(), "a recent entry was deletable");
    assert!(actions(s, &boss).await.contains(&"test.ten_days_ago".to_owned()));
}

mod retention {
    use super::*;

    async fn sqlite() -> Node {
        Node::sqlite(quick_retention).await
    }

    async fn postgres() -> Node {
        Node::postgres(quick_retention).await
    }

    both_stores!(
        a_sites_retention_erases_ended_chats_older_than_its_days,
        another_sites_policy_is_not_this_sites,
        the_audit_log_keeps_entries_for_the_sites_days_and_never_under_thirty
    );
}

/// Retention as quick, resting 1.5 s between batches.
fn resting_retention(c: &mut holdfast_server::config::Config) {
    quick_retention(c);
    c.retention.pause = std::time::Duration::from_millis(1500);
}

mod resting_retention {
    use super::*;

    async fn sqlite() -> Node {
        Node::sqlite(resting_retention).await
    }

    async fn postgres() -> Node {
        Node::postgres(resting_retention).await
    }

    both_stores!(a_policy_lengthened_mid_run_stops_the_erasing_at_the_next_batch);
}

/// The real binary, run as the operator would.
fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast")).args(args).output().unwrap()
}

/// `holdfast visitor export` prints the same document from the data dir;
/// `holdfast visitor erase` erases, and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exports_a_visitor_from_the_command_line() {
    let s = TestServer::start().await;
    let eve = arrange(&s).await;
    let site = s.site().await;
    let dir = s.dir.clone();
    let _keep = s.stop().await;
    let data = dir.to_str().unwrap();
    let out = cli(&["visitor", "export", "--site", &site.id, &eve, "--data", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["visitor"]["id"], eve.as_str());
    assert_eq!(doc["conversations"][0]["events"][0]["body"], "my order 1234 is late");
    let out = cli(&["visitor", "export", "--site", "no-such-site", &eve, "--data", data]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("visitor not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `holdfast visitor erase` erases; the export then holds tombstones.
    let out = cli(&["visitor", "erase", "--site", &site.id, &eve, "--data", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(erased["erased"]["messages"], 2, "{erased}");
    let out = cli(&["visitor", "export", "--site", &site.id, &eve, "--data", data]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["visitor"]["name"].is_null());
    assert_eq!(doc["conversations"][0]["events"][0]["data"]["erased"], true, "{doc}");
}
