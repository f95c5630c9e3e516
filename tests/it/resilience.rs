//! Each storm mechanism at small scale: shedding order, login rate limits,
//! lenient renewal with the store down, the plan breaker, drain, and
//! running out of file descriptors.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use holdfast_server::admission::LaneLimits;
use holdfast_server::side::BreakerState;
use holdfast_server::side::plan::{PlanConfig, PlanService};
use holdfast_server::store::Role;
use holdfast_storm::rehearsal::{PlanMode, PlanSwitch, serve_plan_service};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Client, TestServer};

#[tokio::test]
async fn the_dashboard_is_shed_first_and_logins_still_succeed() {
    let server = TestServer::start_with(|c| {
        c.admission.dashboard = LaneLimits { concurrency: 1, queue: 1, max_wait: Duration::from_millis(200) };
    })
    .await;
    let site = server.site().await;
    for i in 0..8 {
        server.agent(&site, &format!("flood{i}@example.com"), 5).await;
    }
    server.person(&site, "boss@example.com", "Boss", Role::Admin).await;
    let (token, _) = server.login("flood0@example.com", "password123").await;
    let (admin, _) = server.login("boss@example.com", "password123").await;
    // Hold the dashboard lane's only slot: an admin request whose body is
    // still arriving keeps its permit, so the flood below meets a full lane
    // however fast the machine answers a search.
    let mut slow = hold_dashboard_slot(&server, &admin).await;
    let dashboard: Vec<_> = (0..40)
        .map(|_| {
            let (http, url, token) = (server.http.clone(), format!("{}/api/v1/search?q=x", server.base), token.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap() })
        })
        .collect();
    let logins: Vec<_> = (1..8)
        .map(|i| {
            let (http, url) = (server.http.clone(), format!("{}/api/v1/auth/login", server.base));
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"email": format!("flood{i}@example.com"), "password": "password123"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), 200, "login is never shed for the dashboard");
    }
    let mut shed = 0;
    for d in dashboard {
        let res = d.await.unwrap();
        if res.status().as_u16() == 503 {
            let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=5).contains(&retry));
            shed += 1;
        }
    }
    assert_eq!(shed, 40, "a full lane sheds at once, and its queue after max_wait");
    slow.write_all(b"\"}").await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "the held request was answered once its body arrived: {answer}");
    let (_, ready) = server.get("/readyz", None).await;
    let dash = ready["lanes"].as_array().unwrap().iter().find(|l| l["lane"] == "dashboard").unwrap().clone();
    assert_eq!(dash["shed"].as_u64(), Some(40));
    let (status, _) = server.get("/api/v1/search?q=x", Some(&token)).await;
    assert_eq!(status, 200, "the lane serves again once the slot is free");
    server.stop().await;
}

/// Start an admin request on the dashboard lane and send only part of its
/// body; the returned connection finishes it.
async fn hold_dashboard_slot(server: &TestServer, admin: &str) -> tokio::net::TcpStream {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body_len = br#"{"name":"x"}"#.len();
    let head = format!(
        "PATCH /api/v1/admin/groups/nope HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n{{\"name\":\"x"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Wait until the server has read the head and the handler awaits the body.
    for _ in 0..100 {
        let (_, ready) = server.get("/readyz", None).await;
        let lanes = ready["lanes"].as_array().unwrap();
        let dash = lanes.iter().find(|l| l["lane"] == "dashboard").unwrap();
        if dash["in_flight"].as_u64() == Some(1) {
            return conn;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the partial admin request never took the dashboard slot");
}

#[tokio::test]
async fn repeated_logins_of_one_account_are_slowed_not_locked_out() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "typo@example.com", 5).await;
    let mut limited = None;
    for _ in 0..15 {
        let res = server
            .http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({"email": "typo@example.com", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        if res.status().as_u16() == 429 {
            limited = Some(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
            break;
        }
        assert_eq!(res.status().as_u16(), 401);
    }
    let wait = limited.expect("a burst of failed logins is rate limited");
    assert!((1..=60).contains(&wait), "told when to retry: {wait}");
    // Another agent is unaffected.
    server.agent(&site, "other@example.com", 5).await;
    server.login("other@example.com", "password123").await;
    server.stop().await;
}

#[tokio::test]
async fn with_the_store_down_nobody_is_logged_out() {
    let server = TestServer::start_with(|c| c.fault_injection = true).await;
    let site = server.site().await;
    server.agent(&site, "steady@example.com", 5).await;
    let (access, refresh) = server.login("steady@example.com", "password123").await;
    let sock = Client::connect(&server, "/api/v1/agent/socket", &access, HashMap::new()).await;
    sock.cut();

    server.state.store.faults().set(holdfast_server::store::FaultMode::Fail);
    // Renewal: the store cannot be asked, the old token renews itself.
    let (status, body) =
        server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh, "access_token": access})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["degraded"], true);
    let renewed = body["access_token"].as_str().unwrap().to_owned();
    // Without the old token it is "try again", never "log in again".
    let (status, body) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    // A resume while the store is down: unavailable, not unauthorized.
    let refused = Client::try_connect(&server.ws_base, "/api/v1/agent/socket", &access, HashMap::new())
        .await
        .err()
        .expect("cannot welcome without the store");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let (_, ready) = server.get("/readyz", None).await;
    assert_eq!(ready["ready"], false);

    server.state.store.faults().set(holdfast_server::store::FaultMode::Ok);
    // Back: the same credentials work, no password needed.
    let c = Client::connect(&server, "/api/v1/agent/socket", &renewed, HashMap::new()).await;
    assert_eq!(c.welcome["type"], "welcome");
    let (status, _) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_plan_breaker_opens_serves_the_last_good_banners_and_closes_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/banners", listener.local_addr().unwrap());
    let switch = PlanSwitch::default();
    tokio::spawn(serve_plan_service(listener, switch.clone()));
    let plan = PlanService::new(PlanConfig {
        url: Some(url),
        interval: Duration::from_secs(3600),
        timeout: Duration::from_millis(200),
        failures_to_open: 3,
        open_for: Duration::from_millis(300),
    });

    plan.refresh().await;
    assert_eq!(plan.health().status, "ok");
    assert!(plan.banners().banners.as_array().unwrap().len() == 1);

    switch.set(PlanMode::Hang);
    for _ in 0..3 {
        plan.refresh().await;
    }
    assert_eq!(plan.health().breaker, BreakerState::Open);
    assert_eq!(plan.health().status, "degraded");
    assert_eq!(plan.banners().banners.as_array().unwrap().len(), 1, "last known good is still served");
    let t = std::time::Instant::now();
    plan.refresh().await;
    assert!(t.elapsed() < Duration::from_millis(50), "an open breaker does not wait on the service");

    switch.set(PlanMode::Ok);
    // Once the breaker has been open for its 300 ms, a refresh is the
    // half-open trial, and it succeeds (before that, refreshes are refused
    // at once, without a call).
    let t = std::time::Instant::now();
    while plan.health().breaker != BreakerState::Closed && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        plan.refresh().await;
    }
    assert_eq!(plan.health().breaker, BreakerState::Closed);
    assert_eq!(plan.times_opened(), 1);
}

#[tokio::test]
async fn a_dead_plan_service_shows_as_degraded_and_login_does_not_wait_for_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/banners", listener.local_addr().unwrap());
    let switch = PlanSwitch::default();
    switch.set(PlanMode::Hang);
    tokio::spawn(serve_plan_service(listener, switch));
    let server = TestServer::start_with(move |c| {
        c.plan = PlanConfig { url: Some(url), interval: Duration::from_millis(100), ..PlanConfig::default() };
    })
    .await;
    let site = server.site().await;
    server.agent(&site, "calm@example.com", 5).await;
    let t = std::time::Instant::now();
    let (access, _) = server.login("calm@example.com", "password123").await;
    assert!(t.elapsed() < Duration::from_secs(2), "login did not wait for the plan service");
    let (status, banners) = server.get("/api/v1/banners", Some(&access)).await;
    assert_eq!(status, 200);
    assert_eq!(banners["banners"], json!([]), "nothing known yet: nothing shown");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "a side service never makes the node unready");
    assert_eq!(ready["checks"]["plan"]["status"], "degraded");
    server.stop().await;
}

#[tokio::test]
async fn draining_tells_clients_to_reconnect_after_a_jittered_delay() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let stopping = tokio::spawn(server.stop());
    let frame = v.wait_for(|f| f["type"] == "reconnect").await;
    assert_eq!(frame["reason"], "draining");
    assert!(frame["after_ms"].as_u64().unwrap() < 5000);
    assert!(v.next().await.is_none(), "then the socket closes");
    stopping.await.unwrap();
}

#[tokio::test]
async fn near_the_open_file_limit_new_sockets_are_refused_and_the_server_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let arrange = TestServer::start_in(tmp.path(), |_| {}).await;
    let site = arrange.site().await;
    arrange.stop().await;
    // A server whose process may hold only 320 files: 64 sockets after headroom.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 320 && exec {} serve --listen 127.0.0.1:0 --data {}",
            env!("CARGO_BIN_EXE_holdfast"),
            tmp.path().display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    std::thread::spawn(move || for _ in lines {});
    let ws_base = base.replace("http://", "ws://");
    let http = crate::support::http();
    let _ = site;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..120 {
        let attempt = tokio_tungstenite::connect_async(format!("{ws_base}/api/v1/visitor/socket"));
        match tokio::time::timeout(Duration::from_secs(10), attempt).await.expect("answered, not hung") {
            Ok((ws, _)) => open.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status().as_u16(), 503);
                refused += 1;
            }
            Err(e) => panic!("unexpected failure (the server must refuse cleanly): {e}"),
        }
    }
    assert!(refused > 0, "some sockets were refused");
    assert!(open.len() >= 32, "but not before the cap: {} open", open.len());
    let live = http.get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200, "the server is alive and answering");
    drop(open);
    // Room again once the server has seen them close.
    let t = std::time::Instant::now();
    let mut again = tokio_tungstenite::connect_async(format!("{ws_base}/api/v1/visitor/socket")).await;
    while again.is_err() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        again = tokio_tungstenite::connect_async(format!("{ws_base}/api/v1/visitor/socket")).await;
    }
    assert!(again.is_ok(), "room again");
    let _ = child.kill();
    let _ = child.wait();
}
