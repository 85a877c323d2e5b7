//! Property tests of the widget's JSON bodies against a running server: arbitrary bytes, arbitrary
//! JSON and bodies with the right field names but any values, on every endpoint the widget posts
//! to (its messages go over the socket: see the frame decoder's properties in
//! `src/realtime/protocol.rs`).
//! Each is answered with a success or a 4xx carrying `{"error", "message"}` — never a 5xx, never a
//! dropped connection — and the server keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

/// JSON values of any shape.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,64}".prop_map(Value::String),
        // Long strings, near and over the documented limits.
        (0usize..30_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// An object with (some of) the widget's field names, each with any value.
fn widget_object() -> impl Strategy<Value = Value> {
    const FIELDS: [&str; 11] = [
        "account_id",
        "customer_id",
        "inbox_id",
        "external_id",
        "email",
        "name",
        "phone",
        "metadata",
        "body",
        "private",
        "client_message_id",
    ];
    prop::collection::vec((prop::sample::select(&FIELDS[..]), json_value()), 0..8)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// One body: raw bytes, any JSON, or a widget-shaped object.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        widget_object().prop_map(|v| v.to_string().into_bytes()),
        widget_object().prop_map(|v| v.to_string().into_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_any_widget_body_is_answered_with_success_or_a_clear_client_error() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let api = Api::start_with(
        &db,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_CUSTOMER_PER_MINUTE", "1000000"),
        ],
    )
    .await;
    let admin = api.register("owner@example.com").await;
    let (customer_id, token) = api.customer(&admin.account_id).await;
    {
        let (status, body) = api
            .post(
                "/api/conversations",
                Some(&token),
                json!({"account_id": admin.account_id, "customer_id": customer_id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let endpoints = [
        (reqwest::Method::POST, "/api/customers".to_owned(), None),
        (
            reqwest::Method::PUT,
            format!("/api/customers/{customer_id}/metadata"),
            Some(&token),
        ),
        (reqwest::Method::POST, "/api/conversations".to_owned(), Some(&token)),
    ];
    let mut runner = TestRunner::deterministic();
    let strategy = body();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(96);
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        let (method, path, token) = &endpoints[case % endpoints.len()];
        let mut request = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .header("content-type", "application/json")
            .body(bytes.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{method} {path} dropped the connection for {:?}: {e}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let status = response.status().as_u16();
        *answered.entry(status).or_default() += 1;
        let text = response.text().await.unwrap();
        assert!(
            status < 500,
            "{method} {path} answered {status} to {:?}: {text}",
            String::from_utf8_lossy(&bytes)
        );
        if status >= 400 {
            let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
            assert!(
                error["error"].is_string() && error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{method} {path} {status}: {text}"
            );
        }
    }
    eprintln!("{cases} hostile widget bodies, answered: {answered:?}");
    let (status, _) = api.get("/api/conversations", &admin.token).await;
    assert_eq!(status, 200, "still serving");
    db.cleanup().await;
}

/// A NUL character (U+0000) anywhere a client sends text: PostgreSQL's text types cannot hold it,
/// SQLite can; either way the answer is a success or a client error with the usual
/// `{"error", "message"}`, never a 500. Each of these answered 500 on PostgreSQL before (found by an outside probe).
async fn nul_characters_are_client_errors(db: TestDb) {
    let api = Api::start(&db).await;
    let admin = api.register("owner@example.com").await;
    let account = admin.account_id.clone();
    let (conversation, _) = api.conversation(&account).await;
    let (customer, _) = api.customer(&account).await;
    let cases: Vec<(reqwest::Method, String, Option<&str>, Option<Value>)> = vec![
        (
            reqwest::Method::POST,
            "/api/session".into(),
            None,
            Some(json!({"email": "a\u{0}@example.com", "password": "a long password"})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/customers/identify?account_id={account}&external_id=a%00b"),
            None,
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/customers?q=a%00b".into(),
            Some(&admin.token),
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/user_invitations".into(),
            Some(&admin.token),
            Some(json!({"email": "a\u{0}@example.com", "role": "agent"})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/conversations/{conversation}/messages"),
            Some(&admin.token),
            Some(json!({"body": "a\u{0}b"})),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/customers/{customer}/metadata"),
            Some(&admin.token),
            Some(json!({"metadata": {"plan": "a\u{0}b"}})),
        ),
    ];
    for (method, path, token, body) in cases {
        let (status, answer) = api.call(method.clone(), &path, token, body).await;
        // SQLite stores the text, so a lookup may simply find nothing (200).
        assert!(
            status.is_success() || status.is_client_error(),
            "{method} {path}: {status} {answer}"
        );
        assert!(
            status.is_success()
                || answer["error"].is_string() && answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {status} {answer}"
        );
    }
    let (status, _) = api.get("/api/conversations", &admin.token).await;
    assert_eq!(status, 200, "still serving");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nul_characters_are_client_errors() {
    if let Some(db) = TestDb::postgres().await {
        nul_characters_are_client_errors(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_nul_characters_are_client_errors() {
    nul_characters_are_client_errors(TestDb::sqlite().await.expect("a SQLite test database")).await;
}
