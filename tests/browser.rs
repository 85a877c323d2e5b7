//! The chat widget in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core through `tests/js/widget_browser.mjs`, against a running server. `.ci/run` installs
//! Chromium; elsewhere `apt-get install chromium` (or CHROMIUM=/path/to/chrome).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use common::nodes::{browser_script, browser_script_as};

async fn in_a_browser(db: &TestDb, script: &str) {
    let api = Api::start(db).await;
    browser_script(&api, script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_widget_works_in_a_browser_on_a_host_page() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    in_a_browser(&db, "widget_browser.mjs").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_an_agent_and_a_customer_talk_through_the_dashboard_and_the_widget() {
    let Some(db) = TestDb::postgres().await else { return };
    in_a_browser(&db, "dashboard_browser.mjs").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_widget_shows_the_ai_typing_and_its_answer() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let model = MockServer::start().await;
    let answer = serde_json::json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Yes, we repair e-bikes."}}]
    });
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer)
                .set_delay(std::time::Duration::from_millis(1500)),
        )
        .mount(&model)
        .await;
    let base = format!("{}/v1", model.uri());
    let api = Api::start_with(&db, &[("LLM_BASE_URL", &base)]).await;
    browser_script(&api, "ai_browser.mjs").await;
    db.cleanup().await;
}

/// The Reports page shows the AI outcomes of a known history (`tests/js/reports_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_reports_page_shows_ai_outcomes() {
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start(&db).await;
    let admin = api.register("agent@example.com").await;
    let bus = netia::command_bus::CommandBus::new(db.store.clone());
    common::ai_history::write_histories(&bus, admin.account_id.parse().unwrap()).await;
    browser_script_as(&api, &admin, "reports_browser.mjs").await;
    db.cleanup().await;
}

/// The widget in French (the browser's language) and German (the account's), email capture when
/// nobody is online, and the launcher's unread badge (`tests/js/widget_languages_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_widget_speaks_the_visitors_language_and_offers_email_replies() {
    let Some(db) = TestDb::postgres().await else { return };
    in_a_browser(&db, "widget_languages_browser.mjs").await;
    db.cleanup().await;
}

/// Browser notifications and the title counter for customer messages while the dashboard's tab
/// is hidden (`tests/js/notifications_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_dashboard_notifies_of_customer_messages_while_its_tab_is_hidden() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    in_a_browser(&db, "notifications_browser.mjs").await;
    db.cleanup().await;
}

/// The dashboard's keyboard shortcuts: j / k, r, e, ? (`tests/js/shortcuts_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_dashboard_answers_to_its_keyboard_shortcuts() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    in_a_browser(&db, "shortcuts_browser.mjs").await;
    db.cleanup().await;
}

/// The inbox list on a desktop and a phone, paging by scrolling, search, dark mode
/// (`tests/js/inbox_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_inbox_list_fits_pages_as_it_scrolls_and_searches_messages() {
    let Some(db) = TestDb::postgres().await else { return };
    in_a_browser(&db, "inbox_browser.mjs").await;
    db.cleanup().await;
}

/// axe-core finds no serious or critical accessibility violation on the widget, the inbox, a
/// conversation and the settings, in either colour scheme (`tests/js/axe_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_both_pages_pass_axe_core_in_both_colour_schemes() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    in_a_browser(&db, "axe_browser.mjs").await;
    db.cleanup().await;
}

/// Attachments both ways: a picture from the widget shows as a thumbnail in the dashboard and
/// downloads byte-identical; a file from the dashboard downloads in the widget; "Seen" in the
/// widget; the empty main pane; grouped messages (`tests/js/attachments_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_files_travel_between_the_widget_and_the_dashboard() {
    let Some(db) = TestDb::postgres().await else { return };
    in_a_browser(&db, "attachments_browser.mjs").await;
    db.cleanup().await;
}
