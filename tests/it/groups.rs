//! Deleting a group through `DELETE /api/v1/admin/groups/{id}`, on SQLite
//! and PostgreSQL: only the site's admin may, never the default group; the
//! chat waiting in its queue moves to the default queue (its visitor hears
//! it), the chat an agent has in it goes on, search and reports still name
//! it, it is no longer listed, changed or offered (a transfer to it lands
//! in the default queue), and the audit log records it. Its name is free
//! again for a new group or a rename, while its history keeps the name.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer};

async fn deleting_a_group_moves_its_queue_and_keeps_its_history(s: TestServer) {
    let site = s.site().await;
    let other = s.new_site("Other").await;
    s.person(&site, "ann@example.com", "Ann", Role::Agent).await;
    let bob = s.person(&site, "bob@example.com", "Bob", Role::Agent).await;
    s.person(&site, "boss@example.com", "Boss", Role::Admin).await;
    s.person(&other, "olga@b.example", "Olga", Role::Admin).await;
    let (boss, _) = s.login("boss@example.com", "password123").await;
    let (olga, _) = s.login("olga@b.example", "password123").await;
    let (_, billing) = s.post("/api/v1/admin/groups", Some(&boss), json!({"name": "Billing"})).await;
    let billing = billing["id"].as_str().unwrap().to_owned();
    let (status, _) =
        s.post(&format!("/api/v1/admin/groups/{billing}/members"), Some(&boss), json!({"agent_id": bob.id})).await;
    assert_eq!(status, 204);
    let (_, groups) = s.get("/api/v1/groups", Some(&boss)).await;
    let general = groups.as_array().unwrap().iter().find(|g| g["is_default"] == true).unwrap()["id"].clone();
    let (mut ann, ann_token) = s.online_agent("ann@example.com").await;

    // One chat goes to Billing while Bob is online: he has it.
    let (mut bob_socket, _) = s.online_agent("bob@example.com").await;
    let (_, token) = s.visitor(&site).await;
    let mut kept_visitor = Client::connect(&s, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let kept = kept_visitor.say(None, "k1", "About my invoice").await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == kept.as_str()).await;
    ann.send(json!({"type": "transfer", "conv": kept, "to_group": billing})).await;
    bob_socket.wait_for(|f| f["type"] == "assigned" && f["conv"] == kept.as_str()).await;
    // Another waits in Billing's queue while Bob is away.
    bob_socket.send(json!({"type": "set_availability", "availability": "away"})).await;
    bob_socket.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "away").await;
    let (_, token) = s.visitor(&site).await;
    let mut waiting_visitor = Client::connect(&s, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let waiting = waiting_visitor.say(None, "w1", "Refund please").await["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == waiting.as_str()).await;
    ann.send(json!({"type": "transfer", "conv": waiting, "to_group": billing})).await;
    waiting_visitor.wait_for(|f| f["type"] == "transferred").await;
    let conversation = |id: String| {
        let (s, boss) = (&s, boss.clone());
        async move { s.get(&format!("/api/v1/conversations/{id}"), Some(&boss)).await.1 }
    };
    assert_eq!(conversation(waiting.clone()).await["group_id"], billing.as_str());
    assert_eq!(conversation(waiting.clone()).await["status"], "queued");

    // Who may not: another site's admin, an agent; nor the default group.
    let path = format!("/api/v1/admin/groups/{billing}");
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &olga, Value::Null).await.0, 404);
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &ann_token, Value::Null).await.0, 403);
    let default_path = format!("/api/v1/admin/groups/{}", general.as_str().unwrap());
    let (status, body) = s.call(reqwest::Method::DELETE, &default_path, &boss, Value::Null).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(s.call(reqwest::Method::DELETE, "/api/v1/admin/groups/nope", &boss, Value::Null).await.0, 404);

    let (status, body) = s.call(reqwest::Method::DELETE, &path, &boss, Value::Null).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &boss, Value::Null).await.0, 404, "gone already");

    // The waiting chat is in the default queue now, and its visitor hears it.
    let moved = waiting_visitor.wait_for(|f| f["type"] == "transferred" && f["group"]["id"] == general).await;
    assert_eq!(moved["group"]["name"], "General");
    assert_eq!(conversation(waiting.clone()).await["group_id"], general);
    // Bob's chat goes on in the group it names.
    assert_eq!(bob_socket.say(Some(&kept), "b1", "Your invoice is fixed").await["type"], "ack");
    kept_visitor.wait_for(|f| f["type"] == "message" && f["client_id"] == "b1").await;
    assert_eq!(conversation(kept.clone()).await["group_id"], billing.as_str());

    // No longer listed, changed or offered.
    for list in ["/api/v1/groups", "/api/v1/admin/groups"] {
        let (_, groups) = s.get(list, Some(&boss)).await;
        assert!(!groups.to_string().contains(&billing), "{list}: {groups}");
    }
    assert_eq!(s.call(reqwest::Method::PATCH, &path, &boss, json!({"name": "Billing 2"})).await.0, 404);
    let add = format!("{path}/members");
    assert_eq!(s.post(&add, Some(&boss), json!({"agent_id": bob.id})).await.0, 404);
    // History still names it: search by group, reports, the audit log.
    let (_, found) = s.get(&format!("/api/v1/search?group={billing}"), Some(&boss)).await;
    assert_eq!(found["chats"][0]["conversation_id"], kept.as_str(), "{found}");
    assert_eq!(found["chats"][0]["group_name"], "Billing");
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let query = format!("from={}&to={}", today.yesterday().unwrap(), today.tomorrow().unwrap());
    let (status, report) = s.get(&format!("/api/v1/reports?{query}"), Some(&boss)).await;
    assert_eq!(status, 200, "{report}");
    let names: Vec<&str> = report["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"General") && names.contains(&"Billing"), "{names:?}");
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    let entry = log.as_array().unwrap().iter().find(|e| e["action"] == "group.deleted").expect("audited");
    assert_eq!(entry["target"], billing.as_str());
    assert_eq!(entry["after"]["moved_conversations"], json!([waiting]));
    assert_eq!(entry["before"]["name"], "Billing");

    // The name is free again: a new group takes it (names are unique among
    // live groups only), while the old group's history keeps its own.
    let (status, new_billing) = s.post("/api/v1/admin/groups", Some(&boss), json!({"name": "Billing"})).await;
    assert_eq!(status, 201, "{new_billing}");
    let new_billing = new_billing["id"].as_str().unwrap().to_owned();
    assert_ne!(new_billing, billing);
    let (status, body) = s.post("/api/v1/admin/groups", Some(&boss), json!({"name": "Billing"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "two live: {body}");
    let (_, support) = s.post("/api/v1/admin/groups", Some(&boss), json!({"name": "Support"})).await;
    let support_path = format!("/api/v1/admin/groups/{}", support["id"].as_str().unwrap());
    let (status, body) = s.call(reqwest::Method::PATCH, &support_path, &boss, json!({"name": "Billing"})).await;
    assert_eq!(status, 409, "a rename to a live group's name: {body}");
    // Deleted again, the name can be taken by a rename too.
    let (status, _) =
        s.call(reqwest::Method::DELETE, &format!("/api/v1/admin/groups/{new_billing}"), &boss, Value::Null).await;
    assert_eq!(status, 204);
    let (status, body) = s.call(reqwest::Method::PATCH, &support_path, &boss, json!({"name": "Billing"})).await;
    assert_eq!((status, &body["name"]), (200, &json!("Billing")), "{body}");
    let (_, groups) = s.get("/api/v1/groups", Some(&boss)).await;
    let billings: Vec<&Value> = groups.as_array().unwrap().iter().filter(|g| g["name"] == "Billing").collect();
    assert_eq!(billings.len(), 1, "{groups}");
    assert_eq!(billings[0]["id"], support["id"]);
    // The first Billing's chat and the reports still name it.
    let (_, found) = s.get(&format!("/api/v1/search?group={billing}"), Some(&boss)).await;
    assert_eq!(found["chats"][0]["group_name"], "Billing", "{found}");
    assert_eq!(conversation(kept.clone()).await["group_id"], billing.as_str());
    let (_, report) = s.get(&format!("/api/v1/reports?{query}"), Some(&boss)).await;
    let old = report["groups"].as_array().unwrap().iter().find(|g| g["id"] == billing.as_str());
    assert_eq!(old.map(|g| &g["name"]), Some(&json!("Billing")), "{report}");
    // Another site may use the name, and its admin cannot touch ours.
    assert_eq!(s.post("/api/v1/admin/groups", Some(&olga), json!({"name": "Billing"})).await.0, 201);
    assert_eq!(s.call(reqwest::Method::DELETE, &support_path, &olga, Value::Null).await.0, 404);
    assert_eq!(s.call(reqwest::Method::PATCH, &support_path, &olga, json!({"name": "Mine"})).await.0, 404);
    // A transfer to it ("back to the queue" of Bob's chat) lands in the default queue.
    bob_socket.send(json!({"type": "transfer", "conv": kept, "to_group": billing})).await;
    let back = kept_visitor.wait_for(|f| f["type"] == "transferred" && f["previous_agent"] == bob.id.as_str()).await;
    assert_eq!(back["group"]["id"], general);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_on_sqlite() {
    deleting_a_group_moves_its_queue_and_keeps_its_history(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    deleting_a_group_moves_its_queue_and_keeps_its_history(server).await;
}
