//! The status page against an outside attacker, through the real HTTP API:
//! its webhooks and monitors reach public addresses only (the decision made
//! on the address connected to), a client cannot subscribe without limit,
//! and the page, its subscribers and the installation's sites belong to the
//! operator, never to a site's admin.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use holdfast_server::auth::passwords;
use holdfast_server::config::Config;
use holdfast_server::store::status::SubscriberKind;
use holdfast_server::store::{NewAgent, Role, Site};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::status::{eventually, operator, send};
use crate::support::TestServer;

/// A server for these tests: no built-in probes, fast rounds.
async fn server(tune: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.status.self_probe = false;
        c.status.delivery_tick = Duration::from_millis(50);
        c.outbox.retry_min = Duration::from_secs(60);
        c.status.monitor_tick = Duration::from_millis(20);
        c.status.min_interval = Duration::from_millis(10);
        tune(c)
    })
    .await
}

/// A listener on 127.0.0.1 that counts the connections it accepts.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, seen)
}

async fn person(server: &TestServer, site: &Site, email: &str, role: Role) -> String {
    let hash = passwords::hash_now("password123").unwrap();
    let new = NewAgent { site_id: &site.id, email, name: email, role, password_hash: &hash, chat_limit: 5 };
    server.state.store.create_agent(new).await.unwrap();
    server.login(email, "password123").await.0
}

#[tokio::test]
async fn the_attackers_webhook_urls_are_refused_at_subscribe_time() {
    let server = server(|c| c.status.subscribe_burst = 100).await;
    let (addr, seen) = counting_listener().await;
    let port = addr.port();
    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
        format!("http://[::127.0.0.1]:{port}/hook"),
        format!("http://[64:ff9b::127.0.0.1]:{port}/hook"),
        format!("http://[2002:7f00:1::1]:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://0x7f000001:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://localhost.:{port}/hook"),
        "http://100.64.0.1/hook".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://198.18.0.1/".to_owned(),
        "http://192.0.0.170/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://255.255.255.255/".to_owned(),
    ] {
        let (status, body) = server.post("/api/v2/subscribers.json", None, json!({"endpoint": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("public address"), "{url}: {body}");
    }
    assert!(server.state.status.store.subscribers().await.unwrap().is_empty(), "nothing was stored");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing connected to the listener");
    server.stop().await;
}

/// A subscriber whose name resolves to loopback (as an attacker's name
/// does after a DNS rebinding, or a subscriber stored before this guard)
/// gets nothing: the delivery fails before a connection is made.
#[tokio::test]
async fn a_webhook_whose_name_resolves_to_loopback_is_never_connected_to() {
    let server = server(|_| {}).await;
    let token = operator(&server).await;
    let (addr, seen) = counting_listener().await;
    let port = addr.port();
    // Arranged in the store: the subscribe API refuses both (test above).
    let store = &server.state.status.store;
    for url in [format!("http://localhost:{port}/hook"), format!("http://[::ffff:127.0.0.1]:{port}/hook")] {
        store.add_subscriber(SubscriberKind::Webhook, &url, Some("secret"), true).await.unwrap();
    }

    let body = json!({"name": "Chat is down", "components": {"Chat widget": "major_outage"}});
    let (s, opened) = send(&server, Method::POST, "/api/v1/status/incidents", &token, body).await;
    assert_eq!(s, 201, "{opened}");
    let errors = eventually("both deliveries recorded as failed", || async {
        let (_, listed) = server.get("/api/v1/status/subscribers", Some(&token)).await;
        let errors: Vec<String> = listed["subscribers"]
            .as_array()?
            .iter()
            .filter_map(|s| s["delivery_error"].as_str().map(str::to_owned))
            .collect();
        (errors.len() == 2).then_some(errors)
    })
    .await;
    for error in &errors {
        assert!(error.contains("the address is not public"), "{error}");
        assert!(!error.contains("127.0.0.1") && !error.contains("localhost"), "no address shown: {error}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no request reached the listener");
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_a_few_subscriptions_then_is_told_to_wait() {
    let server = server(|c| {
        c.status.subscribe_burst = 3;
        c.status.subscribe_every = Duration::from_secs(600);
    })
    .await;
    for n in 0..3 {
        let body = json!({"endpoint": format!("https://hooks{n}.example.com/status")});
        let (status, sub) = server.post("/api/v2/subscribers.json", None, body).await;
        assert_eq!(status, 201, "{sub}");
    }
    let res = server
        .http
        .post(format!("{}/api/v2/subscribers.json", server.base))
        .json(&json!({"endpoint": "https://hooks9.example.com/status"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
    // The HTML form counts against the same quota.
    let res = server
        .http
        .post(format!("{}/status/subscribe", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("endpoint=https%3A%2F%2Fhooks8.example.com%2F")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert!(res.text().await.unwrap().contains("too many requests"));
    assert_eq!(server.state.status.store.subscribers().await.unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn the_status_page_and_the_sites_are_the_operators_not_a_site_admins() {
    let server = server(|_| {}).await;
    // The first start's admin runs the installation.
    let first = server.state.store.agent_by_email("admin@holdfast.local").await.unwrap().unwrap();
    assert_eq!(first.role, Role::Operator, "the first-run admin is the operator");
    let operator_token = operator(&server).await;
    let home = server.site().await;
    let home_admin = person(&server, &home, "home-admin@example.com", Role::Admin).await;
    let tenant = server.new_site("Tenant B").await;
    let tenant_admin = person(&server, &tenant, "b-admin@example.com", Role::Admin).await;

    let component = server.state.status.find_component("Website").await.unwrap();
    let arranged =
        server.state.status.store.create_monitor("Public", &component.id, "https://www.example.com/", 60_000, false);
    let monitor = arranged.await.unwrap();
    let routes: Vec<(Method, String, Value)> = vec![
        (Method::GET, "/api/v1/status/subscribers".into(), Value::Null),
        (Method::POST, "/api/v1/status/incidents".into(), json!({"name": "Fake outage"})),
        (Method::GET, "/api/v1/status/incidents".into(), Value::Null),
        (Method::POST, "/api/v1/status/components".into(), json!({"name": "Fake"})),
        (
            Method::POST,
            "/api/v1/status/monitors".into(),
            json!({"name": "Scan", "component": "Website", "url": "https://www.example.com/"}),
        ),
        (Method::GET, "/api/v1/status/monitors".into(), Value::Null),
        (Method::DELETE, format!("/api/v1/status/monitors/{}", monitor.id), Value::Null),
        (Method::GET, "/api/v1/operator/sites".into(), Value::Null),
        (
            Method::POST,
            "/api/v1/operator/sites".into(),
            json!({"name": "Mine", "admin": {"name": "M", "email": "m@example.com", "password": "password123"}}),
        ),
    ];
    for token in [&tenant_admin, &home_admin] {
        for (method, path, body) in &routes {
            let (status, e) = send(&server, method.clone(), path, token, body.clone()).await;
            assert_eq!((status, e["error"]["code"].as_str()), (403, Some("forbidden")), "{method} {path}: {e}");
        }
    }
    assert_eq!(server.state.status.store.monitors().await.unwrap().len(), 1, "nothing changed");
    assert_eq!(server.state.store.sites().await.unwrap().len(), 2);

    // The operator gets through every one.
    for (method, path, body) in &routes {
        let (status, e) = send(&server, method.clone(), path, &operator_token, body.clone()).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {e}");
    }
    let (_, sites) = server.get("/api/v1/operator/sites", Some(&operator_token)).await;
    let names: Vec<&str> = sites.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Demo site", "Tenant B", "Mine"]);
    server.stop().await;
}

#[tokio::test]
async fn the_operator_makes_a_site_with_its_admin_who_runs_only_that_site() {
    let server = server(|_| {}).await;
    let operator_token = operator(&server).await;
    let home = server.site().await;
    let home_admin = person(&server, &home, "home-admin@example.com", Role::Admin).await;

    let new =
        json!({"name": "Acme", "admin": {"name": "Ann", "email": "Ann@Acme.example", "password": "ann-password-1"}});
    let (s, made) = send(&server, Method::POST, "/api/v1/operator/sites", &operator_token, new.clone()).await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(made["site"]["name"], "Acme");
    assert!(made["site"]["widget_key"].as_str().unwrap().starts_with("wk_"));
    assert_eq!(
        (made["admin"]["email"].as_str(), made["admin"]["role"].as_str()),
        (Some("ann@acme.example"), Some("admin"))
    );
    assert!(made["admin"].get("password_hash").is_none());
    let (s, e) = send(&server, Method::POST, "/api/v1/operator/sites", &operator_token, new).await;
    assert_eq!(s, 409, "the email is taken: {e}");
    for (body, needle) in [
        (json!({"name": " ", "admin": {"name": "A", "email": "a@x.example", "password": "password123"}}), "name"),
        (json!({"name": "X", "admin": {"name": "A", "email": "nope", "password": "password123"}}), "admin.email"),
        (json!({"name": "X", "admin": {"name": "A", "email": "a@x.example", "password": "short"}}), "admin.password"),
        (json!({"name": "X"}), "admin"),
    ] {
        let (s, e) = send(&server, Method::POST, "/api/v1/operator/sites", &operator_token, body.clone()).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
    assert_eq!(server.state.store.sites().await.unwrap().len(), 2, "refused requests made no site");

    // Ann runs Acme and nothing else.
    let (ann, _) = server.login("ann@acme.example", "ann-password-1").await;
    let (s, site) = server.get("/api/v1/admin/site", Some(&ann)).await;
    assert_eq!((s, site["name"].as_str()), (200, Some("Acme")));
    let (s, _) = server.get("/api/v1/operator/sites", Some(&ann)).await;
    assert_eq!(s, 403);

    // A site's admin neither makes an operator nor touches one; an operator does.
    let ops = json!({"email": "ops2@example.com", "name": "Ops 2", "role": "operator", "password": "password123"});
    let (s, e) = send(&server, Method::POST, "/api/v1/admin/agents", &home_admin, ops.clone()).await;
    assert_eq!(s, 403, "{e}");
    let first = server.state.store.agent_by_email("admin@holdfast.local").await.unwrap().unwrap();
    let path = format!("/api/v1/admin/agents/{}", first.id);
    for change in [json!({"role": "agent"}), json!({"active": false}), json!({"name": "Renamed"})] {
        let (s, e) = send(&server, Method::PATCH, &path, &home_admin, change.clone()).await;
        assert_eq!(s, 403, "{change}: {e}");
    }
    let me = server.state.store.agent_by_email("home-admin@example.com").await.unwrap().unwrap();
    let (s, e) = send(
        &server,
        Method::PATCH,
        &format!("/api/v1/admin/agents/{}", me.id),
        &home_admin,
        json!({"role": "operator"}),
    )
    .await;
    assert_eq!(s, 403, "an admin cannot promote themself: {e}");
    let (s, made) = send(&server, Method::POST, "/api/v1/admin/agents", &operator_token, ops).await;
    assert_eq!((s, made["role"].as_str()), (201, Some("operator")), "{made}");
    let (s, e) = send(&server, Method::PATCH, &path, &operator_token, json!({"role": "admin"})).await;
    assert_eq!((s, e["role"].as_str()), (200, Some("admin")), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn monitors_reach_public_addresses_only_unless_allowed_and_can_be_deleted() {
    let server = server(|_| {}).await;
    let token = operator(&server).await;
    let (addr, seen) = counting_listener().await;
    let port = addr.port();
    for url in [
        format!("tcp://127.0.0.1:{port}"),
        "tcp://127.0.0.1:5".to_owned(),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("tcp://[::1]:{port}"),
        format!("tcp://localhost:{port}"),
        format!("tcp://0x7f.1:{port}"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "tcp://10.0.0.1:22".to_owned(),
    ] {
        let monitor = json!({"name": "Scan", "component": "Website", "url": url, "interval_ms": 5000});
        let (s, e) = send(&server, Method::POST, "/api/v1/status/monitors", &token, monitor).await;
        assert_eq!(s, 400, "{url}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("public address"), "{url}: {e}");
    }

    // Names are judged by their addresses at every check (arranged in the
    // store: the API refuses `localhost` by name).
    let component = server.state.status.find_component("Website").await.unwrap();
    let store = &server.state.status.store;
    for (name, target) in
        [("Sneaky TCP", format!("tcp://localhost:{port}")), ("Sneaky HTTP", format!("http://localhost:{port}/"))]
    {
        store.create_monitor(name, &component.id, &target, 20, false).await.unwrap();
    }
    let checked = eventually("both sneaky monitors checked", || async {
        let (_, listed) = server.get("/api/v1/status/monitors", Some(&token)).await;
        let checked: Vec<Value> =
            listed["monitors"].as_array()?.iter().filter(|m| !m["last_error"].is_null()).cloned().collect();
        (checked.len() == 2).then_some(checked)
    })
    .await;
    for m in &checked {
        let error = m["last_error"].as_str().unwrap();
        assert!(error.contains("the address is not public"), "{m}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no check reached the listener");

    // Deleted: gone from the list and no longer checked.
    for m in &checked {
        let path = format!("/api/v1/status/monitors/{}", m["id"].as_str().unwrap());
        let (s, e) = send(&server, Method::DELETE, &path, &token, Value::Null).await;
        assert_eq!(s, 204, "{e}");
        let (s, _) = send(&server, Method::DELETE, &path, &token, Value::Null).await;
        assert_eq!(s, 404, "deleted once");
    }
    let (_, listed) = server.get("/api/v1/status/monitors", Some(&token)).await;
    assert_eq!(listed["monitors"], json!([]));
    // A built-in probe is Holdfast's own.
    let probe = store.create_monitor("Holdfast readiness", &component.id, "http://127.0.0.1:1/readyz", 60_000, true);
    let probe = probe.await.unwrap();
    let path = format!("/api/v1/status/monitors/{}", probe.id);
    let (s, e) = send(&server, Method::DELETE, &path, &token, Value::Null).await;
    assert_eq!(s, 409, "{e}");
    server.stop().await;

    // With the operator's opt-out, a private target is accepted and checked.
    let server = self::server(|c| c.status.allow_private_monitors = true).await;
    let token = operator(&server).await;
    let monitor = json!({"name": "Intranet", "component": "Website", "url": format!("tcp://127.0.0.1:{port}"), "interval_ms": 20});
    let (s, e) = send(&server, Method::POST, "/api/v1/status/monitors", &token, monitor).await;
    assert_eq!(s, 201, "{e}");
    eventually("the private target is checked", || async { (seen.load(Ordering::SeqCst) > 0).then_some(()) }).await;
    server.stop().await;
}
