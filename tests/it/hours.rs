//! Business hours through the real server, on SQLite and on PostgreSQL:
//! an admin sets the site's hours (a holiday today); the widget's session
//! then says the team is away and when it is back, a visitor's first
//! message is refused with `closed` (the offline form still takes a
//! message), and every agent sees the group closed. A group's own hours
//! override the site's (and `null` gives the site's back); no chat is
//! transferred to a closed group. Another site's admin reaches none of it,
//! and bad schedules get a clear 400.

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::services::{Node, both_stores};
use crate::support::{Client, TestServer, assert_error};

async fn sqlite() -> Node {
    Node::sqlite(|_| {}).await
}

async fn postgres() -> Node {
    Node::postgres(|_| {}).await
}

both_stores!(outside_hours_the_widget_is_offered_the_offline_form, hours_are_each_sites_own_and_checked);

const DAY_MS: i64 = 86_400_000;

/// Today's date in UTC, and the next UTC midnight (ms), once no midnight
/// is due within the next minute (the test must not straddle one).
async fn today_utc() -> (String, i64) {
    loop {
        let now = jiff::Timestamp::now();
        let ms = now.as_millisecond();
        let midnight = (ms / DAY_MS + 1) * DAY_MS;
        if midnight - ms > 60_000 {
            return (now.to_zoned(jiff::tz::TimeZone::UTC).date().to_string(), midnight);
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// Open all week, round the clock, but for the given days.
fn all_week_but(closed: &[&str]) -> Value {
    let day = json!(["00:00-24:00"]);
    let weekly: serde_json::Map<String, Value> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().map(|d| (d.to_string(), day.clone())).collect();
    let exceptions: Vec<Value> = closed.iter().map(|d| json!({"date": d, "hours": []})).collect();
    json!({"time_zone": "UTC", "weekly": weekly, "exceptions": exceptions})
}

async fn session(s: &TestServer, widget_key: &str) -> Value {
    let (status, body) = s.post("/api/v1/visitor/session", None, json!({"widget_key": widget_key})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn group_named<'a>(groups: &'a Value, name: &str) -> &'a Value {
    groups.as_array().unwrap().iter().find(|g| g["name"] == name).unwrap_or_else(|| panic!("no {name} in {groups}"))
}

async fn outside_hours_the_widget_is_offered_the_offline_form(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    s.person(&site, "boss@shop.example", "Boss", Role::Admin).await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (mut ann, ann_token) = s.online_agent("ann@shop.example").await;
    let (today, midnight) = today_utc().await;

    // Without hours the team is in whenever someone is online.
    let body = session(s, &site.widget_key).await;
    assert_eq!(body["hours"], json!({"open": true, "closes_at": null, "reopens_at": null}));

    // Today is a holiday: closed, back at midnight (UTC).
    let (status, settings) = s.put("/api/v1/admin/site/hours", Some(&boss), all_week_but(&[&today])).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["hours"]["exceptions"], json!([{"date": today, "hours": []}]));
    let body = session(s, &site.widget_key).await;
    assert_eq!(body["agents_online"], true, "Ann is online, but it is a holiday");
    assert_eq!(body["hours"], json!({"open": false, "closes_at": null, "reopens_at": midnight}));
    assert!(body["site"]["settings"]["hours"].is_null(), "the widget gets the state, not the schedule: {body}");

    // The visitor's first message starts no chat; a left message is taken.
    let token = body["visitor_token"].as_str().unwrap().to_owned();
    let mut visitor = Client::connect(s, "/api/v1/visitor/socket", &token, Default::default()).await;
    let refused = visitor.say(None, "c1", "anyone there?").await;
    assert_error(&refused, "closed");
    assert!(s.state.store.queue(&site.id).await.unwrap().is_empty(), "a chat was queued after hours");
    visitor
        .send(json!({"type": "leave_message", "client_id": "m1", "email": "vera@example.com", "body": "call me"}))
        .await;
    let ack = visitor.wait_for(|f| f["type"] == "ack" || f["type"] == "error").await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Every agent sees the group closed, and when it opens.
    let (status, groups) = s.get("/api/v1/groups", Some(&ann_token)).await;
    assert_eq!(status, 200);
    let general = group_named(&groups, "General");
    assert_eq!(general["now"], json!({"open": false, "closes_at": null, "reopens_at": midnight}), "{groups}");

    // The General group keeps hours of its own, open today: chats start.
    let gid = general["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/admin/groups/{gid}");
    let (status, g) = s.call(reqwest::Method::PATCH, &path, &boss, json!({"hours": all_week_but(&[])})).await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["hours"]["weekly"]["sun"], json!(["00:00-24:00"]));
    assert_eq!(session(s, &site.widget_key).await["hours"]["open"], true);
    let ack = visitor.say(None, "c2", "hello again").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;

    // Sales is closed today: Ann cannot send the chat to its queue.
    let (status, sales) = s.call(reqwest::Method::POST, "/api/v1/admin/groups", &boss, json!({"name": "Sales"})).await;
    assert_eq!(status, 201);
    let sales_id = sales["id"].as_str().unwrap();
    let sales_path = format!("/api/v1/admin/groups/{sales_id}");
    let closed = json!({"hours": all_week_but(&[&today])});
    assert_eq!(s.call(reqwest::Method::PATCH, &sales_path, &boss, closed).await.0, 200);
    ann.send(json!({"type": "transfer", "conv": conv, "to_group": sales_id})).await;
    let refused = ann.wait_for(|f| f["type"] == "error").await;
    assert_error(&refused, "closed");
    let (_, admin_groups) = s.get("/api/v1/admin/groups", Some(&boss)).await;
    assert_eq!(group_named(&admin_groups, "Sales")["now"]["open"], false, "{admin_groups}");
    assert_eq!(group_named(&admin_groups, "General")["now"]["open"], true, "{admin_groups}");

    // `null` gives General the site's hours back; no site hours: open.
    let (status, g) = s.call(reqwest::Method::PATCH, &path, &boss, json!({"hours": null})).await;
    assert_eq!((status, g["hours"].clone()), (200, Value::Null), "{g}");
    assert_eq!(session(s, &site.widget_key).await["hours"]["open"], false);
    let (status, settings) = s.put("/api/v1/admin/site/hours", Some(&boss), Value::Null).await;
    assert_eq!((status, settings["hours"].clone()), (200, Value::Null), "{settings}");
    assert_eq!(session(s, &site.widget_key).await["hours"]["open"], true);
    // Another setting saved keeps the hours, and the audit log has them.
    assert_eq!(s.put("/api/v1/admin/site/hours", Some(&boss), all_week_but(&[&today])).await.0, 200);
    let (_, site_view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    assert_eq!(site_view["settings"]["hours"]["time_zone"], "UTC", "{site_view}");
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "hours.changed"), "{log}");
    for c in [visitor, ann] {
        c.close().await;
    }
}

async fn hours_are_each_sites_own_and_checked(node: Node) {
    let s = &node.server;
    let shop = s.site().await;
    s.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    s.agent(&shop, "al@shop.example", 5).await;
    let other = s.new_site("Other").await;
    s.person(&other, "olga@other.example", "Olga", Role::Admin).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (al, _) = s.login("al@shop.example", "password123").await;
    let (today, _) = today_utc().await;

    // Olga closes her site; the shop stays open, and she cannot touch its groups.
    assert_eq!(s.put("/api/v1/admin/site/hours", Some(&olga), all_week_but(&[&today])).await.0, 200);
    assert_eq!(session(s, &other.widget_key).await["hours"]["open"], false);
    assert_eq!(session(s, &shop.widget_key).await["hours"]["open"], true);
    let (_, groups) = s.get("/api/v1/groups", Some(&boss)).await;
    let general = group_named(&groups, "General")["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/admin/groups/{general}");
    let (status, body) = s.call(reqwest::Method::PATCH, &path, &olga, json!({"hours": all_week_but(&[&today])})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(session(s, &shop.widget_key).await["hours"]["open"], true);
    let (_, olgas) = s.get("/api/v1/groups", Some(&olga)).await;
    assert_eq!(olgas.as_array().unwrap().len(), 1, "{olgas}");
    assert_ne!(olgas[0]["id"], general.as_str());
    let (_, site_view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    assert!(site_view["settings"]["hours"].is_null(), "{site_view}");

    // Agents may not set hours.
    assert_eq!(s.put("/api/v1/admin/site/hours", Some(&al), all_week_but(&[])).await.0, 403);
    assert_eq!(s.call(reqwest::Method::PATCH, &path, &al, json!({"hours": null})).await.0, 403);

    // Bad schedules: a clear 400 naming the field, nothing stored.
    let bad = [
        json!({"time_zone": "Mars/Olympus"}),
        json!({"time_zone": "UTC", "weekly": {"mon": ["17:00-09:00"]}}),
        json!({"time_zone": "UTC", "weekly": {"mon": ["9-5"]}}),
        json!({"time_zone": "UTC", "weekly": {"tue": ["09:00-12:00", "11:00-13:00"]}}),
        json!({"time_zone": "UTC", "weekly": {"someday": ["09:00-12:00"]}}),
        json!({"time_zone": "UTC", "exceptions": [{"date": "2026-02-30", "hours": []}]}),
        json!({"time_zone": "UTC", "exceptions": [{"date": "2026-12-25"}, {"date": "2026-12-25"}]}),
        json!({"time_zone": "UTC", "colour": "red"}),
        json!({"weekly": {}}),
        json!("always"),
    ];
    for body in bad {
        let (status, answer) = s.put("/api/v1/admin/site/hours", Some(&boss), body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let (status, answer) = s.call(reqwest::Method::PATCH, &path, &boss, json!({"hours": body})).await;
        assert_eq!(status, 400, "{answer}");
    }
    let (_, site_view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    assert!(site_view["settings"]["hours"].is_null(), "{site_view}");
    let too_many: Vec<String> = (0..7).map(|h| format!("{:02}:00-{:02}:30", h, h)).collect();
    let body = json!({"time_zone": "UTC", "weekly": {"wed": too_many}});
    assert_eq!(s.put("/api/v1/admin/site/hours", Some(&boss), body).await.0, 400);
    // The whole-settings route checks them too.
    let (_, mut settings) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = settings["settings"].take();
    settings["hours"] = json!({"time_zone": "Nowhere/City"});
    assert_eq!(s.put("/api/v1/admin/site/settings", Some(&boss), settings).await.0, 400);
}
