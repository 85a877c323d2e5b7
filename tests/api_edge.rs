//! The API's edge over real HTTP: rate limits (429 + Retry-After), CORS, the widget's origin
//! allow-list, and the JSON error shape for unknown routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn public_calls_are_rate_limited_per_ip_and_per_customer(db: &TestDb) {
    let api = Api::start_with(
        db,
        &[
            ("RATE_LIMIT_IP_PER_MINUTE", "8"),
            ("RATE_LIMIT_CUSTOMER_PER_MINUTE", "3"),
        ],
    )
    .await;
    let admin = api.register("owner@example.com").await; // 1 public call
    let (_, customer) = api.customer(&admin.account_id).await; // 2
    let settings = format!("/api/widget_settings?account_id={}", admin.account_id);
    // The customer token: 3 per minute, whatever the address allows.
    for i in 0..3 {
        let (status, _) = api.get("/api/conversations/customer", &customer).await;
        assert_eq!(status, StatusCode::OK, "call {i}");
    }
    let response = api
        .http
        .get(format!("{}/api/conversations/customer", api.base))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "rate_limited"
    );
    // The address had 8: 2 + 3 + 1 (refused) used; two more pass, then 429. (One token comes back
    // every 7.5 s, so a slow machine may see one or two more pass.)
    let mut passed = 0;
    loop {
        let (status, body) = api.call(Method::GET, &settings, None, None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "rate_limited");
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        passed += 1;
        assert!(passed <= 4, "no 429 after {passed} more calls");
    }
    assert!(passed >= 2, "{passed}");
    let (status, _) = api
        .post(
            "/api/session",
            None,
            json!({"email": "owner@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "logins count too");
    // Signed-in agents are not limited by the address.
    for _ in 0..20 {
        assert_eq!(api.get("/api/me", &admin.token).await.0, StatusCode::OK);
    }
}

async fn cors_and_the_widget_origin_allow_list(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("owner@example.com").await;
    let preflight = api
        .http
        .request(Method::OPTIONS, format!("{}/api/customers", api.base))
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");

    let create = |origin: &'static str| {
        api.http
            .post(format!("{}/api/customers", api.base))
            .header("Origin", origin)
            .json(&json!({"account_id": admin.account_id}))
            .send()
    };
    // No allow-list: any origin.
    assert_eq!(
        create("https://anywhere.example").await.unwrap().status(),
        StatusCode::CREATED
    );
    let (status, _) = api
        .call(
            Method::PUT,
            "/api/widget_settings",
            Some(&admin.token),
            Some(json!({"allowed_origins": ["https://shop.example.com"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = create("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "*",
        "errors are readable cross-origin"
    );
    let allowed = create("https://shop.example.com").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::CREATED);
    let customer_token = allowed.json::<serde_json::Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Every customer route holds a browser to the list, not only the widget's first calls.
    let list = |origin: Option<&'static str>| {
        let mut request = api
            .http
            .get(format!("{}/api/conversations/customer", api.base))
            .bearer_auth(&customer_token);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    assert_eq!(
        list(Some("https://evil.example")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        list(Some("https://shop.example.com")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        list(None).await.unwrap().status(),
        StatusCode::OK,
        "servers send no Origin"
    );
    // A good token of the other kind: 403, so that a widget keeps its token; a bad one: 401.
    for (token, expected) in [
        (admin.token.as_str(), StatusCode::FORBIDDEN),
        ("ntc_made_up", StatusCode::UNAUTHORIZED),
    ] {
        let (status, answer) = api.get("/api/conversations/customer", token).await;
        assert_eq!(status, expected, "{token} on a customer route: {answer}");
    }
    let own = format!("http://{}", api.base.trim_start_matches("http://"));
    let response = api
        .http
        .get(format!(
            "{}/api/widget_settings?account_id={}",
            api.base, admin.account_id
        ))
        .header("Origin", own)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "Netia's own pages");
    let (status, body) = api.call(Method::GET, "/api/nothing", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

/// The raw answer to `request` written on a fresh connection that the server closes.
async fn raw(api: &Api, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

async fn head_is_answered_like_get_without_content(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("head@example.com").await;
    let answer = raw(
        &api,
        "HEAD /health/live HTTP/1.1\r\nHost: netia\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(body, "", "no content after a HEAD's headers");

    // An agent's route: the same status and length as its GET, and no content.
    let get = api
        .http
        .get(format!("{}/api/customers", api.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    let length = get.bytes().await.unwrap().len();
    let answer = raw(
        &api,
        &format!(
            "HEAD /api/customers HTTP/1.1\r\nHost: netia\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            admin.token
        ),
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("content-length: {length}")),
        "{head}"
    );
    assert_eq!(body, "");
    let answer = raw(
        &api,
        "HEAD /api/customers HTTP/1.1\r\nHost: netia\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // A route without a GET: 405, named as the HEAD it was.
    let (status, answer) = api.call(Method::HEAD, "/api/session", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    let answer = raw(
        &api,
        "HEAD /api/session HTTP/1.1\r\nHost: netia\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

on_both_backends!(
    public_calls_are_rate_limited_per_ip_and_per_customer,
    cors_and_the_widget_origin_allow_list,
    head_is_answered_like_get_without_content
);
