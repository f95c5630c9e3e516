//! Chat search through `GET /api/v1/search`, on SQLite and PostgreSQL: a
//! site's chats found by all of a query's words (across messages), by the
//! visitor's name and email, narrowed by status, agent, group and dates;
//! without words, the list of past chats a page at a time. Another site's
//! agent finds nothing of it, and an erased visitor's words are found by
//! nobody.

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::services::TestDb;
use crate::support::{Client, TestServer};

/// A visitor who gives their name and email, then says `lines`; returns
/// the conversation, the visitor's id and their socket.
async fn chat(
    s: &TestServer,
    site: &holdfast_server::store::Site,
    name: &str,
    lines: &[&str],
) -> (String, String, Client) {
    let (visitor_id, token) = s.visitor(site).await;
    let mut v = Client::connect(s, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let email = format!("{}@shop.example", name.split(' ').next().unwrap().to_lowercase());
    v.send(json!({"type": "identify", "name": name, "email": email})).await;
    let mut conv: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let ack = v.say(conv.as_deref(), &format!("m{i}"), line).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        conv = Some(ack["conv"].as_str().unwrap().to_owned());
    }
    (conv.unwrap(), visitor_id, v)
}

/// The conversation ids of a search's answer, in order.
async fn found(s: &TestServer, token: &str, query: &str) -> Vec<String> {
    let (status, page) = s.get(&format!("/api/v1/search?{query}"), Some(token)).await;
    assert_eq!(status, 200, "{query}: {page}");
    page["chats"].as_array().unwrap().iter().map(|c| c["conversation_id"].as_str().unwrap().to_owned()).collect()
}

async fn search_finds_chats_by_words_people_and_filters(s: TestServer) {
    let site = s.site().await;
    let other = s.new_site("Other").await;
    let ann = s.person(&site, "ann@example.com", "Ann", holdfast_server::store::Role::Agent).await;
    let bob = s.person(&site, "bob@example.com", "Bob", holdfast_server::store::Role::Agent).await;
    s.person(&site, "boss@example.com", "Boss", holdfast_server::store::Role::Admin).await;
    s.person(&other, "spy@b.example", "Spy", holdfast_server::store::Role::Agent).await;
    let (boss, _) = s.login("boss@example.com", "password123").await;
    let (status, billing) = s.post("/api/v1/admin/groups", Some(&boss), json!({"name": "Billing"})).await;
    assert_eq!(status, 201, "{billing}");
    let (mut ann_socket, ann_token) = s.online_agent("ann@example.com").await;

    // Four chats, oldest first. "ship" and "Canada" are both in Nora's, in
    // two messages; Paul's has only "ship"; Quinn's only "Canada"; Erin's
    // both, but she is erased below.
    let (nora, _, _nora_socket) = chat(&s, &site, "Nora Quist", &["Can you ship my order?", "I live in Canada."]).await;
    let (paul, _, mut paul_socket) = chat(&s, &site, "Paul Roe", &["Do you ship on Sundays?"]).await;
    let (quinn, _, _quinn_socket) = chat(&s, &site, "Quinn Ash", &["Greetings from Canada"]).await;
    let (erin, erin_id, _erin_socket) = chat(&s, &site, "Erin Moss", &["ship to Canada, my card is 4111"]).await;
    // Another site's visitor says the same words.
    let (theirs, _, _their_socket) = chat(&s, &other, "Nora Other", &["ship to Canada"]).await;
    for conv in [&nora, &paul, &quinn, &erin] {
        ann_socket.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    }

    // Nora's chat is closed, Paul's goes to Bob, Quinn's back to Billing's queue.
    let (mut bob_socket, _) = s.online_agent("bob@example.com").await;
    ann_socket.send(json!({"type": "close", "conv": nora})).await;
    ann_socket.wait_for(|f| f["type"] == "closed" && f["conv"] == nora.as_str()).await;
    ann_socket.send(json!({"type": "transfer", "conv": paul, "to_agent": bob.id})).await;
    bob_socket.wait_for(|f| f["type"] == "assigned" && f["conv"] == paul.as_str()).await;
    ann_socket.send(json!({"type": "transfer", "conv": quinn, "to_group": billing["id"]})).await;
    ann_socket.wait_for(|f| f["type"] == "transferred" && f["conv"] == quinn.as_str()).await;
    let (status, erased) = s.post(&format!("/api/v1/admin/visitors/{erin_id}/erase"), Some(&boss), json!({})).await;
    assert_eq!(status, 200, "{erased}");

    // All words, across messages; newest first; never the erased words.
    assert_eq!(found(&s, &ann_token, "q=ship%20Canada").await, [nora.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=ship").await, [paul.as_str(), nora.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=canada").await, [quinn.as_str(), nora.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=4111").await, Vec::<String>::new(), "erased words are gone");
    assert_eq!(found(&s, &ann_token, "q=Erin").await, Vec::<String>::new(), "an erased name is gone");
    // By the visitor's name and email, and a name word with a message word.
    assert_eq!(found(&s, &ann_token, "q=Quist").await, [nora.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=paul@shop.example").await, [paul.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=Quinn%20canada").await, [quinn.as_str()]);
    assert_eq!(found(&s, &ann_token, "q=Quinn%20ship").await, Vec::<String>::new());
    // A message is found as soon as it is acknowledged, nothing written
    // between (SQLite's writer indexes in passes; a search asks for one).
    let ack = paul_socket.say(Some(&paul), "m-late", "Any news from Zanzibar?").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(found(&s, &ann_token, "q=zanzibar").await, [paul.as_str()]);

    // What a result says.
    let (_, page) = s.get("/api/v1/search?q=ship%20Canada", Some(&ann_token)).await;
    let hit = &page["chats"][0];
    assert_eq!(hit["visitor_name"], "Nora Quist", "{hit}");
    assert_eq!(hit["visitor_email"], "nora@shop.example");
    assert_eq!(hit["status"], "closed");
    assert_eq!(hit["agent_id"], ann.id.as_str());
    assert_eq!(hit["agent_name"], "Ann");
    assert_eq!(hit["group_name"], "General");
    assert!(hit["created_at"].as_i64().unwrap() > 0);
    assert_eq!(hit["snippet"]["text"], "I live in Canada.", "the latest message with a word: {hit}");
    let (_, events) = s.get(&format!("/api/v1/conversations/{nora}/events"), Some(&ann_token)).await;
    let canada = events.as_array().unwrap().iter().find(|e| e["body"] == "I live in Canada.").unwrap();
    assert_eq!(hit["snippet"]["seq"], canada["seq"]);
    assert_eq!(page["next"], Value::Null);

    // Filters, with words and without.
    assert_eq!(found(&s, &ann_token, "q=ship&status=closed").await, [nora.as_str()]);
    assert_eq!(found(&s, &ann_token, &format!("q=ship&agent={}", bob.id)).await, [paul.as_str()]);
    assert_eq!(found(&s, &ann_token, &format!("group={}", billing["id"].as_str().unwrap())).await, [quinn.as_str()]);
    assert_eq!(found(&s, &ann_token, "status=queued").await, [quinn.as_str()]);
    let (_, page) = s.get("/api/v1/search?q=Quinn", Some(&ann_token)).await;
    assert_eq!(page["chats"][0]["agent_id"], Value::Null);
    assert_eq!(page["chats"][0]["group_name"], "Billing");
    let paul_at = {
        let (_, page) = s.get("/api/v1/search?q=Paul", Some(&ann_token)).await;
        page["chats"][0]["created_at"].as_i64().unwrap()
    };
    assert_eq!(found(&s, &ann_token, &format!("q=ship&to={paul_at}")).await, [nora.as_str()]);
    assert_eq!(found(&s, &ann_token, &format!("q=ship&from={paul_at}")).await, [paul.as_str()]);
    assert_eq!(found(&s, &ann_token, &format!("from={}", paul_at + 3_600_000)).await, Vec::<String>::new());

    // The list of past chats, two at a time, newest first.
    let (_, first) = s.get("/api/v1/search?limit=2", Some(&ann_token)).await;
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (_, second) = s.get(&format!("/api/v1/search?limit=2&cursor={next}"), Some(&ann_token)).await;
    assert_eq!(second["next"], Value::Null, "{second}");
    let ids: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|p| p["chats"].as_array().unwrap().iter().map(|c| c["conversation_id"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, [erin.as_str(), quinn.as_str(), paul.as_str(), nora.as_str()]);
    assert_eq!(second["chats"][1]["snippet"], Value::Null, "no words, no snippet");

    // Another site's agent finds nothing of this site, and this site's
    // agent nothing of theirs.
    let (spy, _) = s.login("spy@b.example", "password123").await;
    assert_eq!(found(&s, &spy, "q=ship").await, [theirs.as_str()]);
    assert_eq!(found(&s, &spy, "").await, [theirs.as_str()]);
    assert_eq!(found(&s, &spy, &format!("agent={}", ann.id)).await, Vec::<String>::new());
    assert_eq!(found(&s, &spy, "q=Quist").await, Vec::<String>::new());
    assert!(!found(&s, &ann_token, "q=Other").await.contains(&theirs));

    // Bad input gets a clear 400.
    for query in [
        "cursor=garbage".to_owned(),
        "cursor=12_".to_owned(),
        "status=missing".to_owned(),
        format!("q={}", "a".repeat(201)),
        "q=%21%21%21".to_owned(),
        "from=10&to=5".to_owned(),
        "q=a%20b%20c%20d%20e%20f%20g%20h%20i%20j%20k".to_owned(),
        "limit=x".to_owned(),
        "colour=red".to_owned(),
    ] {
        let (status, body) = s.get(&format!("/api/v1/search?{query}"), Some(&ann_token)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}: {body}");
    }
    let (status, _) = s.get("/api/v1/search?q=ship", None).await;
    assert_eq!(status, 401);
    s.stop().await;
}

/// Each word is the start of a word in the chat, and what is typed is
/// text: quotes, operators, parentheses, `NEAR`, column filters and colons
/// are never the index's query syntax. Each hostile query below would find
/// the chat (or fail) if read as FTS5 or tsquery syntax; read as text it
/// finds it only when every word's start is there.
async fn search_matches_word_starts_and_reads_syntax_as_text(s: TestServer) {
    let site = s.site().await;
    let other = s.new_site("Other").await;
    s.person(&site, "ann@example.com", "Ann", holdfast_server::store::Role::Agent).await;
    s.person(&other, "spy@b.example", "Spy", holdfast_server::store::Role::Agent).await;
    let (mut ann_socket, ann) = s.online_agent("ann@example.com").await;
    let (spy, _) = s.login("spy@b.example", "password123").await;
    let (shipping, _, _v1) =
        chat(&s, &site, "Dora Vance", &["Is shipping to Canada free?", "It's urgent: back\\slash (really)"]).await;
    let (other_chat, _, _v2) = chat(&s, &site, "Hugo Lind", &["Where is my shipment?"]).await;
    let (_, _, _v3) = chat(&s, &other, "Ivo Spy", &["shipping to Canada too"]).await;
    for conv in [&shipping, &other_chat] {
        ann_socket.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;
    }
    let both = [other_chat.as_str(), shipping.as_str()];
    let only = [shipping.as_str()];
    let none: [&str; 0] = [];
    let cases: &[(&str, &[&str])] = &[
        // Word starts, all words needed, case aside.
        ("ship", &both),
        ("SHIPP", &only),
        ("shipm", &[other_chat.as_str()]),
        ("ship canad", &only),
        ("ship canadax", &none),
        ("shipping canada free", &only),
        ("dor", &only),
        ("vanc ship", &only),
        ("hugo@shop.example", &[other_chat.as_str()]),
        ("hugo", &[other_chat.as_str()]),
        // Quotes and operators are text.
        ("\"ship", &both),
        ("ship\"", &both),
        ("\"\"ship\"\"", &both),
        ("'ship' & canada", &only),
        ("'ship':* | zzz", &none),
        ("ship OR zzz", &none),
        ("zzz OR ship", &none),
        ("ship NOT canada", &none),
        ("ship AND canada", &none),
        ("-canada ship", &only),
        ("ship*", &both),
        ("^ship", &both),
        ("NEAR(ship canada)", &none),
        ("NEAR(ship", &none),
        ("(ship) (canada)", &only),
        ("text:ship", &none),
        ("{text}:ship", &none),
        ("ship:*", &both),
        ("ship:A", &none),
        ("it's urgent", &only),
        ("back\\slash", &only),
        ("back\\", &only),
        ("\\'ship", &both),
        ("ship <-> canada", &only),
        ("!ship", &both),
        ("ship;DROP TABLE events", &none),
    ];
    for (typed, expected) in cases {
        let query = format!("q={}", crate::attachments::encode(typed));
        assert_eq!(found(&s, &ann, &query).await, *expected, "{typed:?}");
        // Another site's chat has the same words; its agent never finds ours.
        assert!(!found(&s, &spy, &query).await.contains(&shipping), "{typed:?}");
    }
    // The snippet of a word start is cut around the word.
    let (_, page) = s.get("/api/v1/search?q=canad", Some(&ann)).await;
    assert_eq!(page["chats"][0]["snippet"]["text"], "Is shipping to Canada free?", "{page}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_sqlite() {
    search_finds_chats_by_words_people_and_filters(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    search_finds_chats_by_words_people_and_filters(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_word_starts_on_sqlite() {
    search_matches_word_starts_and_reads_syntax_as_text(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_word_starts_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    search_matches_word_starts_and_reads_syntax_as_text(server).await;
}

/// Migration 0041 gave PostgreSQL's `message_search_text` (the expression
/// of the messages' search index) a quick way out for data that names no
/// files. An index stays exact only if the function gives every row the
/// text it gave before: compared here with 0025's own expression over
/// data of every shape a row can hold, escapes and hostile names too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_text_on_postgres_is_what_it_was() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| c.database_url = Some(db.url.clone())).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let before = "coalesce(b, '') || coalesce((SELECT ' ' || string_agg(translate(a ->> 'name', '._-', '   '), ' ') \
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(d::jsonb -> 'attachments') = 'array' \
                  THEN d::jsonb -> 'attachments' ELSE '[]'::jsonb END) a), '')";
    let bodies = [None, Some(""), Some("Where is my order?"), Some("<script>alert(1)</script> ' \" \\")];
    let data = [
        "{}",
        r#"{"attachments":[{"id":"f1","name":"invoice_2026-03.final.pdf"},{"name":"photo.png"}]}"#,
        r#"{"attachments":[]}"#,
        r#"{"attachments":"invoice.pdf"}"#,
        r#"{"attachments":[{"nom":"x.pdf"},{"name":null},{"name":7}]}"#,
        r#"{"\u0061ttachments":[{"name":"escaped.key.txt"}]}"#,
        r#"{"note":"attachments","other":"\\"}"#,
        r#"{"attachments":[{"name":"\"quoted\" ünïcødé_名前.txt"}]}"#,
        r#"{"nested":{"attachments":[{"name":"deeper.pdf"}]}}"#,
    ];
    let mut compared = 0;
    for body in bodies {
        for d in data {
            let (old, new): (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {before}, message_search_text(b, d) FROM (SELECT $1::text AS b, $2::text AS d) v"
            )))
            .bind(body)
            .bind(d)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(new, old, "body {body:?}, data {d}");
            compared += 1;
        }
    }
    assert_eq!(compared, bodies.len() * data.len());
    let named: String =
        sqlx::query_scalar("SELECT message_search_text('see', $1)").bind(data[1]).fetch_one(&mut conn).await.unwrap();
    assert_eq!(named, "see invoice 2026 03 final pdf photo png", "files' names are still in the text");
    server.stop().await;
}

/// A message's words go into the search index's pending list as it is
/// stored; each node merges that list into the index a quarter second at a
/// time, beside its writer, so no commit of chat waits on a merge of
/// seconds of it (`postgres_writer::merge_search_entries`). The list stays
/// all but empty, and what was merged is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_index_is_merged_beside_the_writer_on_postgres() {
    let db = TestDb::create().await;
    let s = TestServer::start_with(|c| c.database_url = Some(db.url.clone())).await;
    let site = s.site().await;
    s.person(&site, "ann@example.com", "Ann", holdfast_server::store::Role::Agent).await;
    let (ann, _) = s.login("ann@example.com", "password123").await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pgstattuple").execute(&mut conn).await.unwrap();
    let pending = "SELECT pending_tuples FROM pgstatginindex('events_search')";

    let (conv, _, _socket) = chat(&s, &site, "Nora Quist", &["Where is my parcel?", "It was due on Monday."]).await;
    // Nothing else inserts or vacuums here (the list's limit is 4 MB).
    let merged_within = tokio::time::Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar(pending).fetch_one(&mut conn).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(merged_within.elapsed() < std::time::Duration::from_secs(10), "{left} entries still pending");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found(&s, &ann, "q=parcel%20monday").await, vec![conv]);
    s.stop().await;
}
