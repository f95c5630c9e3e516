//! Health endpoints and metrics.

use serde_json::json;

use crate::support::TestServer;

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
