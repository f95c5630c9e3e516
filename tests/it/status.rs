//! The status page, driven as its users do: the public JSON API and HTML
//! page over HTTP, admins over the admin API and the real `holdfast`
//! binary, a real HTTP receiver for webhooks, a real SMTP listener for
//! email, a real TCP port for a monitor, and headless Chromium.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use holdfast_server::auth::passwords;
use holdfast_server::config::Config;
use holdfast_server::status::probes::{PROBE_ACCOUNT_KEY, ProbeAccount};
use holdfast_server::store::status::StatusStore;
use holdfast_server::store::{Availability, NewAgent, Role};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::services::{TestDb, both_stores};
use crate::support::{Client, TestServer, WAIT};

/// A server in a fresh data dir, tuned for the status page's tests.
async fn server_with(tune: impl FnOnce(&mut Config)) -> (TestServer, (tempfile::TempDir, Store)) {
    server_on(Store::Sqlite, tune).await
}

/// Where a test's server keeps the status page: the behaviours below marked
/// with `both_stores!` run on each.
enum Store {
    Sqlite,
    Postgres(TestDb),
}

async fn sqlite() -> Store {
    Store::Sqlite
}

async fn postgres() -> Store {
    Store::Postgres(TestDb::create().await)
}

/// A server on `store` (its data dir unused on PostgreSQL), tuned for the
/// status page's tests; keep the returned values for the test's duration.
async fn server_on(store: Store, tune: impl FnOnce(&mut Config)) -> (TestServer, (tempfile::TempDir, Store)) {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(tmp.path(), |c| {
        c.status.self_probe = false;
        if let Store::Postgres(db) = &store {
            c.database_url = Some(db.url.clone());
        }
        tune(c)
    })
    .await;
    (server, (tmp, store))
}

both_stores!(
    every_api_v2_path_has_the_compatible_shape,
    admins_run_an_incident_from_open_to_postmortem_over_http,
    the_public_page_and_feeds_show_components_uptime_and_history,
    a_webhook_subscriber_gets_a_signed_notification_retried_until_accepted,
    a_monitor_opens_an_incident_when_its_port_stops_answering_and_moves_it_to_monitoring,
);

/// The access token of an operator of the installation (the status page's
/// admin), in the first site.
pub(crate) async fn operator(server: &TestServer) -> String {
    let site = server.site().await;
    let hash = passwords::hash_now("password123").unwrap();
    let email = format!("boss-{}@acme.example", rand_suffix());
    server
        .state
        .store
        .create_agent(NewAgent {
            site_id: &site.id,
            email: &email,
            name: "Boss",
            role: Role::Operator,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
    server.login(&email, "password123").await.0
}

fn rand_suffix() -> String {
    holdfast_server::store::new_id()
}

pub(crate) async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let res = server
        .http
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Wait (bounded) until `probe` returns `Some`.
pub(crate) async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- shape checks for the compatible API ----

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect()
}

fn assert_keys(v: &Value, expected: &[&str], what: &str) {
    let want: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(keys(v), want, "{what} fields in {v}");
}

/// `2018-05-04T16:57:00.000+00:00` (ISO-8601 with an explicit offset).
fn assert_time(v: &Value, what: &str) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = s.len() == 29
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && (b[23] == b'+' || b[23] == b'-')
        && digits(24..26)
        && b[26] == b':'
        && digits(27..29);
    assert!(ok, "{what} is not ISO-8601 with offset: {s:?}");
}

fn assert_time_or_null(v: &Value, what: &str) {
    if !v.is_null() {
        assert_time(v, what);
    }
}

fn assert_one_of(v: &Value, allowed: &[&str], what: &str) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(allowed.contains(&s), "{what} = {s:?} is not one of {allowed:?}");
}

const COMPONENT_STATES: &[&str] =
    &["operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"];

fn check_page(v: &Value) {
    assert_keys(v, &["id", "name", "url", "time_zone", "updated_at"], "page");
    assert_time(&v["updated_at"], "page.updated_at");
    assert!(v["url"].as_str().unwrap().ends_with("/status"));
}

fn check_status(v: &Value) {
    assert_keys(v, &["indicator", "description"], "status");
    assert_one_of(&v["indicator"], &["none", "minor", "major", "critical"], "status.indicator");
}

fn check_component(v: &Value) {
    assert_keys(
        v,
        &[
            "id",
            "name",
            "status",
            "created_at",
            "updated_at",
            "position",
            "description",
            "showcase",
            "start_date",
            "group_id",
            "page_id",
            "group",
            "only_show_if_degraded",
        ],
        "component",
    );
    assert_one_of(&v["status"], COMPONENT_STATES, "component.status");
    assert_time(&v["created_at"], "component.created_at");
    assert_time(&v["updated_at"], "component.updated_at");
    assert!(v["position"].is_i64() && v["showcase"].is_boolean() && v["group"].is_boolean());
}

fn check_incident(v: &Value, maintenance: bool) {
    let mut fields = vec![
        "id",
        "name",
        "status",
        "impact",
        "created_at",
        "updated_at",
        "monitoring_at",
        "resolved_at",
        "started_at",
        "shortlink",
        "page_id",
        "incident_updates",
        "components",
    ];
    if maintenance {
        fields.extend(["scheduled_for", "scheduled_until"]);
        assert_one_of(&v["status"], &["scheduled", "in_progress", "verifying", "completed"], "maintenance.status");
        assert_time(&v["scheduled_for"], "scheduled_for");
        assert_time(&v["scheduled_until"], "scheduled_until");
    } else {
        assert_one_of(
            &v["status"],
            &["investigating", "identified", "monitoring", "resolved", "postmortem"],
            "incident.status",
        );
    }
    assert_keys(v, &fields, "incident");
    assert_one_of(&v["impact"], &["none", "minor", "major", "critical", "maintenance"], "impact");
    for t in ["created_at", "updated_at", "started_at"] {
        assert_time(&v[t], t);
    }
    assert_time_or_null(&v["monitoring_at"], "monitoring_at");
    assert_time_or_null(&v["resolved_at"], "resolved_at");
    for c in v["components"].as_array().unwrap() {
        check_component(c);
    }
    let updates = v["incident_updates"].as_array().unwrap();
    assert!(!updates.is_empty());
    for u in updates {
        assert_keys(
            u,
            &[
                "id",
                "status",
                "body",
                "incident_id",
                "created_at",
                "updated_at",
                "display_at",
                "affected_components",
                "deliver_notifications",
            ],
            "incident update",
        );
        assert_eq!(u["incident_id"], v["id"]);
        for t in ["created_at", "updated_at", "display_at"] {
            assert_time(&u[t], t);
        }
        for a in u["affected_components"].as_array().unwrap() {
            assert_keys(a, &["code", "name", "old_status", "new_status"], "affected component");
            assert_one_of(&a["old_status"], COMPONENT_STATES, "old_status");
            assert_one_of(&a["new_status"], COMPONENT_STATES, "new_status");
        }
    }
    // Updates are listed newest first.
    let times: Vec<&str> = updates.iter().map(|u| u["created_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "updates not newest first: {times:?}");
}

async fn every_api_v2_path_has_the_compatible_shape(store: Store) {
    let (server, _tmp) = server_on(store, |_| {}).await;
    let token = operator(&server).await;
    let post = |path: &'static str, body: Value| send(&server, reqwest::Method::POST, path, &token, body);

    let (s, _) = post("/api/v1/status/components", json!({"name": "Store", "group": "Backend"})).await;
    assert_eq!(s, 201);
    let (s, open) = post(
        "/api/v1/status/incidents",
        json!({"name": "Logins fail", "components": {"Agent login": "major_outage"}, "message": "Looking"}),
    )
    .await;
    assert_eq!(s, 201, "{open}");
    let (s, old) = post("/api/v1/status/incidents", json!({"name": "Old blip", "status": "identified"})).await;
    assert_eq!(s, 201);
    let old_id = old["incident"]["id"].as_str().unwrap();
    let (s, _) =
        send(&server, reqwest::Method::POST, &format!("/api/v1/status/incidents/{old_id}/resolve"), &token, json!({}))
            .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        "/api/v1/status/maintenances",
        json!({"name": "Database upgrade", "scheduled_for": "2099-01-01T02:00:00Z",
               "scheduled_until": "2099-01-01T03:00:00+00:00", "components": {"Store": "operational"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, active) = post(
        "/api/v1/status/maintenances",
        json!({"name": "Node replacement", "scheduled_for": "2020-01-01T02:00:00Z",
               "scheduled_until": "2099-01-01T03:00:00Z", "components": {"Website": "operational"}}),
    )
    .await;
    assert_eq!(s, 201, "{active}");
    let active_id = active["incident"]["id"].as_str().unwrap();
    let (s, started) = send(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/status/incidents/{active_id}/updates"),
        &token,
        json!({"status": "in_progress"}),
    )
    .await;
    assert_eq!(s, 200, "{started}");

    let get = |path: &'static str| {
        let http = server.http.clone();
        let url = format!("{}{path}", server.base);
        async move {
            let res = http.get(url).header("Origin", "https://widgets.example").send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers().clone();
            assert_eq!(h["access-control-allow-origin"], "*", "{path}");
            assert!(h["cache-control"].to_str().unwrap().contains("max-age="), "{path}");
            assert!(h["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
            res.json::<Value>().await.unwrap()
        }
    };

    let summary = get("/api/v2/summary.json").await;
    assert_keys(&summary, &["page", "components", "incidents", "scheduled_maintenances", "status"], "summary");
    check_page(&summary["page"]);
    check_status(&summary["status"]);
    assert_eq!(summary["status"]["indicator"], "critical", "a major outage is critical");
    let components = summary["components"].as_array().unwrap();
    components.iter().for_each(check_component);
    let names: Vec<&str> = components.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in ["Chat widget", "Agent login", "Agent console", "Website", "Backend", "Store"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let group = components.iter().find(|c| c["name"] == "Backend").unwrap();
    let store = components.iter().find(|c| c["name"] == "Store").unwrap();
    assert_eq!(group["group"], true);
    assert_eq!(store["group_id"], group["id"]);
    let incidents = summary["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "only unresolved incidents");
    incidents.iter().for_each(|i| check_incident(i, false));
    let affected = &incidents[0]["incident_updates"][0]["affected_components"][0];
    assert_eq!(affected["name"], "Agent login");
    assert_eq!(affected["old_status"], "operational");
    assert_eq!(affected["new_status"], "major_outage");
    let maintenances = summary["scheduled_maintenances"].as_array().unwrap();
    assert_eq!(maintenances.len(), 2, "upcoming and active");
    maintenances.iter().for_each(|m| check_incident(m, true));

    let status = get("/api/v2/status.json").await;
    assert_keys(&status, &["page", "status"], "status.json");
    check_page(&status["page"]);
    check_status(&status["status"]);

    let components = get("/api/v2/components.json").await;
    assert_keys(&components, &["page", "components"], "components.json");
    components["components"].as_array().unwrap().iter().for_each(check_component);

    let all = get("/api/v2/incidents.json").await;
    assert_keys(&all, &["page", "incidents"], "incidents.json");
    let all = all["incidents"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    all.iter().for_each(|i| check_incident(i, false));
    let resolved = all.iter().find(|i| i["name"] == "Old blip").unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_time(&resolved["resolved_at"], "resolved_at");
    assert!(all.iter().any(|i| i["resolved_at"].is_null()), "null, not missing");

    let unresolved = get("/api/v2/incidents/unresolved.json").await;
    assert_keys(&unresolved, &["page", "incidents"], "unresolved.json");
    assert_eq!(unresolved["incidents"].as_array().unwrap().len(), 1);

    for (path, expected) in [
        ("/api/v2/scheduled-maintenances.json", vec!["Database upgrade", "Node replacement"]),
        ("/api/v2/scheduled-maintenances/upcoming.json", vec!["Database upgrade"]),
        ("/api/v2/scheduled-maintenances/active.json", vec!["Node replacement"]),
    ] {
        let v = get(path).await;
        assert_keys(&v, &["page", "scheduled_maintenances"], path);
        let list = v["scheduled_maintenances"].as_array().unwrap();
        list.iter().for_each(|m| check_incident(m, true));
        let mut names: Vec<&str> = list.iter().map(|m| m["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, expected, "{path}");
    }
    let active = get("/api/v2/scheduled-maintenances/active.json").await;
    let website = &active["scheduled_maintenances"][0]["components"][0];
    assert_eq!(website["status"], "under_maintenance", "in progress puts its components under maintenance");
    server.stop().await;
}

async fn admins_run_an_incident_from_open_to_postmortem_over_http(store: Store) {
    let (server, _tmp) = server_on(store, |_| {}).await;
    let token = operator(&server).await;
    let site = server.site().await;
    server.agent(&site, "agent@acme.example", 3).await;
    let (agent_token, _) = server.login("agent@acme.example", "password123").await;
    let post = |path: String, body: Value| send(&server, reqwest::Method::POST, path.leak(), &token, body);

    // Only admins, checked on the server.
    let body = json!({"name": "x"});
    let (s, e) = send(&server, reqwest::Method::POST, "/api/v1/status/incidents", &agent_token, body.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    let res = server.http.post(format!("{}/api/v1/status/incidents", server.base)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Bad input gets a clear JSON error.
    for (body, code, needle) in [
        (json!({"name": "x", "status": "exploded"}), 400, "status must be one of"),
        (json!({"name": "x", "impact": "apocalyptic"}), 400, "impact must be one of"),
        (json!({"status": "investigating"}), 400, "name"),
        (json!({"name": "  "}), 400, "name"),
        (json!({"name": "x", "components": {"Nope": "major_outage"}}), 404, "component"),
        (json!({"name": "x", "components": {"Website": "on_fire"}}), 400, "components.Website"),
        (json!({"name": "x", "status": "scheduled"}), 400, "status must be"),
        (json!({"name": "x", "color": "red"}), 400, "unknown field"),
        (json!({"name": "x".repeat(500)}), 400, "too long"),
    ] {
        let (s, e) = post("/api/v1/status/incidents".into(), body.clone()).await;
        assert_eq!(s, code, "{body} → {e}");
        let msg = e["error"]["message"].as_str().unwrap_or_else(|| panic!("no JSON error for {body}: {e}"));
        assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
    }
    let res = server
        .http
        .post(format!("{}/api/v1/status/incidents", server.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
    let (s, _) = post(
        "/api/v1/status/maintenances".into(),
        json!({"name": "m", "scheduled_for": "tomorrow", "scheduled_until": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s, 400);

    // Open.
    let (s, opened) = post(
        "/api/v1/status/incidents".into(),
        json!({"name": "Agents cannot log in", "components": {"Agent login": "major_outage"},
               "message": "We've detected an issue and are working to resolve this quickly."}),
    )
    .await;
    assert_eq!(s, 201, "{opened}");
    let id = opened["incident"]["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["incident"]["status"], "investigating");
    assert_eq!(opened["incident"]["impact"], "critical");
    let login_state = |v: &Value| {
        v["components"].as_array().unwrap().iter().find(|c| c["name"] == "Agent login").unwrap()["status"].clone()
    };
    let (_, comps) = server.get("/api/v2/components.json", None).await;
    assert_eq!(login_state(&comps), "major_outage");

    // Postmortems wait for the incident to be resolved.
    let (s, _) = send(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/status/incidents/{id}/postmortem"),
        &token,
        json!({"body": "x"}),
    )
    .await;
    assert_eq!(s, 409);

    // Update: identified, then monitoring with the component partly back.
    let (s, _) =
        post(format!("/api/v1/status/incidents/{id}/updates"), json!({"status": "identified", "message": "Found it."}))
            .await;
    assert_eq!(s, 200);
    let (s, monitoring) = post(
        format!("/api/v1/status/incidents/{id}/updates"),
        json!({"status": "monitoring", "message": "Recovering.", "components": {"Agent login": "degraded_performance"}}),
    )
    .await;
    assert_eq!(s, 200);
    let latest = &monitoring["incident"]["incident_updates"][0];
    assert_eq!(latest["status"], "monitoring");
    assert_eq!(latest["affected_components"][0]["old_status"], "major_outage");
    assert_eq!(latest["affected_components"][0]["new_status"], "degraded_performance");
    assert!(monitoring["incident"]["monitoring_at"].is_string());
    let (s, e) = post(format!("/api/v1/status/incidents/{id}/updates"), json!({"status": "completed"})).await;
    assert_eq!(s, 400, "a maintenance status on an incident: {e}");

    // Resolve: the component is operational again.
    let (s, resolved) = post(format!("/api/v1/status/incidents/{id}/resolve"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(resolved["incident"]["status"], "resolved");
    let (_, comps) = server.get("/api/v2/components.json", None).await;
    assert_eq!(login_state(&comps), "operational");
    let (_, unresolved) = server.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"], json!([]));
    let (_, status) = server.get("/api/v2/status.json", None).await;
    assert_eq!(status["status"]["description"], "All Systems Operational");

    // Postmortem.
    let (s, pm) = send(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/status/incidents/{id}/postmortem"),
        &token,
        json!({"body": "## Summary of incidents\n\nA network blip, then a **login storm**."}),
    )
    .await;
    assert_eq!(s, 200, "{pm}");
    assert_eq!(pm["incident"]["status"], "postmortem");

    // The incident page reads like the seed report.
    let html =
        server.http.get(format!("{}/status/incidents/{id}", server.base)).send().await.unwrap().text().await.unwrap();
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from the incident page"));
    assert!(at("Incident Report for Holdfast") < at("<h2>Postmortem</h2>"));
    assert!(at("<strong>login storm</strong>") < at("<h3>Resolved</h3>"));
    assert!(at("<h3>Resolved</h3>") < at("<h3>Monitoring</h3>"));
    assert!(at("<h3>Monitoring</h3>") < at("<h3>Identified</h3>"));
    assert!(at("<h3>Identified</h3>") < at("<h3>Investigating</h3>"));
    assert!(at("<h3>Investigating</h3>") < at("This incident affected: Agent login."));

    let (s, list) = server.get("/api/v1/status/incidents", Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(list["incidents"][0]["incident_updates"].as_array().unwrap().len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn postmortem_markdown_cannot_inject_script() {
    let (server, _tmp) = server_with(|_| {}).await;
    let token = operator(&server).await;
    let (_, opened) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        &token,
        json!({"name": "<script>alert('name')</script>", "message": "<img src=x onerror=alert(2)>", "status": "resolved"}),
    )
    .await;
    let id = opened["incident"]["id"].as_str().unwrap().to_owned();
    let payload = "# Root cause\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(3)>\n\n\
                   [click me](javascript:alert(4))\n\n<a href=\"javascript:alert(5)\">x</a>\n\n\
                   <iframe src=\"https://evil.example\"></iframe>\n\n<svg onload=alert(6)></svg>\n\n\
                   <p style=\"background:url(javascript:alert(7))\">styled</p>\n\nStill **here**.";
    let (s, _) = send(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/status/incidents/{id}/postmortem"),
        &token,
        json!({"body": payload}),
    )
    .await;
    assert_eq!(s, 200);
    for path in [format!("/status/incidents/{id}"), "/status".to_owned()] {
        let res = server.http.get(format!("{}{path}", server.base)).send().await.unwrap();
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = res.text().await.unwrap();
        let lower = html.to_lowercase();
        // Escaped text may mention them; no tag or attribute may carry them.
        for bad in [
            "<script>alert",
            "<img src=x onerror",
            "<svg onload",
            "href=\"javascript:",
            "<iframe",
            "style=\"background",
        ] {
            assert!(!lower.contains(bad), "{path} contains {bad:?}");
        }
        assert!(html.contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"), "the name is shown, escaped");
    }
    let html =
        server.http.get(format!("{}/status/incidents/{id}", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("<h1>Root cause</h1>") && html.contains("Still <strong>here</strong>."),
        "Markdown still renders"
    );
    server.stop().await;
}

async fn the_public_page_and_feeds_show_components_uptime_and_history(store: Store) {
    let (server, _tmp) = server_on(store, |_| {}).await;
    let token = operator(&server).await;
    let (_, opened) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        &token,
        json!({"name": "Slow & <odd> chat", "components": {"Chat widget": "degraded_performance"}, "message": "Slow."}),
    )
    .await;
    let id = opened["incident"]["id"].as_str().unwrap().to_owned();
    let website = server.state.status.find_component("Website").await.unwrap();
    let now = holdfast_server::store::now_ms();
    for ok in [true, true, true, false] {
        server.state.status.store.record_probe(&website.id, now, ok).await.unwrap();
    }
    server.state.status.store.record_probe(&website.id, now - 86_400_000 * 3, true).await.unwrap();

    let res = server.http.get(format!("{}/status", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = res.text().await.unwrap();
    for needle in
        ["Minor Service Outage", "Chat widget", "Agent login", "Agent console", "Website", "Degraded Performance"]
    {
        assert!(html.contains(needle), "{needle:?} missing");
    }
    assert!(html.contains("Slow &amp; &lt;odd&gt; chat"), "names are escaped");
    assert_eq!(html.matches("class=\"bar ").count(), 90 * 5, "90 daily bars per component");
    assert!(html.contains("75.00% of 4 checks passed"), "today's bar tells its ratio");
    assert!(html.contains("80.00% uptime"), "uptime over the days with checks");
    assert!(html.contains(&format!("href=\"/status/incidents/{id}\"")));
    assert!(html.contains("action=\"/status/subscribe\""), "a subscribe form");

    let atom = server.http.get(format!("{}/status/history.atom", server.base)).send().await.unwrap();
    assert!(atom.headers()["content-type"].to_str().unwrap().starts_with("application/atom+xml"));
    assert_eq!(atom.headers()["access-control-allow-origin"], "*");
    let atom = atom.text().await.unwrap();
    assert!(atom.starts_with("<?xml") && atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\""));
    assert_eq!(atom.matches("<entry>").count(), 1);
    assert!(atom.contains("<title>Slow &amp; &lt;odd&gt; chat</title>"));
    let rss =
        server.http.get(format!("{}/status/history.rss", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(rss.contains("<rss version=\"2.0\">") && rss.contains("<pubDate>") && rss.matches("<item>").count() == 1);

    let css = server.http.get(format!("{}/status/status.css", server.base)).send().await.unwrap();
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    let (s, _) = server.get("/status/incidents/nope", None).await;
    assert_eq!(s, 404);
    server.stop().await;
}

// ---- subscribers ----

/// One HTTP request as a receiver saw it.
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// A real HTTP receiver: answers the first `fail_first` requests with 500,
/// then 200, and reports every request.
pub(crate) async fn webhook_receiver(fail_first: usize) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (addr, rx, _) = receiver_over(None, fail_first).await;
    (addr, rx)
}

/// An HTTP receiver as `webhook_receiver`, over TLS when given an acceptor;
/// also reports every connection whose TLS handshake failed (the client
/// refused our certificate).
pub(crate) async fn receiver_over(
    tls: Option<TlsAcceptor>,
    fail_first: usize,
) -> (SocketAddr, mpsc::UnboundedReceiver<Received>, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (refused_tx, refused) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let status = if seen < fail_first { "500 Internal Server Error" } else { "200 OK" };
            let received = match &tls {
                None => answer_request(stream, status).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => answer_request(stream, status).await,
                    Err(_) => {
                        let _ = refused_tx.send(());
                        continue;
                    }
                },
            };
            if let Some(received) = received {
                seen += 1;
                let _ = tx.send(received);
            }
        }
    });
    (addr, rx, refused)
}

/// Read one HTTP request from `stream` and answer it with `status`.
async fn answer_request(stream: impl AsyncRead + AsyncWrite + Unpin, status: &str) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.ok()?;
    let mut stream = reader.into_inner();
    let _ = stream
        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
        .await;
    let _ = stream.shutdown().await;
    Some(Received { headers, body: String::from_utf8(body).unwrap() })
}

/// An `application/x-www-form-urlencoded` body, as a browser's form sends.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

pub(crate) async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv()).await.unwrap_or_else(|_| panic!("timed out waiting for {what}")).unwrap()
}

async fn a_webhook_subscriber_gets_a_signed_notification_retried_until_accepted(store: Store) {
    let (server, _tmp) = server_on(store, |c| {
        c.status.allow_private_webhooks = true;
        c.outbox.retry_min = Duration::from_millis(100);
    })
    .await;
    let token = operator(&server).await;
    let (addr, mut inbox) = webhook_receiver(1).await;

    for bad in [
        json!({"endpoint": "ftp://x.example/"}),
        json!({"endpoint": "not a url"}),
        json!({}),
        json!({"email": "a@b.example", "endpoint": "http://x.example/"}),
    ] {
        let (s, e) = server.post("/api/v2/subscribers.json", None, bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert_eq!(e["error"]["code"], "bad_request");
    }
    let (s, sub) =
        server.post("/api/v2/subscribers.json", None, json!({"endpoint": format!("http://{addr}/hook")})).await;
    assert_eq!(s, 201, "{sub}");
    let secret = sub["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);

    let started = holdfast_server::store::now_ms() / 1000;
    let (s, _) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        &token,
        json!({"name": "Chat is down", "components": {"Chat widget": "major_outage"}, "message": "Investigating."}),
    )
    .await;
    assert_eq!(s, 201);

    let first = next(&mut inbox, "the first delivery").await;
    let second = next(&mut inbox, "the retry after a 500").await;
    for r in [&first, &second] {
        let ts: i64 = r.header("x-holdfast-timestamp").parse().expect("a timestamp header");
        assert!((started - 1..=started + 30).contains(&ts), "a fresh timestamp");
        assert_eq!(
            r.header("x-holdfast-signature"),
            holdfast_server::status::notify::sign(&secret, ts, &r.body),
            "signed"
        );
        assert_ne!(r.header("x-holdfast-signature"), holdfast_server::status::notify::sign("wrong", ts, &r.body));
        assert!(r.header("content-type").starts_with("application/json"));
    }
    let body: Value = serde_json::from_str(&second.body).unwrap();
    assert_keys(&body, &["meta", "page", "incident"], "notification");
    assert_keys(&body["meta"], &["unsubscribe", "documentation", "generated_at"], "meta");
    assert!(body["meta"]["unsubscribe"].as_str().unwrap().contains("/status/subscribers/unsubscribe?token="));
    assert_time(&body["meta"]["generated_at"], "generated_at");
    assert_keys(&body["page"], &["id", "status_indicator", "status_description"], "page");
    assert_eq!(body["page"]["status_indicator"], "critical");
    check_incident(&body["incident"], false);
    assert_eq!(body["incident"]["name"], "Chat is down");

    // A component change outside an incident is a component_update.
    let chat = server.state.status.find_component("Chat widget").await.unwrap();
    let (s, _) = send(
        &server,
        reqwest::Method::PATCH,
        &format!("/api/v1/status/components/{}", chat.id),
        &token,
        json!({"status": "partial_outage"}),
    )
    .await;
    assert_eq!(s, 200);
    let third = next(&mut inbox, "the component update").await;
    let body: Value = serde_json::from_str(&third.body).unwrap();
    assert_keys(&body, &["meta", "page", "component_update", "component"], "component notification");
    assert_keys(
        &body["component_update"],
        &["created_at", "new_status", "old_status", "id", "component_id"],
        "component_update",
    );
    assert_eq!(body["component_update"]["old_status"], "major_outage");
    assert_eq!(body["component_update"]["new_status"], "partial_outage");
    check_component(&body["component"]);
    server.stop().await;
}

/// A real SMTP listener that accepts every message and reports its text.
async fn smtp_listener() -> (u16, mpsc::UnboundedReceiver<Mail>) {
    smtp_relay(Relay::default()).await
}

/// How a test SMTP relay secures its connections and whom it lets send.
#[derive(Clone, Default)]
pub(crate) struct Relay {
    /// Offer STARTTLS with this (or, with `implicit`, speak TLS at once).
    pub tls: Option<TlsAcceptor>,
    pub implicit: bool,
    /// Demand `AUTH PLAIN` with this user and password (offered over TLS only).
    pub login: Option<(String, String)>,
}

/// A message as the relay received it.
pub(crate) struct Mail {
    pub text: String,
    /// It came over TLS (STARTTLS or implicit).
    pub over_tls: bool,
    /// Who logged in to send it.
    pub user: Option<String>,
}

/// A real SMTP relay on loopback that accepts every message (from a
/// logged-in user, when it demands a login) and reports it.
pub(crate) async fn smtp_relay(relay: Relay) -> (u16, mpsc::UnboundedReceiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, relay) = (tx.clone(), relay.clone());
            tokio::spawn(async move {
                match (&relay.tls, relay.implicit) {
                    (Some(tls), true) => {
                        let Ok(stream) = tls.accept(stream).await else { return };
                        smtp_session(BufReader::new(stream), &relay, true, &tx).await;
                    }
                    _ => {
                        let upgrade = smtp_session(BufReader::new(stream), &relay, false, &tx).await;
                        if let (Some(stream), Some(tls)) = (upgrade, &relay.tls)
                            && let Ok(stream) = tls.accept(stream).await
                        {
                            smtp_session(BufReader::new(stream), &relay, true, &tx).await;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

/// One SMTP conversation; returns the stream when the client asked for
/// STARTTLS (the conversation goes on over TLS, greeted by the client).
async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: BufReader<S>,
    relay: &Relay,
    over_tls: bool,
    tx: &mpsc::UnboundedSender<Mail>,
) -> Option<S> {
    use base64::Engine;
    if !over_tls || relay.implicit {
        conn.get_mut().write_all(b"220 smtp.test ESMTP\r\n").await.ok()?;
    }
    let mut data: Option<String> = None;
    let mut user = None;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(message) = data.as_mut() {
            if line == "." {
                let text = data.take().unwrap();
                let _ = tx.send(Mail { text, over_tls, user: user.clone() });
                conn.get_mut().write_all(b"250 2.0.0 queued\r\n").await.ok()?;
            } else {
                message.push_str(line.strip_prefix('.').unwrap_or(line));
                message.push('\n');
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut ehlo = String::from("250-smtp.test\r\n");
                if relay.tls.is_some() && !over_tls {
                    ehlo.push_str("250-STARTTLS\r\n");
                }
                if relay.login.is_some() && over_tls {
                    ehlo.push_str("250-AUTH PLAIN\r\n");
                }
                ehlo + "250 8BITMIME\r\n"
            }
            "STARTTLS" if relay.tls.is_some() && !over_tls => {
                conn.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await.ok()?;
                return Some(conn.into_inner());
            }
            "AUTH" if over_tls && words.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(words.next().unwrap_or("")).ok()?;
                let fields: Vec<String> =
                    decoded.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                match (&relay.login, fields.as_slice()) {
                    (Some((u, p)), [_, given_user, given_password]) if given_user == u && given_password == p => {
                        user = Some(u.clone());
                        "235 2.7.0 accepted\r\n".into()
                    }
                    _ => "535 5.7.8 bad credentials\r\n".into(),
                }
            }
            "MAIL" if relay.login.is_some() && user.is_none() => "530 5.7.0 log in first\r\n".into(),
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 OK\r\n".into(),
            "DATA" => {
                data = Some(String::new());
                "354 end with .\r\n".into()
            }
            "QUIT" => {
                let _ = conn.get_mut().write_all(b"221 bye\r\n").await;
                let _ = conn.get_mut().shutdown().await;
                return None;
            }
            _ => "502 not implemented\r\n".to_owned(),
        };
        conn.get_mut().write_all(reply.as_bytes()).await.ok()?;
    }
}

/// Undo quoted-printable, as a mail client would.
fn decode_quoted_printable(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && b.get(i + 1) == Some(&b'\n') {
            i += 2;
        } else if b[i] == b'=' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn an_email_subscriber_confirms_by_link_gets_mail_and_unsubscribes() {
    let (port, mut mail) = smtp_listener().await;
    let (server, _tmp) = server_with(|c| {
        c.status.smtp = Some(holdfast_server::status::SmtpConfig::new("127.0.0.1", port, "status@holdfast.test"));
    })
    .await;
    let token = operator(&server).await;

    let (s, e) = server.post("/api/v2/subscribers.json", None, json!({"email": "not-an-email"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("bad_request")));
    let (s, sub) = server.post("/api/v2/subscribers.json", None, json!({"email": "Reader@Example.com"})).await;
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["subscriber"]["confirmed"], false);

    // Unconfirmed subscribers get nothing but the confirmation.
    let confirmation = decode_quoted_printable(&next(&mut mail, "the confirmation mail").await.text);
    assert!(confirmation.contains("To: reader@example.com"), "{confirmation}");
    let link = confirmation
        .lines()
        .find_map(|l| l.strip_prefix("Confirm: "))
        .unwrap_or_else(|| panic!("no confirm link in {confirmation}"))
        .trim()
        .to_owned();
    let path = link.strip_prefix(&server.base).unwrap_or_else(|| panic!("{link:?} does not point at this page"));
    let res = server.http.get(format!("{}{path}", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{confirmation}");
    assert!(res.text().await.unwrap().contains("Subscription confirmed"));
    let res = server.http.get(format!("{}/status/subscribers/confirm?token=forged", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let (s, _) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        &token,
        json!({"name": "Agents logged out", "components": {"Agent login": "major_outage"}, "message": "We are on it."}),
    )
    .await;
    assert_eq!(s, 201);
    let notice = decode_quoted_printable(&next(&mut mail, "the incident mail").await.text);
    assert!(notice.contains("Subject: [Holdfast] investigating: Agents logged out"), "{notice}");
    assert!(notice.contains("We are on it."), "{notice}");
    let unsubscribe = notice
        .lines()
        .find_map(|l| l.strip_prefix("Unsubscribe: "))
        .unwrap_or_else(|| panic!("no unsubscribe link in {notice}"))
        .trim()
        .to_owned();
    let token_param = unsubscribe.split("token=").nth(1).unwrap().to_owned();
    let page = server.http.get(&unsubscribe).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "unsubscribing takes a click, not a prefetch");
    let res = server
        .http
        .post(format!("{}/status/subscribers/unsubscribe", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token_param.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(server.state.status.store.subscribers().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_subscribe_form_works_without_javascript() {
    let (server, _tmp) = server_with(|c| c.status.allow_private_webhooks = true).await;
    let res = server
        .http
        .post(format!("{}/status/subscribe", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("endpoint", "http://127.0.0.1:9/hook"), ("email", "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("signed with this secret"));
    let res = server
        .http
        .post(format!("{}/status/subscribe", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", "a@b.example")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "email is off without SMTP");
    assert!(res.text().await.unwrap().contains("not enabled"));
    server.stop().await;
}

// ---- monitors ----

async fn a_monitor_opens_an_incident_when_its_port_stops_answering_and_moves_it_to_monitoring(store: Store) {
    let (server, _tmp) = server_on(store, |c| {
        c.status.allow_private_monitors = true;
        c.status.fail_after = 2;
        c.status.quiet_period = Duration::from_millis(400);
        c.status.monitor_tick = Duration::from_millis(20);
        c.status.min_interval = Duration::from_millis(10);
        c.status.check_timeout = Duration::from_millis(500);
    })
    .await;
    let token = operator(&server).await;
    // An address of the loopback net nothing else here listens on, so once
    // the port is freed no other test's server can take it and answer.
    let upstream = TcpListener::bind("127.1.2.3:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let answering = tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            drop(s);
        }
    });
    let (s, e) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/monitors",
        &token,
        json!({"name": "Website TCP", "component": "Website", "url": "ftp://x.example/", "interval_ms": 50}),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, m) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/monitors",
        &token,
        json!({"name": "Website TCP", "component": "Website", "url": format!("tcp://{addr}"), "interval_ms": 50}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let website = server.state.status.find_component("Website").await.unwrap();

    // Passing checks are recorded and open nothing.
    eventually("passing checks", || async {
        let days = server.state.status.store.uptime(0).await.unwrap();
        days.iter().any(|d| d.component_id == website.id && d.ok >= 3).then_some(())
    })
    .await;
    let (_, unresolved) = server.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"], json!([]));

    // The port stops answering: an incident opens by itself.
    answering.abort();
    let _ = answering.await;
    let incident = eventually("an auto-opened incident", || async {
        let (_, v) = server.get("/api/v2/incidents/unresolved.json", None).await;
        v["incidents"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(incident["name"], "Website is not responding");
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["impact"], "critical");
    assert_eq!(incident["components"][0]["name"], "Website");
    assert_eq!(incident["components"][0]["status"], "major_outage");
    assert!(incident["incident_updates"][0]["body"].as_str().unwrap().contains("Website TCP"));
    let id = incident["id"].as_str().unwrap().to_owned();
    // Three more failed checks later, still the one incident.
    let failures = || async {
        let monitors = server.state.status.store.monitors().await.unwrap();
        monitors.into_iter().find(|m| m.name == "Website TCP").unwrap().failures
    };
    let opened_at = failures().await;
    eventually("three more failed checks", || async { (failures().await >= opened_at + 3).then_some(()) }).await;
    let (_, v) = server.get("/api/v2/incidents.json", None).await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "one incident, not one per failed check");

    // The port answers again: after a quiet period, monitoring.
    let upstream = TcpListener::bind(addr).await.expect("rebind the same port");
    let _answering = tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            drop(s);
        }
    });
    let incident = eventually("monitoring", || async {
        let (_, v) = server.get("/api/v2/incidents/unresolved.json", None).await;
        v["incidents"].as_array().unwrap().first().filter(|i| i["status"] == "monitoring").cloned()
    })
    .await;
    assert_eq!(incident["id"], id.as_str());
    assert_eq!(incident["components"][0]["status"], "operational");
    assert!(incident["monitoring_at"].is_string());
    let updates = incident["incident_updates"].as_array().unwrap();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["affected_components"][0]["old_status"], "major_outage");
    assert_eq!(updates[0]["affected_components"][0]["new_status"], "operational");
    let days = server.state.status.store.uptime(0).await.unwrap();
    let today = days.iter().find(|d| d.component_id == website.id).unwrap();
    assert!(today.ok < today.total, "failed checks count against uptime");
    server.stop().await;
}

// ---- the built-in probes ----

/// A server whose built-in probes run every 50 ms. Logins are not rate
/// limited here: the login probe logs in many times a second.
async fn probe_server(tune: impl FnOnce(&mut Config)) -> (TestServer, (tempfile::TempDir, Store)) {
    server_with(|c| {
        c.status.self_probe = true;
        c.status.self_probe_interval = Duration::from_millis(50);
        c.status.monitor_tick = Duration::from_millis(20);
        // Generous: this machine is shared, and a password hash is slow in a
        // debug build; the tests of the limits set their own.
        c.status.login_probe_slow = Duration::from_secs(8);
        c.status.store_probe_slow = Duration::from_secs(8);
        c.status.check_timeout = Duration::from_secs(9);
        c.login_limits.account_burst = 100_000;
        tune(c)
    })
    .await
}

/// The login probe's account, once the probe has made it.
async fn probe_account(server: &TestServer) -> ProbeAccount {
    let stored =
        eventually("the probe account", || async { server.state.store.meta_get(PROBE_ACCOUNT_KEY).await.unwrap() })
            .await;
    let account: ProbeAccount = serde_json::from_str(&stored).unwrap();
    eventually("the probe agent", || async { server.state.store.agent_by_email(&account.email).await.unwrap() }).await;
    account
}

async fn set_probe_account(server: &TestServer, account: &ProbeAccount) {
    let value = serde_json::to_string(account).unwrap();
    server.state.store.meta_set(PROBE_ACCOUNT_KEY, &value).await.unwrap();
}

/// Wait until `component` has at least `n` probe results today, all passed.
async fn passing_checks(server: &TestServer, component: &str, n: i64) {
    let id = server.state.status.find_component(component).await.unwrap().id;
    eventually(&format!("{n} passing checks of {component}"), || async {
        let days = server.state.status.store.uptime(0).await.unwrap();
        days.iter().any(|d| d.component_id == id && d.ok >= n && d.ok == d.total).then_some(())
    })
    .await;
}

/// Wait for an unresolved incident on `component` in `status`.
async fn incident_on(server: &TestServer, component: &str, status: &str) -> Value {
    eventually(&format!("a {status} incident on {component}"), || async {
        let (_, v) = server.get("/api/v2/incidents/unresolved.json", None).await;
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["status"] == status && i["components"][0]["name"] == component)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn built_in_probes_check_readyz_a_visitor_an_agent_login_and_the_store() {
    let (server, _tmp) = probe_server(|c| c.status.login_probe_every = 2).await;
    let chat = server.state.status.find_component("Chat widget").await.unwrap();
    let console = server.state.status.find_component("Agent console").await.unwrap();
    let login = server.state.status.find_component("Agent login").await.unwrap();
    let delivery = server.state.status.find_component("Message delivery").await.unwrap();
    let probes = eventually("the built-in probes", || async {
        let builtin: Vec<_> =
            server.state.status.store.monitors().await.unwrap().into_iter().filter(|m| m.builtin).collect();
        (builtin.len() == 4).then_some(builtin)
    })
    .await;
    let readyz = probes.iter().find(|m| m.target.ends_with("/readyz")).unwrap();
    assert_eq!(readyz.target, format!("{}/readyz", server.base));
    assert_eq!(readyz.component_id, console.id);
    let visitor = probes.iter().find(|m| m.target.starts_with("visitor+")).unwrap();
    assert_eq!(visitor.component_id, chat.id);
    let agent = probes.iter().find(|m| m.target.starts_with("agent+")).unwrap();
    assert_eq!(agent.target, format!("agent+{}/", server.base));
    assert_eq!(agent.component_id, login.id);
    let store = probes.iter().find(|m| m.target == "store://chat").unwrap();
    assert_eq!(store.component_id, delivery.id);
    // The probe account is never written where admins read monitors.
    let account = probe_account(&server).await;
    let token = operator(&server).await;
    let (status, listed) = server.get("/api/v1/status/monitors", Some(&token)).await;
    assert_eq!(status, 200);
    let listed = listed.to_string();
    assert!(!listed.contains(&account.email) && !listed.contains(&account.password), "{listed}");
    for component in ["Chat widget", "Agent console", "Agent login", "Message delivery"] {
        passing_checks(&server, component, 3).await;
    }
    let (_, unresolved) = server.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"], json!([]));
    // A password login every other check, and each ends the session before
    // it: after a dozen checks the probe has one live session (two while a
    // check is between its login and that logout), not six.
    passing_checks(&server, "Agent login", 12).await;
    let probe = server.state.store.agent_by_email(&account.email).await.unwrap().unwrap();
    let live = server.state.store.revoke_agent_sessions(&probe.id, holdfast_server::store::now_ms()).await.unwrap();
    assert!((1..=2).contains(&live.len()), "{} live probe sessions", live.len());
    server.stop().await;
}

/// Probe results of `component` so far today: (passed, all).
async fn checks_of(server: &TestServer, component: &str) -> (i64, i64) {
    let id = server.state.status.find_component(component).await.unwrap().id;
    let days = server.state.status.store.uptime(0).await.unwrap();
    days.iter().filter(|d| d.component_id == id).fold((0, 0), |(ok, all), d| (ok + d.ok, all + d.total))
}

#[tokio::test]
async fn limiting_the_widget_to_allowed_origins_opens_no_false_outage() {
    // A monitor opens an incident after its first failed check, so one
    // refused visitor session would show on the page.
    let (server, _tmp) = probe_server(|c| c.status.fail_after = 1).await;
    passing_checks(&server, "Chat widget", 2).await;
    let token = operator(&server).await;
    let settings = json!({"allowed_origins": ["https://shop.example"]});
    let put = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&token);
    let saved = put.json(&settings).send().await.unwrap();
    assert_eq!(saved.status().as_u16(), 200);
    // Visitors' pages elsewhere, or that send no origin, are still refused.
    let key = server.site().await.widget_key;
    let refused = server.http.post(format!("{}/api/v1/visitor/session", server.base)).json(&json!({"widget_key": key}));
    assert_eq!(refused.send().await.unwrap().status().as_u16(), 403);

    // The probe's interval is 50 ms: twenty more checks wait it out many times over.
    let (_, before) = checks_of(&server, "Chat widget").await;
    let after = eventually("twenty more checks of the chat widget", || async {
        let (ok, all) = checks_of(&server, "Chat widget").await;
        (all >= before + 20).then_some((ok, all))
    })
    .await;
    assert_eq!(after.0, after.1, "every check passed: {after:?}");
    let (_, unresolved) = server.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"], json!([]));
    let (_, summary) = server.get("/api/v2/status.json", None).await;
    assert_eq!(summary["status"]["indicator"], "none", "{summary}");
    server.stop().await;
}

#[tokio::test]
async fn the_login_probe_account_is_hidden_from_people_and_never_given_a_chat() {
    let (server, _tmp) = probe_server(|_| {}).await;
    let site = server.site().await;
    let account = probe_account(&server).await;
    let probe = server.state.store.agent_by_email(&account.email).await.unwrap().unwrap();
    assert_eq!(probe.role, Role::Probe);
    assert_eq!(probe.site_id, site.id);

    // Admins do not see it, cannot change it, cannot make another.
    let token = operator(&server).await;
    let (status, agents) = server.get("/api/v1/admin/agents", Some(&token)).await;
    assert_eq!(status, 200);
    let agents = agents.as_array().unwrap();
    assert!(!agents.is_empty());
    assert!(agents.iter().all(|a| a["id"] != probe.id.as_str() && a["role"] != "probe"), "{agents:?}");
    let path = format!("/api/v1/admin/agents/{}", probe.id);
    let (status, _) = send(&server, reqwest::Method::PATCH, &path, &token, json!({"role": "admin"})).await;
    assert_eq!(status, 404);
    assert_eq!(server.state.store.agent(&probe.id).await.unwrap().unwrap().role, Role::Probe);
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/admin/agents",
        &token,
        json!({"email": "fake-probe@acme.example", "name": "P", "password": "12345678", "role": "probe"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin or agent"), "{body}");

    // Its credentials log in and open its own welcome, and nothing else.
    let (access, _) = server.login(&account.email, &account.password).await;
    let (status, me) = server.get("/api/v1/me", Some(&access)).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("probe")));
    for path in ["/api/v1/agents", "/api/v1/conversations", "/api/v1/canned"] {
        let (status, body) = server.get(path, Some(&access)).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let res = server
        .http
        .post(format!("{}/api/v1/console/login", server.base))
        .header("x-holdfast-csrf", "1")
        .json(&json!({"email": account.email, "password": account.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the console is for people");
    let mut sock = Client::connect(&server, "/api/v1/agent/socket", &access, HashMap::new()).await;
    assert_eq!(sock.welcome["role"], "probe");
    assert!(sock.next().await.is_none(), "the probe's socket closes after its welcome");

    // Never given a chat: even in the default group and online (which no
    // interface allows) and connecting while a visitor writes.
    let groups = server.state.store.groups(&site.id).await.unwrap();
    let general = groups.iter().find(|g| g.is_default).unwrap();
    server.state.store.add_agent_to_group(&probe.id, &general.id).await.unwrap();
    server.state.store.set_availability(&probe.id, Availability::Online).await.unwrap();
    server.agent(&site, "human@acme.example", 5).await;
    let (_, visitor_token) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &visitor_token, HashMap::new()).await;
    assert_eq!(visitor.welcome["agents_online"], false, "the probe is nobody to chat with");
    let _probe_again = Client::connect(&server, "/api/v1/agent/socket", &access, HashMap::new()).await;
    let ack = visitor.say(None, "c1", "Anyone there?").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    visitor.wait_for(|f| f["type"] == "queue_position").await;
    let waiting = server.state.store.conversation(&conv).await.unwrap().unwrap();
    assert_eq!(waiting.agent_id, None, "queued, not given to the probe");

    // A person comes online: the chat is theirs, and the probe is not in
    // their list of colleagues nor someone to transfer to.
    let (mut human, _) = server.online_agent("human@acme.example").await;
    let colleagues = human.welcome["agents"].as_array().unwrap();
    assert!(colleagues.iter().all(|a| a["id"] != probe.id.as_str()), "{colleagues:?}");
    let assigned = visitor.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["name"], "human");
    human.send(json!({"type": "transfer", "conv": conv, "to_agent": probe.id})).await;
    let refused = human.wait_for(|f| f["type"] == "error").await;
    assert_eq!(refused["code"], "not_found", "{refused}");
    let conversation = server.state.store.conversation(&conv).await.unwrap().unwrap();
    assert_ne!(conversation.agent_id.as_deref(), Some(probe.id.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_probe_password_takes_agent_login_down_and_the_right_one_brings_it_back() {
    let (server, _tmp) = probe_server(|c| {
        c.status.fail_after = 2;
        c.status.quiet_period = Duration::from_millis(300);
        c.status.login_probe_every = 3;
    })
    .await;
    let account = probe_account(&server).await;
    passing_checks(&server, "Agent login", 4).await;

    // Refreshes keep passing, but a password login comes within three
    // checks, fails, and every check after it logs in again.
    set_probe_account(&server, &ProbeAccount { password: "not-the-password".into(), ..account.clone() }).await;
    let incident = incident_on(&server, "Agent login", "investigating").await;
    assert_eq!(incident["name"], "Agent login is not responding");
    assert_eq!(incident["impact"], "critical");
    assert_eq!(incident["components"][0]["status"], "major_outage");
    let body = incident["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains("Holdfast agent login") && body.contains("401"), "{body}");
    let (_, unresolved) = server.get("/api/v2/incidents/unresolved.json", None).await;
    assert_eq!(unresolved["incidents"].as_array().unwrap().len(), 1, "only agent login is down: {unresolved}");

    set_probe_account(&server, &account).await;
    let recovered = incident_on(&server, "Agent login", "monitoring").await;
    assert_eq!(recovered["id"], incident["id"]);
    assert_eq!(recovered["components"][0]["status"], "operational");
    server.stop().await;
}

#[tokio::test]
async fn with_the_store_down_agent_login_and_message_delivery_go_down_and_recover() {
    let (server, _tmp) = probe_server(|c| {
        c.fault_injection = true;
        c.status.fail_after = 2;
        c.status.quiet_period = Duration::from_millis(300);
    })
    .await;
    let token = operator(&server).await;
    passing_checks(&server, "Agent login", 2).await;
    passing_checks(&server, "Message delivery", 2).await;

    let (status, _) =
        send(&server, reqwest::Method::POST, "/api/v1/ops/faults", &token, json!({"store": "fail"})).await;
    assert_eq!(status, 200);
    let login = incident_on(&server, "Agent login", "investigating").await;
    let body = login["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains("Holdfast agent login"), "{body}");
    let delivery = incident_on(&server, "Message delivery", "investigating").await;
    let body = delivery["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains("Holdfast store latency") && body.contains("the store write failed"), "{body}");
    assert!(!body.contains("injected"), "the detail is logged, not published: {body}");

    let (status, _) = send(&server, reqwest::Method::POST, "/api/v1/ops/faults", &token, json!({"store": "ok"})).await;
    assert_eq!(status, 200);
    for (component, opened) in [("Agent login", &login), ("Message delivery", &delivery)] {
        let recovered = incident_on(&server, component, "monitoring").await;
        assert_eq!(recovered["id"], opened["id"]);
        assert_eq!(recovered["components"][0]["status"], "operational");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_login_or_store_round_trip_slower_than_its_limit_fails() {
    let (server, _tmp) = probe_server(|c| {
        c.status.fail_after = 2;
        c.status.login_probe_slow = Duration::from_nanos(1);
        c.status.store_probe_slow = Duration::from_nanos(1);
    })
    .await;
    let login = incident_on(&server, "Agent login", "investigating").await;
    let body = login["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains("login took") && body.contains("the limit is"), "{body}");
    let delivery = incident_on(&server, "Message delivery", "investigating").await;
    let body = delivery["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains("a write and a read took"), "{body}");
    let (_, chat) = server.get("/api/v2/components.json", None).await;
    let widget = chat["components"].as_array().unwrap().iter().find(|c| c["name"] == "Chat widget").cloned().unwrap();
    assert_eq!(widget["status"], "operational", "only the probes with a limit failed");
    // Every failed check logged in with the password; each ended the
    // session before it all the same.
    let login_id = server.state.status.find_component("Agent login").await.unwrap().id;
    eventually("eight failed login checks", || async {
        let days = server.state.status.store.uptime(0).await.unwrap();
        days.iter().any(|d| d.component_id == login_id && d.total - d.ok >= 8).then_some(())
    })
    .await;
    let account = probe_account(&server).await;
    let probe = server.state.store.agent_by_email(&account.email).await.unwrap().unwrap();
    let live = server.state.store.revoke_agent_sessions(&probe.id, holdfast_server::store::now_ms()).await.unwrap();
    assert!((1..=2).contains(&live.len()), "{} live probe sessions", live.len());
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_goes_on_from_its_monitors_last_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let tune = |c: &mut Config| {
        c.status.self_probe = false;
        c.status.allow_private_monitors = true;
        c.status.fail_after = 3;
        c.status.quiet_period = Duration::from_secs(3);
        c.status.monitor_tick = Duration::from_millis(20);
        c.status.min_interval = Duration::from_millis(10);
        c.status.lead_check = Duration::from_millis(50);
    };
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let server = TestServer::start_in(tmp.path(), tune).await;
    let token = operator(&server).await;
    let monitor =
        json!({"name": "Website TCP", "component": "Website", "url": format!("tcp://{addr}"), "interval_ms": 100});
    let (s, _) = send(&server, reqwest::Method::POST, "/api/v1/status/monitors", &token, monitor).await;
    assert_eq!(s, 201);
    let failures = |server: &TestServer| {
        let store = server.state.status.store.clone();
        async move { store.monitors().await.unwrap().into_iter().find(|m| m.name == "Website TCP").unwrap() }
    };
    let incident = eventually("an auto-opened incident", || async {
        let (_, v) = server.get("/api/v2/incidents/unresolved.json", None).await;
        v["incidents"].as_array().unwrap().first().cloned()
    })
    .await;
    let id = incident["id"].as_str().unwrap().to_owned();
    server.stop().await;
    let stopped = holdfast_server::store::sqlite::SqliteStore::open(tmp.path()).await.unwrap();
    let counted = stopped.status_store().monitors().await.unwrap().remove(0);
    stopped.close().await;
    assert!(counted.failures >= 3, "{counted:?}");

    // Restarted while the port is still dead: the count goes on.
    let server = TestServer::start_in(tmp.path(), tune).await;
    let next = eventually("a check after the restart", || async {
        let m = failures(&server).await;
        (m.last_check_at != counted.last_check_at).then_some(m)
    })
    .await;
    assert_eq!(next.failures, counted.failures + 1, "counting went on");
    server.stop().await;

    // Restarted once the port answers: the quiet period still counts from
    // the last failure before the restart, not from the restart.
    let upstream = TcpListener::bind(addr).await.expect("rebind the port");
    let _answering = tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            drop(s);
        }
    });
    let server = TestServer::start_in(tmp.path(), tune).await;
    let passed = eventually("a passing check after the restart", || async {
        let m = failures(&server).await;
        (m.failures == 0).then_some(m.last_check_at)
    })
    .await;
    // The check after it: the loop has weighed a passing check by then.
    eventually("another check", || async { (failures(&server).await.last_check_at > passed).then_some(()) }).await;
    let (_, v) = server.get("/api/v2/incidents.json", None).await;
    assert_eq!(v["incidents"][0]["status"], "investigating", "not quiet for 3 s yet");
    let monitoring = eventually("monitoring after the quiet period", || async {
        let (_, v) = server.get("/api/v2/incidents.json", None).await;
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.as_str() && i["status"] == "monitoring")
            .cloned()
    })
    .await;
    let last_failure = failures(&server).await.last_failure_at.unwrap();
    let since = holdfast_server::status::time::parse_iso8601(monitoring["monitoring_at"].as_str().unwrap()).unwrap()
        - last_failure;
    assert!(since >= 3000, "monitoring {since} ms after the last failure");
    server.stop().await;
}

// ---- the command line ----

fn holdfast(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take().map(|mut s| s.flush());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok_json(args: &[&str]) -> Value {
    let out = holdfast(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
}

#[tokio::test]
async fn operators_run_an_incident_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let opened = ok_json(&[
        "incident",
        "open",
        "--name",
        "Agent login down",
        "--status",
        "investigating",
        "--component",
        "Agent login",
        "--message",
        "We've detected an issue.",
        "--json",
        "--data",
        data,
    ]);
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["status"], "investigating");
    assert_eq!(opened["updates"][0]["affected"][0]["new_status"], "major_outage");
    ok_json(&[
        "incident",
        "update",
        &id,
        "--status",
        "identified",
        "--message",
        "A health check.",
        "--json",
        "--data",
        data,
    ]);
    ok_json(&[
        "incident",
        "update",
        &id,
        "--status",
        "monitoring",
        "--component",
        "Agent login=operational",
        "--message",
        "We've recovered.",
        "--json",
        "--data",
        data,
    ]);
    let resolved = ok_json(&["incident", "update", &id, "--status", "resolved", "--json", "--data", data]);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["updates"].as_array().unwrap().len(), 4);
    let out = holdfast(&["incident", "list", "--data", data]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("{id}  resolved")), "{}", text(&out.stdout));

    for (args, expected) in [
        (vec!["incident", "open", "--name", "x", "--status", "exploded", "--data", data], "--status must be one of"),
        (vec!["incident", "open", "--name", "x", "--status", "scheduled", "--data", data], "does not apply"),
        (vec!["incident", "open", "--name", "x", "--component", "Nope", "--data", data], "no component named"),
        (
            vec!["incident", "open", "--name", "x", "--component", "Website=on_fire", "--data", data],
            "the state must be",
        ),
        (vec!["incident", "update", "nope", "--status", "resolved", "--data", data], "no incident with id nope"),
        (
            vec!["monitor", "add", "--name", "m", "--component", "Website", "--url", "gopher://x", "--data", data],
            "http://",
        ),
        (
            vec![
                "monitor",
                "add",
                "--name",
                "m",
                "--component",
                "Nope",
                "--url",
                "tcp://db.example.com:5432",
                "--data",
                data,
            ],
            "no component",
        ),
        (
            vec![
                "monitor",
                "add",
                "--name",
                "m",
                "--component",
                "Website",
                "--url",
                "tcp://127.0.0.1:9",
                "--data",
                data,
            ],
            "must be a public address",
        ),
        (vec!["monitor", "delete", "nope", "--data", data], "no monitor with id nope"),
        (
            vec![
                "monitor",
                "add",
                "--name",
                "m",
                "--component",
                "Website",
                "--url",
                "tcp://127.0.0.1:9",
                "--interval",
                "1",
                "--data",
                data,
            ],
            "5..=86400",
        ),
    ] {
        let out = holdfast(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    let m = ok_json(&[
        "monitor",
        "add",
        "--name",
        "Site",
        "--component",
        "website",
        "--url",
        "http://127.0.0.1:9/health",
        "--interval",
        "60",
        "--allow-private-monitors",
        "--json",
        "--data",
        data,
    ]);
    assert_eq!(m["interval_ms"], 60_000);
    let public = ok_json(&[
        "monitor",
        "add",
        "--name",
        "Public site",
        "--component",
        "website",
        "--url",
        "https://www.example.com/",
        "--json",
        "--data",
        data,
    ]);
    let list = ok_json(&["monitor", "list", "--json", "--data", data]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let out = holdfast(&["monitor", "delete", public["id"].as_str().unwrap(), "--data", data]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = ok_json(&["monitor", "list", "--json", "--data", data]);
    assert_eq!(list.as_array().unwrap().iter().map(|m| &m["name"]).collect::<Vec<_>>(), ["Site"]);

    // A server on the same data dir shows what the CLI did.
    let server = TestServer::start_in(tmp.path(), |c| c.status.self_probe = false).await;
    let (_, all) = server.get("/api/v2/incidents.json", None).await;
    assert_eq!(all["incidents"][0]["id"], id.as_str());
    assert_eq!(all["incidents"][0]["incident_updates"][0]["status"], "resolved");
    server.stop().await;
}

#[tokio::test]
async fn status_export_writes_a_static_copy_and_refreshes_it_with_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let out_dir = tmp.path().join("site");
    let opened =
        ok_json(&["incident", "open", "--name", "Exported outage", "--component", "Website", "--json", "--data", data]);
    let id = opened["id"].as_str().unwrap().to_owned();
    let out = holdfast(&[
        "status",
        "export",
        out_dir.to_str().unwrap(),
        "--public-url",
        "https://status.acme.example",
        "--data",
        data,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        "status/index.html",
        "status/status.css",
        "status/history.atom",
        "status/history.rss",
        "api/v2/summary.json",
        "api/v2/status.json",
        "api/v2/components.json",
        "api/v2/incidents.json",
        "api/v2/incidents/unresolved.json",
        "api/v2/scheduled-maintenances.json",
        "api/v2/scheduled-maintenances/upcoming.json",
        "api/v2/scheduled-maintenances/active.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let page = std::fs::read_to_string(out_dir.join(format!("status/incidents/{id}/index.html"))).unwrap();
    assert!(page.contains("This incident affected: Website."));
    let read = |p: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(out_dir.join(p)).unwrap()).unwrap() };
    let summary = read("api/v2/summary.json");
    assert_eq!(summary["page"]["url"], "https://status.acme.example/status");
    assert_eq!(summary["incidents"][0]["status"], "investigating");

    // --watch rewrites the copy when the store changes.
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["status", "export", out_dir.to_str().unwrap(), "--watch", "--data", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first export says it has read the store: a change from then on
    // is one it must notice.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watcher.stdout.take().unwrap()));
    let first = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let first = lines.next();
            std::thread::spawn(move || for _ in lines {});
            first
        }),
    )
    .await
    .expect("the watcher's first export")
    .unwrap();
    assert!(first.as_ref().is_some_and(|l| l.as_ref().is_ok_and(|l| l.starts_with("exported "))), "{first:?}");
    ok_json(&["incident", "update", &id, "--status", "resolved", "--json", "--data", data]);
    let refreshed = eventually("the watched export to refresh", || async {
        let s = std::fs::read_to_string(out_dir.join("api/v2/incidents/unresolved.json")).ok()?;
        let v: Value = serde_json::from_str(&s).ok()?;
        v["incidents"].as_array()?.is_empty().then_some(v)
    })
    .await;
    assert_eq!(refreshed["incidents"], json!([]));
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// Start `holdfast serve` as `command` says; returns the process and the
/// base URL its banner names.
pub(crate) async fn serve_process(command: &mut Command) -> (std::process::Child, String) {
    let mut child = command.env("RUST_LOG", "warn").stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let banner = lines.next().and_then(Result::ok).unwrap_or_default();
        // Keep reading, so the server never writes into a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        banner.strip_prefix("Holdfast listening on ").map(str::to_owned)
    })
    .await
    .unwrap();
    (child, base.expect("serve did not start"))
}

#[tokio::test]
async fn serve_only_status_serves_the_page_apart_from_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    serve.args(["serve", "--listen", "127.0.0.1:0", "--only", "status", "--data", tmp.path().to_str().unwrap()]);
    let (mut child, base) = serve_process(serve.stderr(Stdio::inherit())).await;
    let http = crate::support::http();
    let get = |p: &str| http.get(format!("{base}{p}")).send();
    assert_eq!(get("/status").await.unwrap().status(), 200);
    assert_eq!(get("/api/v2/summary.json").await.unwrap().status(), 200);
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    assert_eq!(get("/demo").await.unwrap().status(), 404, "no chat here");
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "a@b.c", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 404, "no login here");
    let _ = child.kill();
    let _ = child.wait();
}

// ---- the page in a real browser ----

fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("HOLDFAST_CHROMIUM").map(Into::into).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(Path::new(&path).exists(), "headless Chromium is needed at {path:?} (or set HOLDFAST_CHROMIUM)");
    path
}

#[tokio::test]
async fn the_status_page_renders_in_headless_chromium() {
    let (server, _tmp) = server_with(|_| {}).await;
    let token = operator(&server).await;
    let (_, opened) = send(
        &server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        &token,
        json!({"name": "Login storm after a network blip", "components": {"Agent login": "partial_outage"},
               "message": "Agents are reconnecting; logins are slow."}),
    )
    .await;
    assert!(opened["incident"]["id"].is_string());
    let website = server.state.status.find_component("Website").await.unwrap();
    let now = holdfast_server::store::now_ms();
    for day in 0..60 {
        for i in 0..20 {
            let ok = !((day == 7 && i < 6) || (day == 30 && i == 0));
            server.state.status.store.record_probe(&website.id, now - day * 86_400_000, ok).await.unwrap();
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/status", server.base);
    let browser = chromium();
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-background-networking".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
        "--window-size=1200,1400".to_owned(),
        format!("--screenshot={}", shot.display()),
        url,
    ];
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(browser).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).output(),
    )
    .await
    .expect("chromium finished in time")
    .unwrap();
    assert!(shot.is_file(), "no screenshot; chromium said: {}", text(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 20_000, "a rendered page, not a blank one ({} bytes)", png.len());
    server.stop().await;
}
