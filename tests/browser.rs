//! The chat widget in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core through `tests/js/widget_browser.mjs`, against a running server. `.ci/run` installs
//! Chromium; elsewhere `apt-get install chromium` (or CHROMIUM=/path/to/chrome).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::TestDb;
use common::api::Api;

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&path).exists(),
        "Chromium is needed for the browser tests: apt-get install chromium (or set CHROMIUM)"
    );
    path
}

async fn in_a_browser(db: &TestDb, script: &str) {
    let api = Api::start(db).await;
    run(&api, script).await;
}

async fn run(api: &Api, script: &str) {
    let chromium = chromium();
    let admin = api.register("agent@example.com").await;
    if script == "ai_browser.mjs" {
        let context = serde_json::json!({"business_name": "Acme Bikes", "business_description": "Bike repairs",
            "instructions": "", "scheduling_link": null, "llm_enabled": true});
        let (status, body) = api
            .call(
                reqwest::Method::PUT,
                "/api/business_context",
                Some(&admin.token),
                Some(context),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/js failed");
    }
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("NETIA_URL", &api.base)
        .env("ACCOUNT_ID", &admin.account_id)
        .env("AGENT_TOKEN", &admin.token)
        .env("AGENT_EMAIL", "agent@example.com")
        .env("AGENT_PASSWORD", "correct horse battery")
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", &screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "{script} failed:\n{stdout}\n{stderr}"
    );
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
    run(&api, "ai_browser.mjs").await;
    db.cleanup().await;
}
