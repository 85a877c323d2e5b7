//! The pages' HTTP side: framing rules of `/chat` (the account's allowed origins) and `/` (never
//! framed), the embed script and the assets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use reqwest::Method;
use serde_json::json;

async fn pages_carry_the_right_headers(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let chat = format!("{}/chat?accountId={}", api.base, admin.account_id);
    let csp = |r: &reqwest::Response| {
        r.headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };

    let open = reqwest::get(&chat).await.unwrap();
    assert!(csp(&open).contains("frame-ancestors *"), "{}", csp(&open));
    assert!(open.headers().get("x-frame-options").is_none());

    let (_, current) = api
        .get(
            &format!("/api/widget_settings?account_id={}", admin.account_id),
            &admin.token,
        )
        .await;
    let current = &current["data"];
    let mut settings = json!({});
    for field in [
        "title",
        "subtitle",
        "primary_color",
        "greeting",
        "new_message_placeholder",
        "show_agent_availability",
        "is_branding_hidden",
    ] {
        settings[field] = current[field].clone();
    }
    settings["allowed_origins"] = json!(["https://shop.example"]);
    let (status, body) = api
        .call(Method::PUT, "/api/widget_settings", Some(&admin.token), Some(settings))
        .await;
    assert!(status.is_success(), "{body}");
    let limited = reqwest::get(&chat).await.unwrap();
    assert!(
        csp(&limited).contains("frame-ancestors 'self' https://shop.example"),
        "{}",
        csp(&limited)
    );
    assert!(limited.text().await.unwrap().contains("/assets/chat.js"));

    let dashboard = reqwest::get(format!("{}/", api.base)).await.unwrap();
    assert_eq!(dashboard.headers()["x-frame-options"], "DENY");
    assert!(csp(&dashboard).contains("frame-ancestors 'none'"));

    let widget = reqwest::get(format!("{}/widget.js", api.base)).await.unwrap();
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    for asset in ["phoenix.js", "chat.js", "chat.css", "dashboard.js", "dashboard.css"] {
        let r = reqwest::get(format!("{}/assets/{asset}", api.base)).await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{asset}");
    }
    let missing = reqwest::get(format!("{}/assets/../Cargo.toml", api.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let posted = reqwest::Client::new()
        .post(format!("{}/chat", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
}

mod both {
    use super::*;
    on_both_backends!(pages_carry_the_right_headers);
}
