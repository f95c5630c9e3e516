//! Answering an offline message by email (issue 18): the answer is a
//! message of the conversation, marked `by_email`, seen live by the
//! visitor's widget, and mailed to the address they left through a real
//! SMTP server (aiosmtpd) with Reply-To the agent or the site's address;
//! a retry sends nothing twice; another site's agent gets "not found"; the
//! answer and its email commit together on both stores.

use std::collections::HashMap;
use std::time::Duration;

use holdfast_server::store::outbox::{DeliveryKind, NewDelivery, Scope};
use holdfast_server::store::{Author, Change, ConversationStatus, VisitorUpdate, new_id, now_ms};
use serde_json::{Value, json};

use crate::outbox::{Backend, SmtpServer, admin, free_port, header, postgres, relay, sqlite};
use crate::services::both_stores;
use crate::support::{Client, TestServer};

const HOSTILE_BODY: &str = "<img src=x onerror=alert(1)>\r\nBcc: y@evil.example\r\n\r\nYes, we ship to Norway.";

#[tokio::test]
async fn an_agent_answers_an_offline_message_by_email_once() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| c.status.smtp = Some(relay(port))).await;
    let site = server.site().await;
    admin(server.state.store.as_ref(), &site, "boss@shop.example").await;
    server.agent(&site, "sam@shop.example", 5).await;
    let (sam, _) = server.login("sam@shop.example", "password123").await;

    // A visitor leaves a message with their address; the admins' emails go out.
    let (_, vtoken) = server.visitor(&site).await;
    let mut visitor = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    visitor
        .send(json!({"type": "leave_message", "client_id": "q1", "name": "Ada <b>",
                     "email": "ada@example.com", "body": "Do you ship to Norway?"}))
        .await;
    let conv = visitor.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    smtp.receive(2, Duration::from_secs(15)).await;

    // Sam answers from the console's API; the visitor's widget sees it live.
    let path = format!("/api/v1/conversations/{conv}/reply");
    let (status, event) = server.post(&path, Some(&sam), json!({"client_id": "r1", "body": HOSTILE_BODY})).await;
    assert_eq!(status, 201, "{event}");
    assert_eq!((event["type"].as_str(), event["seq"].as_i64()), (Some("message"), Some(2)));
    assert_eq!((event["by_email"].as_bool(), event["author"]["kind"].as_str()), (Some(true), Some("agent")));
    let live = visitor.wait_for(|f| f["type"] == "message" && f["seq"] == 2).await;
    assert_eq!(live["body"], HOSTILE_BODY);

    let mail = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(mail["rcpt_tos"], json!(["ada@example.com"]));
    assert_eq!(header(&mail, "Reply-To"), ["sam@shop.example"], "the visitor's answer reaches Sam");
    assert_eq!(header(&mail, "Subject"), [format!("Re: your message to {}", site.name)]);
    assert!(header(&mail, "Bcc").is_empty());
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("Yes, we ship to Norway.") && text.contains("Do you ship to Norway?"), "{text}");
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<img") && !html.contains("<b>"), "nothing typed is markup: {html}");

    // A retry (a lost answer) returns the original and mails nothing more:
    // the site's deliveries hold one answer.
    let (status, again) = server.post(&path, Some(&sam), json!({"client_id": "r1", "body": "changed"})).await;
    assert_eq!((status, again["seq"].as_i64()), (200, Some(2)), "{again}");
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (_, list) = server.get("/api/v1/admin/deliveries", Some(&boss)).await;
    let answers: Vec<&Value> = list.as_array().unwrap().iter().filter(|d| d["template"] == "offline_reply").collect();
    assert_eq!(answers.len(), 1, "{list:#}");
    assert_eq!(answers[0]["conversation_id"], conv.as_str());
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&sam)).await;
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");

    // The site's own address, when set, is the Reply-To.
    let (_, site_view) = server.get("/api/v1/admin/site", Some(&boss)).await;
    let mut settings = site_view["settings"].clone();
    settings["reply_to"] = json!("support@shop.example");
    settings["time_zone"] = json!("America/New_York");
    let put = server.http.put(format!("{}/api/v1/admin/site/settings", server.base)).bearer_auth(&boss);
    assert_eq!(put.json(&settings).send().await.unwrap().status(), 200);
    let (status, _) = server.post(&path, Some(&sam), json!({"client_id": "r2", "body": "Also: 3 days."})).await;
    assert_eq!(status, 201);
    let mail = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(header(&mail, "Reply-To"), ["support@shop.example"]);
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains(" EST") || text.contains(" EDT"), "times in the site's time zone: {text}");
    // The widget never learns the address.
    let (_, session) = server.post("/api/v1/visitor/session", None, json!({"widget_key": site.widget_key})).await;
    assert_eq!(session["site"]["settings"]["reply_to"], "", "{session}");

    // Refusals: bad input, a live chat, a visitor who left no address,
    // another site's agent.
    for body in [json!({"client_id": "r3", "body": "  "}), json!({"client_id": "", "body": "x"}), json!({"body": "x"})]
    {
        let (status, err) = server.post(&path, Some(&sam), body.clone()).await;
        assert!(status == 400 || status == 422, "{body}: {status} {err}");
    }
    let (_, v2) = server.visitor(&site).await;
    let mut live_visitor = Client::connect(&server, "/api/v1/visitor/socket", &v2, HashMap::new()).await;
    let live_conv = live_visitor.say(None, "c1", "hello").await["conv"].as_str().unwrap().to_owned();
    let (status, err) = server
        .post(&format!("/api/v1/conversations/{live_conv}/reply"), Some(&sam), json!({"client_id": "r4", "body": "x"}))
        .await;
    assert_eq!(status, 409, "a chat is answered in the chat: {err}");
    let (_, v3) = server.visitor(&site).await;
    let mut nameless = Client::connect(&server, "/api/v1/visitor/socket", &v3, HashMap::new()).await;
    nameless.send(json!({"type": "leave_message", "client_id": "q2", "body": "Call me"})).await;
    let anon = nameless.wait_for(|f| f["type"] == "ack").await["conv"].as_str().unwrap().to_owned();
    let (status, err) = server
        .post(&format!("/api/v1/conversations/{anon}/reply"), Some(&sam), json!({"client_id": "r5", "body": "x"}))
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("no email address"), "{err}");

    let other = server.new_site("Other shop").await;
    server.agent(&other, "olaf@other.example", 5).await;
    let (olaf, _) = server.login("olaf@other.example", "password123").await;
    let (status, _) = server.post(&path, Some(&olaf), json!({"client_id": "r6", "body": "mine now"})).await;
    assert_eq!(status, 404, "another site's conversation does not exist for Olaf");
    let (status, _) = server.post(&path, None, json!({"client_id": "r7", "body": "x"})).await;
    assert_eq!(status, 401);
    let (status, _) = server.post(&path, Some(&vtoken), json!({"client_id": "r8", "body": "x"})).await;
    assert_eq!(status, 401, "a visitor token is not an agent's");
}

both_stores!(an_answer_and_its_email_commit_together_once);

fn answer(site_id: &str, agent_id: &str, client_id: &str) -> Change {
    Change::Reply {
        author: Author::agent(agent_id),
        client_id: client_id.into(),
        body: "We do.".into(),
        email: Box::new(NewDelivery {
            id: new_id(),
            site_id: Some(site_id.into()),
            kind: DeliveryKind::Email,
            template: "offline_reply".into(),
            recipient: "ada@example.com".into(),
            payload: "{}".into(),
            dedupe_key: format!("offline_reply:{client_id}"),
            created_at: now_ms(),
            give_up_at: now_ms() + 86_400_000,
        }),
    }
}

async fn an_answer_and_its_email_commit_together_once(b: Backend) {
    let store = b.store.as_ref();
    let site = store.create_site("Shop").await.unwrap();
    let group = store.create_group(&site.id, "Support", true).await.unwrap();
    let visitor = store.create_visitor(&site.id, VisitorUpdate::default()).await.unwrap();
    let offline =
        store.create_conversation(&site.id, &visitor.id, &group.id, ConversationStatus::Offline).await.unwrap();
    let question = Change::Message {
        author: Author::visitor(&visitor.id),
        client_id: "q".into(),
        body: "?".into(),
        attachments: vec![],
        integration: None,
    };
    store.apply(&offline.id, question).await.unwrap();

    let first = store.apply(&offline.id, answer(&site.id, "agent-1", "r1")).await.unwrap();
    assert_eq!((first.event.seq, first.duplicate, first.event.data["by_email"].as_bool()), (2, false, Some(true)));
    let retry = store.apply(&offline.id, answer(&site.id, "agent-1", "r1")).await.unwrap();
    assert_eq!((retry.event.seq, retry.duplicate), (2, true));
    assert_eq!(store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().len(), 1, "one email");
    assert_eq!(store.events_after(&offline.id, 0, 10).await.unwrap().len(), 2);

    // Only an offline message is answered so; the refusal writes nothing.
    let live = store.create_conversation(&site.id, &visitor.id, &group.id, ConversationStatus::Queued).await.unwrap();
    assert!(store.apply(&live.id, answer(&site.id, "agent-1", "r2")).await.is_err());
    assert_eq!(store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().len(), 1);
    assert!(store.events_after(&live.id, 0, 10).await.unwrap().is_empty());
}
