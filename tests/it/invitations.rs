//! Invitations: a site's admin adds a person by email, through a real SMTP
//! server (aiosmtpd), and learns nothing about whether the address has an
//! account on another site (issue 16, point 6): the answer, the delivery
//! the admin sees and its subject are the same either way; only the
//! address's owner reads the difference. The invitation and its email
//! commit together, and it is accepted once, on both stores.

use std::time::Duration;

use holdfast_server::auth::passwords;
use holdfast_server::store::invitations::Invitation;
use holdfast_server::store::outbox::{DeliveryKind, NewDelivery, Scope};
use holdfast_server::store::{NewAgent, Role, Site, new_id, now_ms};
use serde_json::{Value, json};

use crate::outbox::{Backend, SmtpServer, admin, free_port, header, postgres, relay, sqlite};
use crate::services::both_stores;
use crate::support::TestServer;

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server.http.request(method, format!("{}{path}", server.base)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The token of the accept link in an email's text part, if it has one.
fn invite_token(mail: &Value) -> Option<String> {
    let text = mail["text"].as_str().unwrap();
    let at = text.find("/console#invite=")? + "/console#invite=".len();
    Some(text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect())
}

fn subject(mail: &Value) -> String {
    header(mail, "Subject").remove(0)
}

const HOSTILE: &str = "<img src=x onerror=alert(1)> Eve\r\nBcc: x@evil.example";

#[tokio::test]
async fn a_site_admin_invites_by_email_and_learns_nothing_of_other_sites() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port);
    let server = TestServer::start_with(|c| {
        c.status.smtp = Some(relay(port));
        c.status.public_url = Some("https://chat.shop.example/".into());
    })
    .await;
    let site_a = server.site().await;
    let site_b = server.new_site("Other shop").await;
    admin(server.state.store.as_ref(), &site_a, "boss-a@shop.example").await;
    admin(server.state.store.as_ref(), &site_b, "boss-b@other.example").await;
    server.agent(&site_b, "taken@example.com", 5).await;
    let (admin_a, _) = server.login("boss-a@shop.example", "password123").await;
    let (admin_b, _) = server.login("boss-b@other.example", "password123").await;
    let post = reqwest::Method::POST;

    // Before: creating with a password answered 409 for site B's address.
    // A site's admin no longer sets passwords at all.
    let direct = json!({"email": "taken@example.com", "name": "T", "password": "password123"});
    let (status, err) = send(&server, post.clone(), "/api/v1/admin/agents", &admin_a, Some(direct)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (403, Some("forbidden")), "{err}");

    // The same answer for a new address and for site B's.
    let mut answers = Vec::new();
    for email in ["new@example.com", "Taken@Example.com"] {
        let body = json!({"email": email, "name": HOSTILE, "role": "agent"});
        let (status, made) = send(&server, post.clone(), "/api/v1/admin/invitations", &admin_a, Some(body)).await;
        assert_eq!(status, 202, "{made}");
        answers.push(made);
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answers[0]), keys(&answers[1]));
    for (answer, email) in answers.iter().zip(["new@example.com", "taken@example.com"]) {
        assert_eq!(answer["email"], email);
        assert_eq!(answer["site_id"], site_a.id.as_str());
        assert!(answer["accepted_at"].is_null() && answer["revoked_at"].is_null(), "{answer}");
    }

    // Both emails go out, with one subject; only the new address gets a link.
    let mail = smtp.receive(2, Duration::from_secs(15)).await;
    let to = |m: &Value| m["rcpt_tos"][0].as_str().unwrap().to_owned();
    let new_mail = mail.iter().find(|m| to(m) == "new@example.com").expect("the new address's email");
    let taken_mail = mail.iter().find(|m| to(m) == "taken@example.com").expect("the taken address's email");
    assert_eq!(subject(new_mail), format!("Join {} on Holdfast", site_a.name));
    assert_eq!(subject(new_mail), subject(taken_mail));
    assert!(invite_token(taken_mail).is_none(), "{taken_mail}");
    assert!(taken_mail["text"].as_str().unwrap().contains("already has a Holdfast account"), "{taken_mail}");
    let token = invite_token(new_mail).expect("a link");
    assert!(new_mail["text"].as_str().unwrap().contains("https://chat.shop.example/console#invite="));
    // The admin's name was typed by someone; in HTML it stays text, and
    // the hostile line break never makes a header.
    for m in [new_mail, taken_mail] {
        assert!(!m["html"].as_str().unwrap().contains("<img src=x"), "{m}");
        assert!(header(m, "Bcc").is_empty());
    }

    // The admin's delivery list shows the same for both: no payload, one
    // subject, one kind of preview, both sent.
    let (status, list) = send(&server, reqwest::Method::GET, "/api/v1/admin/deliveries", &admin_a, None).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    for d in list {
        assert!(d.get("payload").is_none(), "{d}");
        assert_eq!(d["subject"], format!("Join {} on Holdfast", site_a.name));
        assert!(d["preview"].as_str().unwrap().starts_with("Invitation for "), "{d}");
        assert!(d["conversation_id"].is_null());
    }

    // Site B's admin sees none of it and can revoke none of it.
    let (_, b_list) = send(&server, reqwest::Method::GET, "/api/v1/admin/invitations", &admin_b, None).await;
    assert_eq!(b_list, json!([]));
    let a_id = answers[1]["id"].as_str().unwrap();
    let path = format!("/api/v1/admin/invitations/{a_id}");
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, &admin_b, None).await;
    assert_eq!(status, 404);
    let (_, b_deliveries) = send(&server, reqwest::Method::GET, "/api/v1/admin/deliveries", &admin_b, None).await;
    assert_eq!(b_deliveries, json!([]));

    // The new address accepts: an agent of site A, who logs in.
    let accept = |token: &str, password: &str| json!({"token": token, "password": password});
    let (status, err) = server.post("/api/v1/invitations/accept", None, accept(&token, "short")).await;
    assert_eq!(status, 400, "{err}");
    let (status, agent) = server.post("/api/v1/invitations/accept", None, accept(&token, "new-secret-1")).await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!((agent["email"].as_str(), agent["role"].as_str()), (Some("new@example.com"), Some("agent")));
    assert_eq!(agent["name"], HOSTILE.trim());
    let (access, _) = server.login("new@example.com", "new-secret-1").await;
    let (_, me) = server.get("/api/v1/me", Some(&access)).await;
    assert_eq!(me["site_id"], site_a.id.as_str());
    assert!(agent.get("password_hash").is_none());
    // Once only.
    let (status, _) = server.post("/api/v1/invitations/accept", None, accept(&token, "other-secret-1")).await;
    assert_eq!(status, 404);

    // The taken address is still site B's alone.
    let taken = server.state.store.agent_by_email("taken@example.com").await.unwrap().unwrap();
    assert_eq!(taken.site_id, site_b.id);
    let (_, open) = send(&server, reqwest::Method::GET, "/api/v1/admin/invitations", &admin_a, None).await;
    let open: Vec<&str> = open.as_array().unwrap().iter().map(|i| i["email"].as_str().unwrap()).collect();
    assert_eq!(open, ["taken@example.com"]);

    // Facts of site A's own are said: its agent's address, an open invitation.
    for (email, why) in [("new@example.com", "this site has an agent"), ("taken@example.com", "invitation waiting")] {
        let body = json!({"email": email, "name": "Again"});
        let (status, err) = send(&server, post.clone(), "/api/v1/admin/invitations", &admin_a, Some(body)).await;
        assert_eq!(status, 409, "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(why), "{err}");
    }

    // A revoked invitation's link no longer works.
    let body = json!({"email": "late@example.com", "name": "Late", "role": "admin"});
    let (status, late) = send(&server, post.clone(), "/api/v1/admin/invitations", &admin_a, Some(body)).await;
    assert_eq!(status, 202, "{late}");
    let late_mail = smtp.receive(1, Duration::from_secs(15)).await.remove(0);
    let late_token = invite_token(&late_mail).expect("a link");
    let path = format!("/api/v1/admin/invitations/{}", late["id"].as_str().unwrap());
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, &admin_a, None).await;
    assert_eq!(status, 204);
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, &admin_a, None).await;
    assert_eq!(status, 404, "revoked once");
    let (status, _) = server.post("/api/v1/invitations/accept", None, accept(&late_token, "late-secret-1")).await;
    assert_eq!(status, 404);

    // The audit log has each invitation and the revocation, for site A only.
    let (_, log) = send(&server, reqwest::Method::GET, "/api/v1/admin/audit", &admin_a, None).await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["invitation.revoked", "invitation.sent", "invitation.sent", "invitation.sent"], "{log:#}");
    let (_, b_log) = send(&server, reqwest::Method::GET, "/api/v1/admin/audit", &admin_b, None).await;
    assert_eq!(b_log, json!([]));

    // Forged and foreign tokens are "not found": another key's, an access
    // token, garbage, an over-long one.
    let forged = holdfast_server::auth::Tokens::new(b"not the server's key")
        .issue_invitation(late["id"].as_str().unwrap(), now_ms() + 60_000)
        .unwrap();
    for bad in [forged, access.clone(), "x.y.z".into(), "a".repeat(5000)] {
        let (status, err) = server.post("/api/v1/invitations/accept", None, accept(&bad, "whatever-1")).await;
        assert_eq!(status, 404, "{err}");
    }
    // Agents are not admins; the operator role is not invited.
    let (agent_token, _) = server.login("new@example.com", "new-secret-1").await;
    let body = json!({"email": "x@example.com", "name": "X"});
    let (status, _) = send(&server, post.clone(), "/api/v1/admin/invitations", &agent_token, Some(body)).await;
    assert_eq!(status, 403);
    let body = json!({"email": "x@example.com", "name": "X", "role": "operator"});
    let (status, _) = send(&server, post.clone(), "/api/v1/admin/invitations", &admin_a, Some(body)).await;
    assert_eq!(status, 403, "only an operator makes an operator, and never by invitation");
    for body in [
        json!({"email": "not-an-email", "name": "X"}),
        json!({"email": "x@example.com", "name": ""}),
        json!({"email": "x@example.com", "name": "X", "chat_limit": 0}),
        json!({"email": "x@example.com", "name": "X", "extra": 1}),
    ] {
        let (status, err) =
            send(&server, post.clone(), "/api/v1/admin/invitations", &admin_a, Some(body.clone())).await;
        assert!(status == 400 || status == 422, "{body}: {status} {err}");
    }
}

#[tokio::test]
async fn without_mail_a_site_admin_is_told_and_the_operator_sets_a_password() {
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(server.state.store.as_ref(), &site, "boss@shop.example").await;
    let (token, _) = server.login("boss@shop.example", "password123").await;
    let body = json!({"email": "new@example.com", "name": "New"});
    let (status, err) = send(&server, reqwest::Method::POST, "/api/v1/admin/invitations", &token, Some(body)).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("mail relay"), "{err}");
    let (_, site_view) = send(&server, reqwest::Method::GET, "/api/v1/admin/site", &token, None).await;
    assert_eq!(site_view["mail_enabled"], false);

    let operator = crate::status::operator(&server).await;
    let body = json!({"email": "New@Example.com", "name": "New", "password": "new-secret-1"});
    let (status, made) = send(&server, reqwest::Method::POST, "/api/v1/admin/agents", &operator, Some(body)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["email"], "new@example.com");
    server.login("new@example.com", "new-secret-1").await;
}

// ----- the store, both backends ------------------------------------------------

both_stores!(an_invitation_and_its_email_commit_together_and_are_accepted_once);

fn invitation(site: &Site, by: &str, email: &str, expires_at: i64) -> Invitation {
    Invitation {
        id: new_id(),
        site_id: site.id.clone(),
        email: email.into(),
        name: "Nina".into(),
        role: Role::Admin,
        chat_limit: 3,
        invited_by: by.into(),
        created_at: now_ms(),
        expires_at,
        accepted_at: None,
        revoked_at: None,
    }
}

fn email(site_id: &str, to: &str) -> NewDelivery {
    NewDelivery {
        id: new_id(),
        site_id: Some(site_id.into()),
        kind: DeliveryKind::Email,
        template: "invitation".into(),
        recipient: to.into(),
        payload: "{}".into(),
        dedupe_key: format!("invitation:{}", new_id()),
        created_at: now_ms(),
        give_up_at: now_ms() + 86_400_000,
    }
}

async fn an_invitation_and_its_email_commit_together_and_are_accepted_once(b: Backend) {
    let store = b.store.as_ref();
    let site = store.create_site("Shop").await.unwrap();
    store.create_group(&site.id, "Support", true).await.unwrap();
    let hash = passwords::hash_now("password123").unwrap();
    let boss = store
        .create_agent(NewAgent {
            site_id: &site.id,
            email: "boss@shop.example",
            name: "Boss",
            role: Role::Admin,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
    let later = now_ms() + 3_600_000;

    let nina = invitation(&site, &boss.id, "nina@example.com", later);
    store.create_invitation(nina.clone(), email(&site.id, "nina@example.com")).await.unwrap();
    assert_eq!(store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().len(), 1);
    // A second open invitation for the address, or one for the site's own
    // agent, is refused, and its email with it.
    let again = invitation(&site, &boss.id, "nina@example.com", later);
    assert!(store.create_invitation(again, email(&site.id, "nina@example.com")).await.is_err());
    let own = invitation(&site, &boss.id, "boss@shop.example", later);
    assert!(store.create_invitation(own, email(&site.id, "boss@shop.example")).await.is_err());
    // An email that cannot be stored takes the invitation down with it.
    let broken = invitation(&site, &boss.id, "omar@example.com", later);
    assert!(store.create_invitation(broken.clone(), email("no-such-site", "omar@example.com")).await.is_err());
    assert!(store.invitation(&broken.id).await.unwrap().is_none(), "all or nothing");
    assert_eq!(store.deliveries(Scope::site(&site.id), None, 10).await.unwrap().len(), 1);
    let open: Vec<String> = store.open_invitations(&site.id).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(open, std::slice::from_ref(&nina.id));

    // Accepted once: the agent has the invitation's name, role and limit,
    // and starts in the default group.
    let agent = store.accept_invitation(&nina.id, &hash, now_ms()).await.unwrap();
    assert_eq!((agent.email.as_str(), agent.role, agent.chat_limit), ("nina@example.com", Role::Admin, 3));
    assert_eq!(store.agent(&agent.id).await.unwrap().unwrap().site_id, site.id);
    let default_group = store.groups(&site.id).await.unwrap().remove(0);
    assert!(store.group_members(&default_group.id).await.unwrap().contains(&agent.id));
    assert!(store.accept_invitation(&nina.id, &hash, now_ms()).await.is_err());
    assert!(store.open_invitations(&site.id).await.unwrap().is_empty());
    assert!(store.invitation(&nina.id).await.unwrap().unwrap().accepted_at.is_some());

    // Expired, revoked, or whose address got an account meanwhile: refused.
    let expired = invitation(&site, &boss.id, "old@example.com", now_ms() - 1);
    store.create_invitation(expired.clone(), email(&site.id, "old@example.com")).await.unwrap();
    assert!(store.accept_invitation(&expired.id, &hash, now_ms()).await.is_err());
    let revoked = invitation(&site, &boss.id, "rev@example.com", later);
    store.create_invitation(revoked.clone(), email(&site.id, "rev@example.com")).await.unwrap();
    let other = store.create_site("Other").await.unwrap();
    assert!(!store.revoke_invitation(&other.id, &revoked.id, now_ms()).await.unwrap(), "not another site's");
    assert!(store.revoke_invitation(&site.id, &revoked.id, now_ms()).await.unwrap());
    assert!(store.accept_invitation(&revoked.id, &hash, now_ms()).await.is_err());
    let raced = invitation(&site, &boss.id, "raced@example.com", later);
    store.create_invitation(raced.clone(), email(&site.id, "raced@example.com")).await.unwrap();
    store
        .create_agent(NewAgent {
            site_id: &other.id,
            email: "raced@example.com",
            name: "Raced",
            role: Role::Agent,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
    let err = store.accept_invitation(&raced.id, &hash, now_ms()).await.unwrap_err();
    assert!(err.to_string().contains("already has a Holdfast account"), "{err}");
    assert!(store.invitation(&raced.id).await.unwrap().unwrap().accepted_at.is_none());
}
