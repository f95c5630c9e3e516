//! The audit log through the real server, on SQLite and on PostgreSQL:
//! an admin's actions (rename, settings, agents created, changed, given a
//! password, deactivated; bans made and lifted) and the operator's (an
//! incident) are listed with who, what and the values before and after,
//! never a password; another site's admin sees none of them; agents may
//! not read it; and the rows cannot be changed or deleted, even in SQL.

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::outbox::admin;
use crate::services::{Node, both_stores};
use crate::support::TestServer;

async fn sqlite() -> Node {
    Node::sqlite(|_| {}).await
}

async fn postgres() -> Node {
    Node::postgres(|_| {}).await
}

async fn send(s: &TestServer, method: reqwest::Method, path: &str, token: &str, body: Value) -> (u16, Value) {
    let res = s.http.request(method, format!("{}{path}", s.base)).bearer_auth(token).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Run one SQL statement on the node's store, outside Holdfast.
async fn raw_sql(node: &Node, sql: &'static str) -> Result<(), String> {
    match &node.db {
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.map(|_| ()).map_err(|e| e.to_string())
        }
        None => {
            let url = format!("sqlite://{}", node.server.dir.join("holdfast.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

fn entry<'a>(log: &'a [Value], action: &str) -> &'a Value {
    log.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action} in {log:#?}"))
}

async fn admin_actions_are_recorded_append_only(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    let al = s.agent(&site, "al@shop.example", 5).await;
    s.person(&site, "op@shop.example", "Opal", Role::Operator).await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (op, _) = s.login("op@shop.example", "password123").await;

    // The admin's day.
    let (status, _) = send(s, reqwest::Method::PATCH, "/api/v1/admin/site", &boss, json!({"name": "Acme"})).await;
    assert_eq!(status, 200);
    let (_, view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = view["settings"].clone();
    settings["greeting"] = json!("Hello there");
    let (status, _) = send(s, reqwest::Method::PUT, "/api/v1/admin/site/settings", &boss, settings).await;
    assert_eq!(status, 200);
    let new = json!({"name": "Nia", "email": "nia@shop.example", "password": "secret-pass-1", "role": "agent"});
    // A site's admin invites; the operator of the installation sets a password.
    let (status, nia) = s.post("/api/v1/admin/agents", Some(&op), new).await;
    assert_eq!(status, 201, "{nia}");
    let path = format!("/api/v1/admin/agents/{}", al.id);
    assert_eq!(send(s, reqwest::Method::PATCH, &path, &boss, json!({"role": "admin"})).await.0, 200);
    assert_eq!(send(s, reqwest::Method::PATCH, &path, &boss, json!({"password": "reset-pass-2"})).await.0, 200);
    let (_, eve_token) = s.visitor(&site).await;
    let eve = s.state.auth.verify_visitor(&eve_token).unwrap().sub;
    let (status, ban) = s.post("/api/v1/bans", Some(&boss), json!({"visitor_id": eve, "reason": "spam"})).await;
    assert_eq!(status, 201);
    let lift = format!("/api/v1/admin/bans/{}/lift", ban["id"].as_str().unwrap());
    assert_eq!(s.post(&lift, Some(&boss), json!({})).await.0, 200);
    let nia_path = format!("/api/v1/admin/agents/{}", nia["id"].as_str().unwrap());
    assert_eq!(send(s, reqwest::Method::PATCH, &nia_path, &boss, json!({"active": false})).await.0, 200);
    // The operator opens an incident.
    let incident = json!({"name": "Login slow", "status": "investigating"});
    assert_eq!(s.post("/api/v1/status/incidents", Some(&op), incident).await.0, 201);

    let (status, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().unwrap().clone();
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "POST /api/v1/status/incidents",
            "agent.changed",
            "ban.lifted",
            "ban.created",
            "agent.password_reset",
            "agent.changed",
            "agent.created",
            "settings.changed",
            "site.renamed",
        ],
        "newest first"
    );
    let renamed = entry(&log, "site.renamed");
    assert_eq!((&renamed["before"], &renamed["after"]), (&json!("Demo site"), &json!("Acme")));
    assert_eq!(renamed["actor_name"], "Boss");
    assert_eq!(entry(&log, "agent.created")["actor_name"], "Opal");
    let settings = entry(&log, "settings.changed");
    assert_eq!(settings["before"]["greeting"], "Hi! How can we help?");
    assert_eq!(settings["after"]["greeting"], "Hello there");
    let role = log.iter().rev().find(|e| e["action"] == "agent.changed").unwrap();
    assert_eq!((&role["before"]["role"], &role["after"]["role"]), (&json!("agent"), &json!("admin")));
    assert_eq!(role["target"], al.id.as_str());
    assert_eq!(log[1]["after"]["active"], false, "the deactivation: {}", log[1]);
    assert_eq!(entry(&log, "ban.created")["after"]["reason"], "spam");
    assert_eq!(log[0]["after"]["name"], "Login slow");
    assert_eq!(log[0]["actor_name"], "Opal");
    let text = serde_json::to_string(&log).unwrap();
    for secret in ["secret-pass-1", "reset-pass-2", "password_hash", "argon2"] {
        assert!(!text.contains(secret), "{secret} reached the log: {text}");
    }
    // Paging back.
    let (_, older) = s.get(&format!("/api/v1/admin/audit?before={}&limit=2", log[6]["at"]), Some(&boss)).await;
    assert!(older.as_array().unwrap().iter().all(|e| e["at"].as_i64() < log[6]["at"].as_i64()), "{older}");

    // Another site's admin sees none of it; an agent may not read it.
    let (status, theirs) = s.get("/api/v1/admin/audit", Some(&olga)).await;
    assert_eq!((status, theirs), (200, json!([])));
    let (al_now, _) = s.login("al@shop.example", "reset-pass-2").await;
    let (status, _) = s.get("/api/v1/admin/audit", Some(&al_now)).await;
    assert_eq!(status, 200, "Al is an admin now");
    s.agent(&site, "ann@shop.example", 5).await;
    let (ann_token, _) = s.login("ann@shop.example", "password123").await;
    assert_eq!(s.get("/api/v1/admin/audit", Some(&ann_token)).await.0, 403);
    assert_eq!(s.get("/api/v1/admin/audit?limit=x", Some(&boss)).await.0, 400);

    // Append-only, whoever asks.
    let refused = raw_sql(&node, "UPDATE audit_log SET action = 'nothing'").await;
    assert!(refused.unwrap_err().contains("append-only"));
    let refused = raw_sql(&node, "DELETE FROM audit_log").await;
    assert!(refused.unwrap_err().contains("append-only"));
    let (_, again) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert_eq!(again.as_array().unwrap().len(), log.len());
}

both_stores!(admin_actions_are_recorded_append_only);
