//! Transcripts by email through the real server and a real SMTP server:
//! an agent sends one from the API, the visitor asks for theirs when the
//! chat ends, and the site's archive address gets every closed chat's —
//! each multipart, holding every message, hostile names and bodies inert,
//! CR/LF in an address refused where it was typed. Nobody reaches another
//! site's or another visitor's conversation.

use std::collections::HashMap;
use std::time::Duration;

use holdfast_server::store::VisitorUpdate;
use serde_json::{Value, json};

use crate::outbox::{SmtpServer, admin, free_port, header, relay};
use crate::support::{Client, TestServer};

const HOSTILE_NAME: &str = "<b>Eve</b>\r\nBcc: x@evil.example";
const HOSTILE_BODY: &str = "<img src=x onerror=alert(1)> where is my order?";

async fn post_as(
    server: &TestServer,
    path: &str,
    token: &str,
    origin: Option<&str>,
    body: Value,
) -> (u16, Value, bool) {
    let mut req = server.http.post(format!("{}{path}", server.base)).bearer_auth(token).json(&body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let cors = res.headers().get("access-control-allow-origin").is_some();
    (status, res.json().await.unwrap_or(Value::Null), cors)
}

fn find<'a>(mail: &'a [Value], to: &str) -> &'a Value {
    mail.iter().find(|m| m["rcpt_tos"][0] == to).unwrap_or_else(|| panic!("no email to {to}: {mail:#?}"))
}

#[tokio::test]
async fn transcripts_reach_the_agent_the_visitor_and_the_archive() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
        c.status.public_url = Some("https://chat.shop.example".into());
        c.outbox.missed_tick = Duration::from_millis(100);
    })
    .await;
    let site = server.site().await;
    admin(server.state.store.as_ref(), &site, "boss@shop.example").await;
    server.agent(&site, "ann@shop.example", 5).await;
    let other = server.new_site("Other").await;
    server.agent(&other, "olaf@other.example", 5).await;

    // The site archives every closed chat; a bad address is refused.
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (_, view) = server.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = view["settings"].clone();
    assert_eq!(settings["transcript_archive"], "", "none by default");
    settings["transcript_archive"] = json!("archive@shop.example\r\nBcc: x@evil.example");
    let res = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&boss);
    assert_eq!(res.json(&settings).send().await.unwrap().status().as_u16(), 400);
    settings["transcript_archive"] = json!("archive@shop.example");
    let res = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&boss);
    assert_eq!(res.json(&settings).send().await.unwrap().status().as_u16(), 200);
    // ... and the widget never learns the address.
    let (status, session) = server
        .post(
            "/api/v1/visitor/session",
            None,
            json!({"widget_key": site.widget_key, "page_url": "https://shop.example/"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (session["site"]["settings"]["transcript_archive"].as_str(), &session["transcripts"]),
        (Some(""), &json!(true))
    );

    // A chat: Eve (a hostile name) writes, Ann answers.
    let (mut ann, ann_token) = server.online_agent("ann@shop.example").await;
    let (eve, vtoken) = server.visitor(&site).await;
    let update = VisitorUpdate { name: Some(HOSTILE_NAME.into()), ..Default::default() };
    server.state.store.update_visitor(&eve, update).await.unwrap();
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = visitor.say(None, "m1", HOSTILE_BODY).await;
    let conv = ack["conv"].as_str().unwrap().to_owned();
    ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    assert_eq!(ann.say(Some(&conv), "r1", "It ships <today> & tomorrow").await["type"], "ack");

    // Ann emails the transcript; the same one twice is queued once.
    let path = format!("/api/v1/conversations/{conv}/transcript");
    let (status, body, _) = post_as(&server, &path, &ann_token, None, json!({"to": "boss@shop.example"})).await;
    assert_eq!((status, &body), (202, &json!({"queued": true})));
    let (status, body, _) = post_as(&server, &path, &ann_token, None, json!({"to": "boss@shop.example"})).await;
    assert_eq!((status, &body), (202, &json!({"queued": false})));
    let mail = smtp.receive(1, Duration::from_secs(15)).await;
    let m = &mail[0];
    assert_eq!(m["rcpt_tos"][0], "boss@shop.example");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert!(header(m, "Bcc").is_empty(), "{m:#}");
    let subject = &header(m, "Subject")[0];
    assert!(
        subject.starts_with("Transcript: chat with <b>Eve</b> Bcc:") && subject.ends_with("on Demo site"),
        "{subject}"
    );
    let text = m["text"].as_str().unwrap();
    assert!(text.contains(HOSTILE_BODY) && text.contains("ann: It ships <today> & tomorrow"), "{text}");
    assert!(text.contains("Times are UTC") && text.contains("ann joined the chat"), "{text}");
    assert!(text.contains(&format!("https://chat.shop.example/console#conversation={conv}")), "{text}");
    let html = m["html"].as_str().unwrap();
    assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<today>"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;") && html.contains("&lt;today&gt; &amp; tomorrow"),
        "{html}"
    );

    // Eve ends the chat and asks for hers, from a customer's page.
    visitor.send(json!({"type": "close", "conv": conv})).await;
    visitor.wait_for(|f| f["type"] == "closed").await;
    let origin = Some("https://shop.example");
    let too_long = format!("{}@example.com", "e".repeat(250));
    for bad in ["not an address", "eve@example.com\r\nBcc: x@evil.example", too_long.as_str()] {
        let (status, body, cors) =
            post_as(&server, "/api/v1/visitor/transcript", &vtoken, origin, json!({"conv": conv, "to": bad})).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(cors, "the widget can read the error");
        assert!(body["error"]["message"].as_str().unwrap().contains("to "), "{body}");
    }
    let (status, body, cors) =
        post_as(&server, "/api/v1/visitor/transcript", &vtoken, origin, json!({"conv": conv, "to": "eve@example.com"}))
            .await;
    assert_eq!((status, &body, cors), (202, &json!({"queued": true}), true));
    let mail = smtp.receive(2, Duration::from_secs(15)).await;
    let mine = find(&mail, "eve@example.com");
    assert_eq!(header(mine, "Subject"), ["Your conversation with Demo site"]);
    let text = mine["text"].as_str().unwrap();
    assert!(text.contains(HOSTILE_BODY) && text.contains("It ships <today> & tomorrow"), "{text}");
    assert!(text.contains("-- The chat ended --"), "{text}");
    assert!(!text.contains("/console"), "no console link for the visitor: {text}");
    let archived = find(&mail, "archive@shop.example");
    assert!(header(archived, "Subject")[0].starts_with("Transcript: chat with"), "{archived:#}");
    assert!(archived["text"].as_str().unwrap().contains("-- The chat ended --"));

    // Nobody reaches another's conversation; input is checked.
    let (olaf, _) = server.login("olaf@other.example", "password123").await;
    let (status, _, _) = post_as(&server, &path, &olaf, None, json!({"to": "olaf@other.example"})).await;
    assert_eq!(status, 404, "another site's agent");
    let (_, stranger) = server.visitor(&site).await;
    let (status, _, _) =
        post_as(&server, "/api/v1/visitor/transcript", &stranger, origin, json!({"conv": conv, "to": "s@example.com"}))
            .await;
    assert_eq!(status, 404, "another visitor");
    let (status, _, _) = post_as(&server, &path, &vtoken, None, json!({"to": "eve@example.com"})).await;
    assert_eq!(status, 401, "the agent route takes an agent");
    let (status, _, _) =
        post_as(&server, &path, &ann_token, None, json!({"to": "a@example.com", "cc": "b@example.com"})).await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, _, _) = post_as(&server, &path, &ann_token, None, json!({"to": 7})).await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.mail.try_recv().is_err(), "nothing else was sent");
    ann.close().await;
    visitor.close().await;
}

#[tokio::test]
async fn without_email_a_transcript_is_refused_clearly() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "ann@shop.example", 5).await;
    let (ann, token) = server.online_agent("ann@shop.example").await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let conv = visitor.say(None, "m1", "hello").await["conv"].as_str().unwrap().to_owned();
    let (status, body, _) = post_as(
        &server,
        &format!("/api/v1/conversations/{conv}/transcript"),
        &token,
        None,
        json!({"to": "a@example.com"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("email is not configured"), "{body}");
    let (_, session) = server.post("/api/v1/visitor/session", None, json!({"widget_key": site.widget_key})).await;
    assert_eq!(session["transcripts"], false, "the widget does not offer it");
    ann.close().await;
    visitor.close().await;
}

#[tokio::test]
async fn a_visitors_transcript_is_written_in_the_language_of_their_widget() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| c.status.smtp = Some(relay(port))).await;
    let site = server.site().await;
    server.agent(&site, "ann@shop.example", 5).await;
    let (mut ann, _) = server.online_agent("ann@shop.example").await;
    let origin = Some("https://shop.example");
    // Each visitor chats, Ann answers, the visitor ends the chat and asks
    // for theirs.
    let mut asked = Vec::new();
    for (lang, to) in
        [(json!("de"), "de@example.com"), (json!("ar"), "ar@example.com"), (json!("xx"), "xx@example.com")]
    {
        let (_, vtoken) = server.visitor(&site).await;
        let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
        let conv = visitor.say(None, "m1", "<b>hallo</b>").await["conv"].as_str().unwrap().to_owned();
        ann.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
        assert_eq!(ann.say(Some(&conv), &format!("r-{to}"), "Gern!").await["type"], "ack");
        visitor.send(json!({"type": "close", "conv": conv})).await;
        visitor.wait_for(|f| f["type"] == "closed").await;
        let too_long = json!({"conv": conv, "to": to, "lang": "x".repeat(17)});
        let (status, body, _) = post_as(&server, "/api/v1/visitor/transcript", &vtoken, origin, too_long).await;
        assert_eq!(status, 400, "{body}");
        let (status, body, _) = post_as(
            &server,
            "/api/v1/visitor/transcript",
            &vtoken,
            origin,
            json!({"conv": conv, "to": to, "lang": lang}),
        )
        .await;
        assert_eq!((status, &body), (202, &json!({"queued": true})));
        asked.push(visitor);
    }
    let mail = smtp.receive(3, Duration::from_secs(15)).await;

    let de = find(&mail, "de@example.com");
    assert_eq!(de["subject"], "Ihr Gespräch mit Demo site");
    let text = de["text"].as_str().unwrap();
    assert!(text.starts_with("Ihr Gespräch mit Demo site, begonnen am "), "{text}");
    assert!(text.contains("Zeiten in der Zeitzone UTC"), "{text}");
    assert!(text.contains("Besucher: <b>hallo</b>") && text.contains("ann: Gern!"), "{text}");
    assert!(
        text.contains("-- ann ist dem Chat beigetreten --") && text.contains("-- Der Chat wurde beendet --"),
        "{text}"
    );
    assert!(text.contains("Sie haben dieses Protokoll im Chat angefordert."), "{text}");
    // The start is written the German way: day.month.year.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).strftime("%d.%m.%Y").to_string();
    assert!(text.contains(&format!("begonnen am {today}, ")), "{text}");
    let html = de["html"].as_str().unwrap();
    assert!(html.contains(r#"dir="ltr""#) && html.contains("&lt;b&gt;hallo") && !html.contains("<b>"), "{html}");

    let ar = find(&mail, "ar@example.com");
    assert_eq!(ar["subject"], "محادثتك مع Demo site");
    let html = ar["html"].as_str().unwrap();
    assert!(html.contains(r#"dir="rtl""#) && html.contains("انتهت المحادثة"), "{html}");

    // A language Holdfast does not have: English.
    let xx = find(&mail, "xx@example.com");
    assert_eq!(xx["subject"], "Your conversation with Demo site");
    assert!(xx["text"].as_str().unwrap().contains("-- The chat ended --"));
    ann.close().await;
    for v in asked {
        v.close().await;
    }
}
