//! Chat search in the console: an agent finds a chat by a word of a
//! hostile message (or its start, query syntax typed around it read as
//! text) and by the visitor's hostile name; both show as text
//! (no element, no script), with the visitor, the date, the state and the
//! snippet; the filters narrow it; the box left empty lists past chats.

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, admin};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\"> Yara <b>bold</b>";
const HOSTILE_WORDS: &str = "marmalade <script>window.pwned=2</script><img src=y onerror=\"window.pwned=3\">";

#[tokio::test]
async fn the_console_finds_chats_and_shows_hostile_names_and_words_as_text() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "sam@example.com", Role::Agent).await;
    let driver = Driver::start().await;
    let super::ConsoleChat { console, widget, .. } =
        super::console_chat(&driver, &server, "sam@example.com", HOSTILE_WORDS, HOSTILE_NAME).await;

    // By a word of the message.
    let search = console.el("document.querySelector('#search')").await;
    console.type_text(&search, "marmalade\u{E007}").await;
    console.wait_for("return !!document.querySelector('#results .result')", LONG).await;
    let shown = console.exec("return document.querySelector('#results .result').textContent", vec![]).await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains(HOSTILE_NAME), "the name as typed: {shown}");
    assert!(shown.contains("<script>window.pwned=2</script>"), "the words as typed: {shown}");
    assert!(shown.contains(" · active · ") && shown.contains("General"), "state and group: {shown}");
    let title = console.exec("return document.querySelector('#results-title').textContent", vec![]).await;
    assert_eq!(title, "Search results");

    // By the start of a word, whatever query syntax is typed around it:
    // quotes and parentheses are text; "OR" and "text" are words the chat
    // lacks. (Each answer differs from the one before, so each is waited.)
    for (typed, finds) in [("zzz OR marm", false), ("marm", true), ("text:marm", false), ("\"MARMA\" )(", true)] {
        console.exec("document.querySelector('#search').value = ''", vec![]).await;
        console.type_text(&search, &format!("{typed}\u{E007}")).await;
        let expect = if finds {
            "document.querySelectorAll('#results .result').length === 1"
        } else {
            "document.querySelector('#results').textContent === 'Nothing found'"
        };
        console.wait_for(&format!("return {expect}"), LONG).await;
    }

    // By the visitor's name; then a filter that leaves nothing.
    console.exec("document.querySelector('#search').value = ''", vec![]).await;
    console.type_text(&search, "Yara\u{E007}").await;
    console.wait_for("return document.querySelectorAll('#results .result').length === 1 && !document.querySelector('#results .snippet')", LONG).await;
    console.exec("const s = document.querySelector('#search-status'); s.value = 'closed'; s.dispatchEvent(new Event('change'))", vec![]).await;
    console.wait_for("return document.querySelector('#results').textContent === 'Nothing found'", LONG).await;
    console
        .exec(
            "const s = document.querySelector('#search-status'); s.value = ''; s.dispatchEvent(new Event('change'))",
            vec![],
        )
        .await;
    console.wait_for("return document.querySelectorAll('#results .result').length === 1", LONG).await;

    // The box left empty: past chats.
    console.exec("document.querySelector('#search').value = ''", vec![]).await;
    console.type_text(&search, "\u{E007}").await;
    console.wait_for("return document.querySelector('#results-title').textContent === 'Past chats'", LONG).await;
    console.wait_for("return document.querySelectorAll('#results .result').length === 1", LONG).await;

    // Opening a result opens the chat.
    console.click_on("document.querySelector('#results .result')").await;
    console.wait_for("return document.querySelector('#log').textContent.includes('marmalade')", LONG).await;
    let elements = console.exec("return document.querySelectorAll('#results img, #results script, #results b, #log img, #log script').length", vec![]).await;
    assert_eq!(elements, 0, "nothing of theirs became an element");
    let pwned = console.exec("return window.pwned || null", vec![]).await;
    assert!(pwned.is_null(), "no script of theirs ran");
    widget.close().await;
    console.close().await;
}
