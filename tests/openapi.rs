//! The OpenAPI document: valid OpenAPI 3, every route the server has is in it, and every operation
//! in it is served (none is a phantom answered by the "no route" fallback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::TestDb;
use common::api::Api;
use reqwest::{Method, StatusCode};

/// The server's routes (method, path), as `src/http` registers them under `/api`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("post", "/api/registration"),
    ("post", "/api/session"),
    ("delete", "/api/session"),
    ("post", "/api/session/renew"),
    ("get", "/api/me"),
    ("get", "/api/personal_api_keys"),
    ("post", "/api/personal_api_keys"),
    ("delete", "/api/personal_api_keys/{id}"),
    ("get", "/api/users"),
    ("put", "/api/users/{id}/role"),
    ("post", "/api/users/{id}/disable"),
    ("post", "/api/users/{id}/enable"),
    ("get", "/api/user_invitations"),
    ("post", "/api/user_invitations"),
    ("delete", "/api/user_invitations/{id}"),
    ("get", "/api/conversations"),
    ("post", "/api/conversations"),
    ("get", "/api/conversations/count"),
    ("get", "/api/conversations/customer"),
    ("get", "/api/conversations/{id}"),
    ("patch", "/api/conversations/{id}"),
    ("put", "/api/conversations/{id}"),
    ("get", "/api/conversations/{id}/history"),
    ("post", "/api/conversations/{id}/read"),
    ("get", "/api/conversations/{id}/messages"),
    ("post", "/api/conversations/{id}/messages"),
    ("post", "/api/conversations/{id}/attachments"),
    ("get", "/api/attachments/{account}/{conversation}/{file}"),
    ("get", "/api/customers"),
    ("post", "/api/customers"),
    ("get", "/api/customers/identify"),
    ("get", "/api/customers/{id}"),
    ("put", "/api/customers/{id}"),
    ("delete", "/api/customers/{id}"),
    ("put", "/api/customers/{id}/metadata"),
    ("put", "/api/customers/{id}/email"),
    ("get", "/api/customers/{id}/export"),
    ("post", "/api/customers/{id}/erase"),
    ("get", "/api/widget_settings"),
    ("put", "/api/widget_settings"),
    ("get", "/api/business_context"),
    ("put", "/api/business_context"),
    ("get", "/api/canned_responses"),
    ("post", "/api/canned_responses"),
    ("put", "/api/canned_responses/{id}"),
    ("delete", "/api/canned_responses/{id}"),
    ("get", "/api/tags"),
    ("get", "/api/reporting"),
    ("get", "/api/reporting/ai"),
    ("get", "/api/identity_verification"),
    ("put", "/api/identity_verification"),
    ("post", "/api/identity_verification/secret"),
    ("get", "/api/event_subscriptions"),
    ("post", "/api/event_subscriptions"),
    ("delete", "/api/event_subscriptions/{id}"),
    ("get", "/api/event_subscriptions/{id}/deliveries"),
    ("post", "/api/event_subscriptions/{id}/test"),
    ("get", "/api/slack"),
    ("delete", "/api/slack"),
    ("get", "/api/slack/oauth/start"),
    ("get", "/api/slack/oauth"),
    ("get", "/api/slack/channels"),
    ("put", "/api/slack/mapping"),
    ("post", "/api/slack/events"),
    ("post", "/api/slack/actions"),
    ("get", "/api/twilio/authorization"),
    ("put", "/api/twilio/authorization"),
    ("delete", "/api/twilio/authorization"),
    ("post", "/api/twilio/webhook"),
    ("post", "/api/twilio/status"),
    ("get", "/api/conversations/{id}/messages/{message_id}/original"),
    ("get", "/api/gmail"),
    ("delete", "/api/gmail"),
    ("get", "/api/gmail/oauth/start"),
    ("get", "/api/gmail/oauth"),
    ("get", "/api/gmail/profile"),
    ("post", "/api/gmail/sync"),
    ("get", "/api/email/inbound"),
    ("post", "/api/email/inbound/rotate"),
    ("post", "/api/email/inbound/{token}"),
    ("get", "/api/me/notifications"),
    ("put", "/api/me/notifications"),
];

async fn the_document_lists_every_route_and_only_served_ones(db: &TestDb) {
    let api = Api::start(db).await;
    let response = api
        .http
        .get(format!("{}/api/openapi.json", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented, routes, "documented vs served routes");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every reference resolves.
    let text = doc.to_string();
    let references: Vec<&str> = text.split("\"$ref\":\"#/components/schemas/").skip(1).collect();
    assert!(references.len() > 50, "{} references", references.len());
    for reference in references {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "unresolved schema {name}"
        );
    }

    // Each operation is served: never the fallback's "no route" answer.
    let id = "0190a0a0-0000-7000-8000-000000000000";
    for (method, path) in ROUTES {
        let url = format!("{}{}", api.base, path.replace("{id}", id));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = api.http.request(method.clone(), url).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(!body.contains("no route for"), "{method} {path}: {status} {body}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}

on_both_backends!(the_document_lists_every_route_and_only_served_ones);
