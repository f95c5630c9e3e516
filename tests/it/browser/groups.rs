//! Deleting a group from the console's Admin tab: the admin confirms (a
//! refused confirmation deletes nothing), the group with a hostile name
//! leaves the admin's list and the agents' group list, and its name was
//! text throughout (no element, no script).

use holdfast_server::store::Role;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::support::TestServer;

const HOSTILE_GROUP: &str = "<img src=x onerror=\"window.pwned=31\"> Returns";

#[tokio::test]
async fn an_admin_deletes_a_group_after_confirming() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let group = server.state.store.create_group(&site.id, HOSTILE_GROUP, false).await.unwrap();
    let driver = Driver::start().await;
    let console = driver.browser(1280, 1200).await;
    console_login(&console, &server, "ada@example.com", "password123").await;
    console.wait_for("return document.querySelectorAll('#groups-now li').length === 2", LONG).await;
    console.click_on("document.querySelector('#admin-tab')").await;
    let button = "[...document.querySelectorAll('#groups li button')].find(b => b.textContent === 'Delete')";
    console.wait_for(&format!("return !!{button}"), LONG).await;
    let label = console.exec(&format!("return {button}.getAttribute('aria-label')"), vec![]).await;
    assert_eq!(label, format!("Delete {HOSTILE_GROUP}").as_str());
    let defaults = console.exec("return [...document.querySelectorAll('#groups li')].filter(li => li.textContent.includes('(default)') && li.textContent.includes('Delete')).length", vec![]).await;
    assert_eq!(defaults, 0, "the default group has no Delete button");

    // Cancelled: nothing happens.
    console.exec("window.confirm = () => false", vec![]).await;
    console.click_on(button).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(server.state.store.group(&group.id).await.unwrap().unwrap().deleted_at.is_none());

    // Confirmed: the group goes, from both lists.
    console.exec("window.confirm = (text) => { window.asked = text; return true; }", vec![]).await;
    console.click_on(button).await;
    console.wait_for(&format!("return !{button}"), LONG).await;
    console.wait_for("return document.querySelectorAll('#groups-now li').length === 1", LONG).await;
    assert!(server.state.store.group(&group.id).await.unwrap().unwrap().deleted_at.is_some());
    let asked = console.exec("return window.asked", vec![]).await;
    assert!(asked.as_str().unwrap().contains(HOSTILE_GROUP), "{asked}");
    let elements =
        console.exec("return document.querySelectorAll('#groups img, #groups-now img').length", vec![]).await;
    assert_eq!(elements, 0);
    assert!(console.exec("return window.pwned || null", vec![]).await.is_null(), "no script of the name ran");
    console.close().await;
}
