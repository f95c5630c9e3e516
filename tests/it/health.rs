//! Health endpoints and metrics.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{Client, TestServer};

#[tokio::test]
async fn livez_readyz_and_metrics_answer() {
    let server = TestServer::start().await;
    let res = server.http.get(format!("{}/livez", server.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["store"]["status"], "ok");

    let _ = server.post("/api/v1/auth/login", None, json!({"email": "nobody@x.example", "password": "nope"})).await;
    let text = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("holdfast_logins_total"), "metrics:\n{text}");
    assert!(text.contains("holdfast_login_seconds"), "metrics:\n{text}");
    server.stop().await;
}

/// `/metrics` as Prometheus's own linter reads it: every family has its
/// `HELP` and `TYPE`, names and units follow the conventions. Needs
/// `promtool` (Debian's `prometheus`; `scripts/test` installs it).
#[tokio::test]
async fn metrics_pass_promtool() {
    let server = TestServer::start().await;
    let site = server.site().await;
    // Touch the login, chat and socket paths so their families are exported.
    let _ = server.post("/api/v1/auth/login", None, json!({"email": "nobody@x.example", "password": "nope"})).await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor.say(None, "m1", "hello").await;
    let text = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.lines().filter(|l| l.starts_with("# TYPE ")).count() > 10, "too few families:\n{text}");

    let promtool =
        which("promtool").expect("promtool is needed to check /metrics: run scripts/test, which installs it");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n---\n{text}");
    visitor.close().await;
    server.stop().await;
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}
