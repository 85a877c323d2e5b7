//! The first start with no configuration (here forced with `NETIA_DEMO=1`, on both backends; the
//! unconfigured start itself is `tests/demo.rs`) creates the demo account *with a history*: the newcomer who signs in with the printed password finds an inbox of open,
//! assigned, urgent, snoozed and closed conversations, bot replies in Markdown, handoffs, notes and
//! a customer's photo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestDb;
use common::api::Api;
use common::nodes::free_port;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `netia serve` with `NETIA_DEMO=1` on `db`: the child and the demo password it printed.
async fn first_start(db: &TestDb, port: u16) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .arg("serve")
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("NETIA_DEMO", "1")
        .env("ATTACHMENTS_URL", common::api::UPLOADS_URL)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let password = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("sign in as demo@netia.local / ") {
                return rest.trim_end_matches(')').to_owned();
            }
        }
        panic!("netia exited without printing the demo login");
    })
    .await
    .expect("the demo login is printed");
    // Keep reading: the server may print more.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, password)
}

async fn the_demo_account_starts_with_a_history(db: &TestDb) {
    let port = free_port();
    let (mut child, password) = first_start(db, port).await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let (status, body) = api
        .post(
            "/api/session",
            None,
            json!({"email": "demo@netia.local", "password": password}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();

    // The projections catch up with the history in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let (status, counts) = api.get("/api/conversations/count", &token).await;
        assert_eq!(status, StatusCode::OK, "{counts}");
        let total = counts["data"]["open"].as_i64().unwrap_or(0)
            + counts["data"]["closed"].as_i64().unwrap_or(0)
            + counts["data"]["snoozed"].as_i64().unwrap_or(0);
        if total >= 21 || tokio::time::Instant::now() > deadline {
            break counts["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let n = |k: &str| counts[k].as_i64().unwrap_or(-1);
    assert_eq!((n("open"), n("closed"), n("snoozed")), (10, 10, 1), "{counts}");
    assert!(n("priority") >= 2, "{counts}");

    let (_, open) = api.get("/api/conversations?status=open&limit=100", &token).await;
    let open = open["data"].as_array().unwrap().clone();
    assert_eq!(open.len(), 10);
    let assigned = open.iter().filter(|c| c["assignee_id"].is_string()).count();
    assert!(assigned >= 3, "some are assigned to the demo agent: {open:?}");

    // Every conversation has messages; bot replies are Markdown; notes exist for agents.
    let (_, all) = api.get("/api/conversations?limit=100&status=closed", &token).await;
    let mut conversations: Vec<Value> = all["data"].as_array().unwrap().clone();
    conversations.extend(open);
    let mut kinds = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    for c in &conversations {
        let id = c["id"].as_str().unwrap();
        let (status, messages) = api.get(&format!("/api/conversations/{id}/messages"), &token).await;
        assert_eq!(status, StatusCode::OK);
        let messages = messages["data"].as_array().unwrap();
        assert!(!messages.is_empty(), "{id} has messages");
        for m in messages {
            let kind = m["type"].as_str().unwrap().to_owned();
            if kind == "bot" {
                assert_eq!(m["format"], "markdown", "{m}");
            }
            kinds.insert(kind);
            files.extend(m["attachments"].as_array().unwrap().iter().cloned());
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["agent", "bot", "customer", "note"]
    );
    // A customer sent a photo: it is stored, served and has a thumbnail.
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        (files[0]["file_name"].as_str(), files[0]["content_type"].as_str()),
        (Some("brake.png"), Some("image/png"))
    );
    for url in [&files[0]["url"], &files[0]["thumbnail_url"]] {
        let response = api
            .http
            .get(format!("{}{}", api.base, url.as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
    child.kill().await.unwrap();
}

on_both_backends!(the_demo_account_starts_with_a_history);
