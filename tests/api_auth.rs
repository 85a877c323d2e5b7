//! Registration, sessions, renewal, expiry and API keys over real HTTP, on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestDb;
use common::api::{Api, session};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn registration_signs_in_an_admin_and_refuses_bad_input(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("Owner@Example.com").await;
    let (status, me) = api.get("/api/me", &admin.token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["email"], "owner@example.com");
    assert_eq!(me["data"]["role"], "admin");
    assert_eq!(me["data"]["account"]["name"], "Acme");
    assert_eq!(me["data"]["id"], admin.user_id.as_str());

    let good = json!({"email": "two@example.com", "password": "long enough pw", "account_name": "Beta"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (body, expected, code) in [
        (
            with("email", json!("OWNER@example.com")),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            with("password", json!("short")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            with("email", json!("not an address")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            with("account_name", json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            with("account_name", json!("x".repeat(10_000))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (with("email", json!(42)), StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        (
            with("is_admin", json!(true)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            with("email", json!("'; DROP TABLE events; --@x.io")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
    ] {
        let (status, answer) = api.post("/api/registration", None, body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (expected, Some(code)),
            "{body} → {answer}"
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Malformed JSON and oversized bodies.
    let raw = |body: String| {
        api.http
            .post(format!("{}/api/registration", api.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let response = raw("{\"email\": ".into()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "bad_request"
    );
    let response = raw(format!("{{\"email\": \"{}\"}}", "a".repeat(300_000)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing half-written: the refused address is still free.
    api.register("two@example.com").await;
}

async fn sessions_log_in_out_renew_and_expire(db: &TestDb) {
    // Long enough for the steps before the expiry check even on a loaded machine.
    let api = Api::start_with(db, &[("SESSION_TTL_SECONDS", "5")]).await;
    let admin = api.register("agent@example.com").await;
    let login = |password: &'static str| {
        api.post(
            "/api/session",
            None,
            json!({"email": "AGENT@example.com", "password": password}),
        )
    };
    let (status, body) = login("wrong password").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, body) = api
        .post(
            "/api/session",
            None,
            json!({"email": "nobody@example.com", "password": "whatever1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = login("correct horse battery").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = session(&body);
    assert_eq!(second.user_id, admin.user_id);
    assert_eq!(api.get("/api/me", &second.token).await.0, StatusCode::OK);

    // Logout ends that session only.
    let (status, _) = api
        .call(Method::DELETE, "/api/session", Some(&second.token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/api/me", &second.token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/api/me", &admin.token).await.0, StatusCode::OK);
    // Its renew token died with it.
    let (status, _) = api
        .post("/api/session/renew", None, json!({"renew_token": second.renew_token}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Renewal: a new session; the old access token and the used renew token stop working.
    let (status, body) = api
        .post("/api/session/renew", None, json!({"renew_token": admin.renew_token}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let renewed = session(&body);
    let expires_at: chrono::DateTime<chrono::Utc> = body["data"]["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires_at - chrono::Utc::now();
    assert!(
        ttl <= chrono::Duration::seconds(5) && ttl > chrono::Duration::seconds(3),
        "{ttl}"
    );
    assert_eq!(api.get("/api/me", &renewed.token).await.0, StatusCode::OK);
    assert_eq!(api.get("/api/me", &admin.token).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .post("/api/session/renew", None, json!({"renew_token": admin.renew_token}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a renew token works once");

    // Expiry (SESSION_TTL_SECONDS=5): just after the announced time.
    let wait = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    let (status, body) = api.get("/api/me", &renewed.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The renew token outlives it.
    let (status, _) = api
        .post("/api/session/renew", None, json!({"renew_token": renewed.renew_token}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    for bad in ["", "nts_0000", "Bearer", &"x".repeat(5_000)] {
        assert_eq!(api.get("/api/me", bad).await.0, StatusCode::UNAUTHORIZED, "{bad:.20}");
    }
    let response = api.http.get(format!("{}/api/me", api.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

async fn api_keys_are_shown_once_work_on_v1_and_can_be_revoked(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("keys@example.com").await;
    let (status, body) = api
        .post("/api/personal_api_keys", Some(&admin.token), json!({"name": "CI"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ntk_"));

    let (status, list) = api.get("/api/personal_api_keys", &admin.token).await;
    assert_eq!(status, StatusCode::OK);
    let listed = &list["data"][0];
    assert_eq!(
        (listed["id"].as_str(), listed["name"].as_str()),
        (Some(id.as_str()), Some("CI"))
    );
    assert!(!list.to_string().contains(&key), "the secret is never listed");
    assert!(key.starts_with(listed["preview"].as_str().unwrap()));

    let (status, me) = api.get("/api/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["id"], admin.user_id.as_str());
    assert_eq!(
        api.get("/api/me", &key).await.0,
        StatusCode::UNAUTHORIZED,
        "keys are for /api/v1"
    );
    assert_eq!(
        api.get("/api/v1/me", &admin.token).await.0,
        StatusCode::OK,
        "sessions work on v1 too"
    );
    let (status, _) = api
        .post("/api/v1/personal_api_keys", Some(&key), json!({"name": "more"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a key cannot mint keys");
    let (status, _) = api
        .post("/api/personal_api_keys", Some(&admin.token), json!({"name": ""}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Another user cannot revoke it.
    let other = api.register("other@example.com").await;
    let path = format!("/api/personal_api_keys/{id}");
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&other.token), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&admin.token), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/api/v1/me", &key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&admin.token), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = api.get("/api/personal_api_keys", &admin.token).await;
    assert!(list["data"][0]["revoked_at"].is_string());
}

on_both_backends!(
    registration_signs_in_an_admin_and_refuses_bad_input,
    sessions_log_in_out_renew_and_expire,
    api_keys_are_shown_once_work_on_v1_and_can_be_revoked,
);
