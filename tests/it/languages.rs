//! The widget's languages over plain HTTP: every table is served apart
//! from `widget.js` (gzipped, readable from any origin, revalidated by
//! ETag) with exactly the keys of the English table built into the widget,
//! so `widget.js` stays within its budget with all of them shipped; a site
//! forces a language and overrides strings in its settings, checked (bad
//! input gets a 400) and kept to the admin's own site.

use std::collections::BTreeSet;

use holdfast_server::store::Role;
use reqwest::header;
use serde_json::{Value, json};

use crate::support::TestServer;

const LANGUAGES: [&str; 13] = ["ar", "de", "es", "fr", "he", "it", "ja", "nl", "pl", "pt", "sv", "tr", "zh"];

/// The keys of the English table in widget.js (`const EN = {key: "…", …};`).
fn english_keys() -> BTreeSet<String> {
    let widget = include_str!("../../assets/widget.js");
    let start = widget.find("const EN = {").expect("widget.js has its English table") + "const EN = {".len();
    let table = &widget[start..start + widget[start..].find("};").unwrap()];
    let mut keys = BTreeSet::new();
    // Each entry is `key: "text"`; texts hold no `", ` followed by a key.
    for entry in table.split("\", ") {
        let key = entry.trim_start().split(':').next().unwrap().trim();
        assert!(key.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "odd key {key:?}");
        keys.insert(key.to_owned());
    }
    keys
}

#[tokio::test]
async fn every_language_is_served_apart_with_the_widgets_keys() {
    let server = TestServer::start().await;
    let english = english_keys();
    assert!(english.len() >= 40, "{english:?}");
    let mut total = 0;
    for lang in LANGUAGES {
        let res = server
            .http
            .get(format!("{}/widget-i18n/{lang}.json", server.base))
            .header(header::ACCEPT_ENCODING, "gzip")
            .header(header::ORIGIN, "https://shop.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{lang}");
        let h = res.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "application/json", "{lang}");
        assert_eq!(h[header::CONTENT_ENCODING], "gzip", "{lang}");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{lang}");
        assert!(h[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"), "{lang}");
        total += res.bytes().await.unwrap().len();
        let (_, table) = server.get(&format!("/widget-i18n/{lang}.json"), None).await;
        let table = table.as_object().unwrap();
        let keys: BTreeSet<String> = table.keys().filter(|k| !k.starts_with('_')).cloned().collect();
        assert_eq!(keys, english, "{lang}.json has other keys than widget.js's English");
        let rtl = lang == "ar" || lang == "he";
        assert_eq!(table["_dir"], if rtl { "rtl" } else { "ltr" }, "{lang}");
        // Every placeholder of the English text is kept.
        for key in &keys {
            let text = table[key].as_str().unwrap();
            assert!(!text.trim().is_empty(), "{lang}.{key}");
            if [
                "open_unread",
                "closed_until",
                "closed_until_today",
                "will_email",
                "sending_msg",
                "not_sent",
                "joined",
                "queue",
                "typing",
            ]
            .contains(&key.as_str())
            {
                assert!(text.contains("{0}"), "{lang}.{key} lost its {{0}}: {text}");
            }
        }
    }
    println!("13 language tables: {total} bytes gzipped in all");

    // Revalidated by ETag; an unknown language is a 404 in our shape.
    let res = server.http.get(format!("{}/widget-i18n/de.json", server.base)).send().await.unwrap();
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    let res = server
        .http
        .get(format!("{}/widget-i18n/de.json", server.base))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 304);
    for path in ["/widget-i18n/xx.json", "/widget-i18n/de", "/widget-i18n/..%2Fwidget.js"] {
        let (status, body) = server.get(path, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
}

async fn put_settings(s: &TestServer, token: &str, change: impl FnOnce(&mut Value)) -> (u16, Value) {
    let (_, site) = s.get("/api/v1/admin/site", Some(token)).await;
    let mut settings = site["settings"].clone();
    change(&mut settings);
    s.put("/api/v1/admin/site/settings", Some(token), settings).await
}

#[tokio::test]
async fn a_site_forces_a_language_and_overrides_strings_of_its_own() {
    let s = TestServer::start().await;
    let shop = s.site().await;
    let other = s.new_site("Other").await;
    s.person(&shop, "boss@shop.example", "Boss", Role::Admin).await;
    s.person(&other, "olga@other.example", "Olga", Role::Admin).await;
    s.agent(&shop, "al@shop.example", 5).await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (al, _) = s.login("al@shop.example", "password123").await;

    let (status, saved) = put_settings(&s, &boss, |v| {
        v["language"] = json!(" AR ");
        v["strings"] = json!({"send": "  أرسل الآن ", "away": "<b>Back soon</b>"});
    })
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["language"], "ar");
    assert_eq!(saved["strings"], json!({"away": "<b>Back soon</b>", "send": "أرسل الآن"}));
    // The widget gets them with its session; the other site does not.
    let (_, session) = s.post("/api/v1/visitor/session", None, json!({"widget_key": shop.widget_key})).await;
    assert_eq!(session["site"]["settings"]["language"], "ar", "{session}");
    assert_eq!(session["site"]["settings"]["strings"]["send"], "أرسل الآن");
    let (_, session) = s.post("/api/v1/visitor/session", None, json!({"widget_key": other.widget_key})).await;
    assert_eq!(session["site"]["settings"]["language"], "", "{session}");
    assert_eq!(session["site"]["settings"]["strings"], json!({}));

    // Olga's settings are her site's: the shop's stay as they were.
    let (status, _) = put_settings(&s, &olga, |v| v["language"] = json!("de")).await;
    assert_eq!(status, 200);
    let (_, shop_view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    assert_eq!(shop_view["settings"]["language"], "ar");
    // An agent may not change them.
    assert_eq!(put_settings(&s, &al, |v| v["language"] = json!("fr")).await.0, 403);

    // Bad input: a clear 400, nothing stored.
    let bad: [(&str, Value); 6] = [
        ("language", json!("xx")),
        ("language", json!("english")),
        ("strings", json!({"nope": "x"})),
        ("strings", json!({"send": "   "})),
        ("strings", json!({"send": "x".repeat(301)})),
        ("strings", json!({"send": 5})),
    ];
    for (field, value) in bad {
        let (status, body) = put_settings(&s, &boss, |v| v[field] = value.clone()).await;
        assert_eq!(status, 400, "{field} = {value} → {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    let (_, shop_view) = s.get("/api/v1/admin/site", Some(&boss)).await;
    assert_eq!(shop_view["settings"]["strings"]["send"], "أرسل الآن");
}
