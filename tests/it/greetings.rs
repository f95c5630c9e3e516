//! Proactive greetings through the real server, on SQLite and PostgreSQL:
//! an admin's rules (checked, kept to their site), handed to the widget
//! only while an agent could answer, counted when a widget shows one, and
//! recorded on the chat a visitor starts by answering.

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::{Node, both_stores};
use crate::support::{Client, TestServer};

async fn sqlite() -> Node {
    Node::sqlite(|_| {}).await
}

async fn postgres() -> Node {
    Node::postgres(|_| {}).await
}

both_stores!(a_greeting_is_counted_and_the_chat_it_starts_records_it, greeting_rules_are_checked_and_each_sites_own);

async fn session(s: &TestServer, widget_key: &str) -> Value {
    let (status, body) = s.post("/api/v1/visitor/session", None, json!({"widget_key": widget_key})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn pricing(from: Option<&str>) -> Value {
    json!({"name": "Pricing", "url_pattern": "*/pricing*", "min_seconds": 30, "min_pages": 2,
           "visitor": "returning", "from_agent_id": from, "message": "Questions about our plans?"})
}

async fn rules(s: &TestServer, token: &str) -> Vec<Value> {
    let (status, list) = s.get("/api/v1/admin/greetings", Some(token)).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

async fn a_greeting_is_counted_and_the_chat_it_starts_records_it(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    s.person(&site, "boss@shop.example", "Boss", Role::Admin).await;
    let ann = s.agent(&site, "ann@shop.example", 5).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;

    let (status, rule) = s.post("/api/v1/admin/greetings", Some(&boss), pricing(Some(&ann.id))).await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(
        (rule["shown"].as_i64(), rule["started"].as_i64(), rule["enabled"].as_bool()),
        (Some(0), Some(0), Some(true))
    );
    let id = rule["id"].as_str().unwrap().to_owned();
    let mut off = pricing(None);
    off["name"] = json!("Switched off");
    off["enabled"] = json!(false);
    assert_eq!(s.post("/api/v1/admin/greetings", Some(&boss), off).await.0, 201);

    // Nobody online: no greeting is handed out.
    assert_eq!(session(s, &site.widget_key).await["greetings"], json!([]));
    // Ann online: the enabled rule, from her by name.
    let (mut agent, _) = s.online_agent("ann@shop.example").await;
    let body = session(s, &site.widget_key).await;
    let handed = body["greetings"].as_array().unwrap();
    assert_eq!(handed.len(), 1, "{body}");
    assert_eq!(handed[0]["id"], id.as_str());
    assert_eq!(handed[0]["from"], "ann");
    assert_eq!(handed[0]["url_pattern"], "*/pricing*");
    assert_eq!(handed[0]["min_seconds"], 30);

    // The widget shows it: counted once per call, for this site's visitor only.
    let token = body["visitor_token"].as_str().unwrap().to_owned();
    let shown = format!("/api/v1/visitor/greetings/{id}/shown");
    assert_eq!(s.post(&shown, Some(&token), json!({})).await.0, 204);
    assert_eq!(s.post(&shown, None, json!({})).await.0, 401);
    assert_eq!(s.post("/api/v1/visitor/greetings/nope/shown", Some(&token), json!({})).await.0, 404);
    let other = s.new_site("Other").await;
    let stranger = session(s, &other.widget_key).await;
    let stranger_token = stranger["visitor_token"].as_str().unwrap().to_owned();
    assert_eq!(s.post(&shown, Some(&stranger_token), json!({})).await.0, 404);

    // The visitor answers: a normal chat, recorded as greeted by the rule.
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    visitor
        .send(json!({"type": "send", "client_id": "g1", "body": "Yes: is there a yearly plan?", "greeting": id}))
        .await;
    let ack = visitor.wait_for(|f| f["type"] == "ack" || f["type"] == "error").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    agent.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    assert_eq!(s.state.store.greeting_of(&conv).await.unwrap().as_deref(), Some(id.as_str()));
    // Ann sees which greeting started the chat.
    let (ann_token, _) = s.login("ann@shop.example", "password123").await;
    let (status, greeted) = s.get(&format!("/api/v1/conversations/{conv}/greeting"), Some(&ann_token)).await;
    assert_eq!(status, 200, "{greeted}");
    assert_eq!(greeted, json!({"rule_id": id, "name": "Pricing", "message": "Questions about our plans?"}));
    // A later message naming it again changes nothing.
    visitor.send(json!({"type": "send", "client_id": "g2", "body": "hello?", "greeting": id})).await;
    visitor.wait_for(|f| f["type"] == "ack" && f["client_id"] == "g2").await;
    // Another site's visitor naming this rule starts a chat it does not count.
    let mut foreign = Client::connect(s, "/api/v1/visitor/socket", &stranger_token, Default::default()).await;
    foreign.send(json!({"type": "send", "client_id": "f1", "body": "hi", "greeting": id})).await;
    let ack = foreign.wait_for(|f| f["type"] == "ack" || f["type"] == "error").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let foreign_conv = ack["conv"].as_str().unwrap().to_owned();
    assert_eq!(s.state.store.greeting_of(&foreign_conv).await.unwrap(), None);
    // Another site's chat is not Ann's to ask about; a visitor may not ask.
    let path = format!("/api/v1/conversations/{foreign_conv}/greeting");
    assert_eq!(s.get(&path, Some(&ann_token)).await.0, 404);
    assert_eq!(s.get(&format!("/api/v1/conversations/{conv}/greeting"), Some(&token)).await.0, 401);

    let list = rules(s, &boss).await;
    let counted = list.iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!((counted["shown"].as_i64(), counted["started"].as_i64()), (Some(1), Some(1)), "{counted}");
    // The admin's reports show the rule's figures; an agent's do not.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let range = format!("/api/v1/reports?from={}&to={}", today.yesterday().unwrap(), today.tomorrow().unwrap());
    let (status, report) = s.get(&range, Some(&boss)).await;
    assert_eq!(status, 200, "{report}");
    let figures = report["greetings"].as_array().unwrap();
    let mine = figures.iter().find(|g| g["id"] == id.as_str()).unwrap();
    assert_eq!(
        (mine["name"].as_str(), mine["shown"].as_i64(), mine["started"].as_i64()),
        (Some("Pricing"), Some(1), Some(1))
    );
    let (_, theirs) = s.get(&range, Some(&ann_token)).await;
    assert_eq!(theirs["greetings"], json!([]), "{theirs}");
    // A report of other days lists the rule with none of today's figures.
    let past = today.checked_sub(jiff::Span::new().days(10)).unwrap();
    let before = format!("/api/v1/reports?from={past}&to={}", today.checked_sub(jiff::Span::new().days(3)).unwrap());
    let (status, old) = s.get(&before, Some(&boss)).await;
    assert_eq!(status, 200, "{old}");
    let mine = old["greetings"].as_array().unwrap().iter().find(|g| g["id"] == id.as_str()).unwrap().clone();
    assert_eq!((mine["shown"].as_i64(), mine["started"].as_i64()), (Some(0), Some(0)), "{old}");

    // Changed, its counts stay; deleted, it is gone and handed out no more.
    let mut change = pricing(None);
    change["min_seconds"] = json!(5);
    let (status, after) = s.call(reqwest::Method::PUT, &format!("/api/v1/admin/greetings/{id}"), &boss, change).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        (after["min_seconds"].as_i64(), after["shown"].as_i64(), after["started"].as_i64()),
        (Some(5), Some(1), Some(1))
    );
    assert!(after["from_agent_id"].is_null());
    let (status, _) =
        s.call(reqwest::Method::DELETE, &format!("/api/v1/admin/greetings/{id}"), &boss, json!(null)).await;
    assert_eq!(status, 204);
    assert_eq!(rules(s, &boss).await.len(), 1);
    assert_eq!(session(s, &site.widget_key).await["greetings"], json!([]));
    let (_, greeted) = s.get(&format!("/api/v1/conversations/{conv}/greeting"), Some(&ann_token)).await;
    assert_eq!(greeted, json!({"rule_id": id, "name": null, "message": null}));
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    for action in ["greeting.created", "greeting.changed", "greeting.deleted"] {
        assert!(log.as_array().unwrap().iter().any(|e| e["action"] == action), "no {action} in {log}");
    }
    for c in [visitor, foreign, agent] {
        c.close().await;
    }
}

async fn greeting_rules_are_checked_and_each_sites_own(node: Node) {
    let s = &node.server;
    let shop = s.site().await;
    s.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    s.agent(&shop, "al@shop.example", 5).await;
    let other = s.new_site("Other").await;
    s.person(&other, "olga@other.example", "Olga", Role::Admin).await;
    let oscar = s.agent(&other, "oscar@other.example", 5).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (al, _) = s.login("al@shop.example", "password123").await;

    let (status, rule) = s.post("/api/v1/admin/greetings", Some(&boss), pricing(None)).await;
    assert_eq!(status, 201);
    let path = format!("/api/v1/admin/greetings/{}", rule["id"].as_str().unwrap());

    // Olga sees none of the shop's rules and can change none.
    assert!(rules(s, &olga).await.is_empty());
    assert_eq!(s.call(reqwest::Method::PUT, &path, &olga, pricing(None)).await.0, 404);
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &olga, json!(null)).await.0, 404);
    // Agents may not touch rules.
    assert_eq!(s.get("/api/v1/admin/greetings", Some(&al)).await.0, 403);
    assert_eq!(s.post("/api/v1/admin/greetings", Some(&al), pricing(None)).await.0, 403);

    // Bad input: a clear 400, nothing stored.
    let bad: Vec<(&str, Value)> = vec![
        ("min_seconds", json!(-1)),
        ("min_seconds", json!(3601)),
        ("min_pages", json!(101)),
        ("visitor", json!("robot")),
        ("from_agent_id", json!(oscar.id)),
        ("from_agent_id", json!("nobody")),
        ("message", json!("   ")),
        ("message", json!("x".repeat(501))),
        ("name", json!("")),
        ("url_pattern", json!("*\u{7}*")),
        ("colour", json!("red")),
    ];
    for (field, value) in bad {
        let mut body = pricing(None);
        body[field] = value.clone();
        let (status, answer) = s.post("/api/v1/admin/greetings", Some(&boss), body.clone()).await;
        assert_eq!(status, 400, "{field} = {value} → {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        assert_eq!(s.call(reqwest::Method::PUT, &path, &boss, body).await.0, 400, "{field}");
    }
    assert_eq!(rules(s, &boss).await.len(), 1);
    let (status, answer) = s.post("/api/v1/admin/greetings", Some(&boss), json!("hello")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")));
}
