//! Internal notes over real sockets, on SQLite and PostgreSQL: an admin
//! leaves a note in a colleague's chat, the colleague gets it live, and
//! both find it in the history; the chat's visitor, connected live or
//! resuming from any cursor, never receives it (nor over REST, nor in
//! their data export) and loses nothing that follows it. Another site's
//! agent and the visitor cannot write one; bad notes get clear errors.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer, assert_error};

const VISITOR_SOCKET: &str = "/api/v1/visitor/socket";
const AGENT_SOCKET: &str = "/api/v1/agent/socket";
const SECRET: &str = "VIP: refund approved up to 50";

/// A note frame and the answer to it (an ack or an error).
async fn note(c: &mut Client, conv: &str, client_id: &str, body: &str) -> Value {
    c.send(json!({"type": "note", "conv": conv, "client_id": client_id, "body": body})).await;
    let cid = client_id.to_owned();
    c.wait_for(move |f| (f["type"] == "ack" && f["client_id"] == cid) || (f["type"] == "error" && f["ref"] == cid))
        .await
}

/// Nothing the visitor received says anything of a note.
fn never_saw_a_note(v: &Client) {
    for e in &v.events {
        assert_ne!(e["type"], "note", "{e}");
        assert!(!e.to_string().contains("VIP"), "{e}");
    }
}

async fn notes_reach_agents_and_never_the_visitor(s: TestServer) {
    let site = s.site().await;
    let other = s.new_site("Other").await;
    s.person(&site, "ann@example.com", "Ann", Role::Agent).await;
    s.person(&site, "boss@example.com", "Boss", Role::Admin).await;
    s.person(&other, "spy@b.example", "Spy", Role::Agent).await;
    let (mut ann, ann_token) = s.online_agent("ann@example.com").await;
    let (boss_token, _) = s.login("boss@example.com", "password123").await;
    let mut boss = Client::connect(&s, AGENT_SOCKET, &boss_token, HashMap::new()).await;

    // A visitor chats with Ann.
    let (visitor_id, visitor_token) = s.visitor(&site).await;
    let mut v = Client::connect(&s, VISITOR_SOCKET, &visitor_token, HashMap::new()).await;
    let first = v.say(None, "v1", "Hello, I want a refund").await;
    let conv = first["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    let before = v.wait_for(|f| f["type"] == "assigned").await["seq"].as_i64().unwrap();

    // The admin, who does not have the chat, leaves a note; Ann gets it live.
    let ack = note(&mut boss, &conv, "n1", SECRET).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seq = ack["seq"].as_i64().unwrap();
    assert_eq!(seq, before + 1, "a note takes the conversation's next seq");
    let live = ann.wait_for(|f| f["type"] == "note").await;
    assert_eq!(live["body"], SECRET);
    assert_eq!(live["seq"], seq);
    assert_eq!(live["author"]["kind"], "agent");
    // A retry is the same note.
    let again = note(&mut boss, &conv, "n1", SECRET).await;
    assert_eq!((again["seq"].as_i64(), again["duplicate"].as_bool()), (Some(seq), Some(true)));

    // Ann answers: the visitor, connected throughout, gets the answer at
    // once and never the note.
    let answer = ann.say(Some(&conv), "a1", "Sure, let me check").await;
    assert_eq!(answer["seq"].as_i64(), Some(seq + 1));
    let started = std::time::Instant::now();
    let got = v.wait_for(|f| f["type"] == "message" && f["client_id"] == "a1").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(got["seq"].as_i64(), Some(seq + 1));
    // Ann leaves a note last, then the visitor writes: still in order.
    assert_eq!(note(&mut ann, &conv, "n2", "VIP again, second note").await["seq"].as_i64(), Some(seq + 2));
    let ack = v.say(Some(&conv), "v2", "Thanks").await;
    assert_eq!(ack["seq"].as_i64(), Some(seq + 3));
    ann.wait_for(|f| f["type"] == "message" && f["client_id"] == "v2").await;
    v.wait_for(|f| f["type"] == "message" && f["client_id"] == "v2").await;
    never_saw_a_note(&v);
    let seen: Vec<i64> =
        v.events.iter().filter(|e| e["conv"] == conv.as_str()).map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(!seen.contains(&seq) && !seen.contains(&(seq + 2)), "{seen:?}");
    assert!(seen.contains(&(seq + 1)) && seen.contains(&(seq + 3)), "nothing after a note is lost: {seen:?}");

    // Ann's last word is a note: a visitor resuming from before the first
    // note gets every message after it, no note, and hears that the replay
    // is over although it stopped short of the welcome's last_seq.
    assert_eq!(note(&mut ann, &conv, "n3", "VIP, last word").await["type"], "ack");
    let mut back = Client::connect(&s, VISITOR_SOCKET, &visitor_token, HashMap::from([(conv.clone(), before)])).await;
    assert_eq!(back.welcome["conversations"][0]["last_seq"].as_i64(), Some(seq + 4));
    let over = back.wait_for(|f| f["type"] == "replayed").await;
    assert_eq!(over["conv"], conv.as_str());
    let bodies: Vec<&str> = back.events.iter().map(|e| e["body"].as_str().unwrap_or("")).collect();
    assert_eq!(bodies, ["Sure, let me check", "Thanks"]);
    never_saw_a_note(&back);
    // From the start, too; and the next message goes on from there.
    let mut fresh = Client::connect(&s, VISITOR_SOCKET, &visitor_token, HashMap::new()).await;
    fresh.wait_for(|f| f["type"] == "replayed").await;
    let ack = fresh.say(Some(&conv), "v3", "Still there?").await;
    assert_eq!(ack["seq"].as_i64(), Some(seq + 5));
    back.wait_for(|f| f["type"] == "message" && f["client_id"] == "v3").await;
    never_saw_a_note(&fresh);
    never_saw_a_note(&v);

    // History: agents see the notes, the visitor's REST read does not.
    let (_, events) = s.get(&format!("/api/v1/conversations/{conv}/events"), Some(&boss_token)).await;
    let notes: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["type"] == "note").collect();
    assert_eq!(notes.len(), 3, "{events}");
    assert_eq!(notes[0]["body"], SECRET);
    let (status, theirs) = s.get(&format!("/api/v1/conversations/{conv}/events"), Some(&visitor_token)).await;
    assert_eq!(status, 200);
    assert!(!theirs.to_string().contains("VIP"), "{theirs}");
    assert!(theirs.to_string().contains("Still there?"));
    // Nor their data export, which an admin hands them.
    let (status, export) = s.get(&format!("/api/v1/admin/visitors/{visitor_id}/export"), Some(&boss_token)).await;
    assert_eq!(status, 200);
    assert!(!export.to_string().contains("VIP"), "{export}");
    assert!(export.to_string().contains("Still there?"));

    // Who may not: another site's agent (as if there were no such chat),
    // the visitor; and bad notes.
    let (spy_token, _) = s.login("spy@b.example", "password123").await;
    let mut spy = Client::connect(&s, AGENT_SOCKET, &spy_token, HashMap::new()).await;
    assert_error(&note(&mut spy, &conv, "x1", "hello").await, "not_found");
    assert_error(&note(&mut v, &conv, "x2", "hello").await, "forbidden");
    assert_error(&note(&mut ann, &conv, "x3", "   ").await, "bad_request");
    assert_error(&note(&mut ann, &conv, "x4", &"a".repeat(5001)).await, "bad_request");
    assert_error(&note(&mut ann, &conv, &"c".repeat(65), "hello").await, "bad_request");
    assert_error(&note(&mut ann, "no-such-conv", "x5", "hello").await, "not_found");
    let (_, events) = s.get(&format!("/api/v1/conversations/{conv}/events"), Some(&ann_token)).await;
    assert_eq!(
        events.as_array().unwrap().iter().filter(|e| e["type"] == "note").count(),
        3,
        "nothing refused was stored"
    );

    // A note in a closed chat (the follow-up after it).
    ann.send(json!({"type": "close", "conv": conv})).await;
    ann.wait_for(|f| f["type"] == "closed").await;
    assert_eq!(note(&mut ann, &conv, "n4", "Called back, all good").await["type"], "ack");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_on_sqlite() {
    notes_reach_agents_and_never_the_visitor(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    notes_reach_agents_and_never_the_visitor(server).await;
}
