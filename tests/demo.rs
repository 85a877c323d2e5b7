//! `netia serve` with no configuration: the first start creates a demo account and prints how to sign
//! in and where the demo site is; the second start leaves it alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

async fn start(dir: &std::path::Path, port: u16) -> (tokio::process::Child, Vec<String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("netia starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = format!("http://127.0.0.1:{port}/health/ready");
    let mut printed = Vec::new();
    for _ in 0..200 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await {
        printed.push(line);
    }
    (child, printed)
}

#[tokio::test]
async fn the_first_start_without_configuration_creates_a_demo_account_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut first, printed) = start(dir.path(), port).await;
    let text = printed.join("\n");
    let login = text
        .lines()
        .find(|l| l.contains("sign in as"))
        .unwrap_or_else(|| panic!("no demo credentials printed:\n{text}"));
    let credentials = login.split("sign in as ").nth(1).unwrap().trim_end_matches(')');
    let (email, password) = credentials.split_once(" / ").unwrap();
    let demo = text
        .lines()
        .find(|l| l.contains("/demo?accountId="))
        .expect("the demo site's URL");
    let demo_url = demo.split_whitespace().find(|w| w.starts_with("http")).unwrap();

    let http = reqwest::Client::new();
    let session = http
        .post(format!("http://127.0.0.1:{port}/api/session"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        session.status(),
        reqwest::StatusCode::CREATED,
        "the printed credentials sign in"
    );
    let page = http.get(demo_url).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("/widget.js") && page.contains("data-account-id"),
        "{page}"
    );
    let dashboard = http.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    assert!(dashboard.text().await.unwrap().contains("Sign in to Netia"));
    first.kill().await.unwrap();

    let (_second, printed) = start(dir.path(), port).await;
    assert!(
        !printed.join("\n").contains("sign in as"),
        "a second start creates nothing: {printed:?}"
    );
}
