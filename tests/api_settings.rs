//! Account settings, customers, canned responses, tags and reporting over real HTTP, both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::TestDb;
use common::api::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn business_context_and_widget_settings_are_admin_settings(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("owner@example.com").await;
    let t = admin.token.as_str();
    let (status, empty) = api.get("/api/business_context", t).await;
    assert_eq!(
        (status, empty["data"]["llm_enabled"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    let context = json!({
        "business_name": "Acme", "business_description": "Anvils", "instructions": "Be brief.",
        "scheduling_link": "https://cal.example.com/acme", "llm_enabled": true,
    });
    let (status, saved) = api
        .call(Method::PUT, "/api/business_context", Some(t), Some(context.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["data"], context);
    assert_eq!(api.get("/api/business_context", t).await.1["data"], context);
    for bad in [
        json!({"business_name": "Acme", "scheduling_link": "javascript:alert(1)"}),
        json!({"business_name": "x".repeat(201)}),
        json!({"business_name": "Acme", "llm_enabled": "yes"}),
        json!({"business_name": "Acme", "extra": 1}),
    ] {
        let (status, body) = api
            .call(Method::PUT, "/api/business_context", Some(t), Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} → {body}");
    }
    assert_eq!(
        api.get("/api/business_context", t).await.1["data"],
        context,
        "refusals wrote nothing"
    );

    let widget = json!({
        "title": "Hi", "subtitle": "Ask", "primary_color": "#112233", "greeting": "Hello!",
        "new_message_placeholder": "Type…", "show_agent_availability": true, "is_branding_hidden": true,
        "allowed_origins": ["https://shop.example.com"],
    });
    let (status, body) = api
        .call(Method::PUT, "/api/widget_settings", Some(t), Some(widget))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, public) = api
        .call(
            Method::GET,
            &format!("/api/widget_settings?account_id={}", admin.account_id),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            public["data"]["title"].as_str(),
            public["data"]["primary_color"].as_str()
        ),
        (Some("Hi"), Some("#112233"))
    );
    assert_eq!(public["data"]["account_name"], "Acme");
    let put_widget = |body: Value| api.call(Method::PUT, "/api/widget_settings", Some(t), Some(body));
    let (status, _) = put_widget(json!({"primary_color": "red"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A client that does not send allowed_origins or locale leaves them as they are.
    let (status, body) = put_widget(json!({"title": "Hi", "locale": "fr"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["allowed_origins"], json!(["https://shop.example.com"]));
    assert_eq!(body["data"]["locale"], "fr");
    let (_, body) = put_widget(json!({"title": "Hi"})).await;
    assert_eq!(body["data"]["locale"], "fr", "{body}");
    let (_, public) = api
        .call(
            Method::GET,
            &format!("/api/widget_settings?account_id={}", admin.account_id),
            None,
            None,
        )
        .await;
    assert_eq!(public["data"]["locale"], "fr");
    for locale in ["it", "FR", "fr-FR"] {
        let (status, _) = put_widget(json!({"locale": locale})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{locale}");
    }
    let (_, body) = put_widget(json!({"locale": ""})).await;
    assert_eq!(body["data"]["locale"], "", "{body}");
    // The reply time the widget shows: one of three, kept when absent, refused otherwise.
    let (_, body) = put_widget(json!({"reply_time": "minutes"})).await;
    assert_eq!(body["data"]["reply_time"], "minutes", "{body}");
    let (_, body) = put_widget(json!({"title": "Hi"})).await;
    assert_eq!(body["data"]["reply_time"], "minutes", "kept when absent: {body}");
    let (_, public) = api
        .call(
            Method::GET,
            &format!("/api/widget_settings?account_id={}", admin.account_id),
            None,
            None,
        )
        .await;
    assert_eq!(public["data"]["reply_time"], "minutes");
    for reply_time in ["soon", "MINUTES", "week"] {
        let (status, _) = put_widget(json!({"reply_time": reply_time})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply_time}");
    }
    for (path, expected) in [
        ("/api/widget_settings?account_id=nope", StatusCode::BAD_REQUEST),
        ("/api/widget_settings", StatusCode::BAD_REQUEST),
        (
            "/api/widget_settings?account_id=0190a0a0-0000-7000-8000-000000000000",
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(api.call(Method::GET, path, None, None).await.0, expected, "{path}");
    }

    // Members may not change settings.
    let invitation = api.invite(&admin, "m@example.com", "member").await;
    let member = api.accept("m@example.com", &invitation, "member").await;
    let (status, _) = api
        .call(Method::PUT, "/api/business_context", Some(&member.token), Some(context))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(
            Method::PUT,
            "/api/widget_settings",
            Some(&member.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn customers_canned_responses_tags_and_reporting(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("owner@example.com").await;
    let t = admin.token.as_str();
    let (conversation, customer_token) = api.conversation(&admin.account_id).await;
    let (_, theirs) = api.get("/api/conversations/customer", &customer_token).await;
    let customer_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();

    // Customers: list, search, get, identify, update.
    let (status, list) = api.get("/api/customers?q=ADA", t).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["data"][0]["id"], customer_id.as_str());
    assert_eq!(list["data"][0]["conversation_count"], 1);
    assert!(
        api.get("/api/customers?q=zzz", t).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        api.get("/api/customers?q=%25", t).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "% is literal"
    );
    let (status, updated) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_id}"),
            Some(t),
            Some(json!({"external_id": "crm-7", "phone": "+15550001"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["data"]["external_id"].as_str(),
            updated["data"]["name"].as_str()
        ),
        (Some("crm-7"), Some("Ada"))
    );
    let identify = format!(
        "/api/customers/identify?account_id={}&external_id=crm-7",
        admin.account_id
    );
    let (status, found) = api.call(Method::GET, &identify, None, None).await;
    assert_eq!(
        (status, found["data"]["customer_id"].as_str()),
        (StatusCode::OK, Some(customer_id.as_str()))
    );
    let (_, none) = api
        .call(Method::GET, &identify.replace("crm-7", "crm-8"), None, None)
        .await;
    assert!(none["data"].is_null());
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_id}"),
            Some(t),
            Some(json!({"email": "not an email"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, meta) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_id}/metadata"),
            Some(&customer_token),
            Some(json!({"metadata": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(
        (status, meta["data"]["metadata"]["plan"].as_str()),
        (StatusCode::OK, Some("pro"))
    );
    // Another account cannot see or change this customer.
    let other = api.register("other@example.com").await;
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({"name": "x"}));
        let (status, _) = api
            .call(
                method,
                &format!("/api/customers/{customer_id}"),
                Some(&other.token),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert!(
        api.get("/api/customers", &other.token).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Canned responses.
    let (status, created) = api
        .post(
            "/api/canned_responses",
            Some(t),
            json!({"name": "Hi", "body": "Hello!"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/canned_responses/{id}"),
            Some(t),
            Some(json!({"name": "Hi", "body": "Hello again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = api.get("/api/canned_responses", t).await;
    assert_eq!(list["data"], json!([{"id": id, "name": "Hi", "body": "Hello again"}]));
    assert!(
        api.get("/api/canned_responses", &other.token).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/canned_responses/{id}"),
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(Method::DELETE, &format!("/api/canned_responses/{id}"), Some(t), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .post("/api/canned_responses", Some(t), json!({"name": "", "body": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Tags in use, and the day's report.
    api.patch(
        &format!("/api/conversations/{conversation}"),
        t,
        json!({"tags": ["billing"]}),
    )
    .await;
    let (_, tags) = api.get("/api/tags", t).await;
    assert_eq!(tags["data"], json!([{"name": "billing", "conversations": 1}]));
    assert!(
        api.get("/api/tags", &other.token).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    api.post(
        &format!("/api/conversations/{conversation}/messages"),
        Some(t),
        json!({"body": "On it"}),
    )
    .await;
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let path = format!("/api/reporting?from={today}&to={today}");
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        report = api.get(&path, t).await.1;
        if report["data"][0]["messages"]["agent"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(report["data"][0]["opened"], 1, "{report}");
    assert_eq!(report["data"][0]["agent_replies"][&admin.user_id], 1);
    for bad in [
        "from=2026-02-01&to=2026-01-01",
        "from=2020-01-01&to=2026-01-01",
        "from=yesterday&to=today",
        "from=2026-01-01",
    ] {
        assert_eq!(
            api.get(&format!("/api/reporting?{bad}"), t).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // The widget's customer leaves an email for replies (its own token only; unverified).
    let email_path = format!("/api/customers/{customer_id}/email");
    let (status, body) = api
        .call(
            Method::PUT,
            &email_path,
            Some(&customer_token),
            Some(json!({"email": " Ada@Example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["email"], "ada@example.com",
        "normalised as agents' updates are"
    );
    let (status, _) = api
        .call(
            Method::PUT,
            &email_path,
            Some(&customer_token),
            Some(json!({"email": "not an email"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .call(
            Method::PUT,
            &email_path,
            Some(&customer_token),
            Some(json!({"mail": "a@b.co"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
    let (_, other_token) = api.customer(&admin.account_id).await;
    let (status, _) = api
        .call(
            Method::PUT,
            &email_path,
            Some(&other_token),
            Some(json!({"email": "x@example.com"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another customer's email is not theirs to set"
    );
    let (status, _) = api
        .call(Method::PUT, &email_path, None, Some(json!({"email": "x@example.com"})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, seen) = api.get(&format!("/api/customers/{customer_id}"), t).await;
    assert_eq!(seen["data"]["email"], "ada@example.com");
    // An email the agent vouched for cannot be replaced by the widget.
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_id}"),
            Some(t),
            Some(json!({"email": "ada@shop.example"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            Method::PUT,
            &email_path,
            Some(&customer_token),
            Some(json!({"email": "other@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The customer's data, for their right of access (admins): the profile and every event.
    let (status, export) = api.get(&format!("/api/customers/{customer_id}/export"), t).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let data = &export["data"];
    assert_eq!(data["format"], "netia-customer-export-1");
    assert_eq!(data["customer"]["id"], customer_id.as_str());
    let streams: Vec<&str> = data["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        streams,
        [
            format!("customer:{customer_id}"),
            format!("conversation:{conversation}")
        ]
    );
    let types: Vec<&str> = data["streams"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"CustomerCreated"), "{types:?}");
    assert!(types.contains(&"CustomerIdentified"), "{types:?}");
    let invitation = api.invite(&admin, "member@example.com", "member").await;
    let member = api.accept("member@example.com", &invitation, "member").await;
    let (status, _) = api
        .get(&format!("/api/customers/{customer_id}/export"), &member.token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let (status, _) = api
        .get(&format!("/api/customers/{customer_id}/export"), &other.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's customer");
}

on_both_backends!(
    business_context_and_widget_settings_are_admin_settings,
    customers_canned_responses_tags_and_reporting,
);

async fn deleting_a_customer_forgets_the_profile_and_keeps_the_conversations(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("owner@example.com").await;
    let t = admin.token.as_str();
    let (conversation, customer_token) = api.conversation(&admin.account_id).await;
    let (_, theirs) = api.get("/api/conversations/customer", &customer_token).await;
    let customer_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();
    let path = format!("/api/customers/{customer_id}");

    let invitation = api.invite(&admin, "m@example.com", "member").await;
    let member = api.accept("m@example.com", &invitation, "member").await;
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&member.token), None).await.0,
        StatusCode::FORBIDDEN
    );
    let other = api.register("other@example.com").await;
    assert_eq!(
        api.call(Method::DELETE, &path, Some(&other.token), None).await.0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        api.call(Method::DELETE, &path, Some(t), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get(&path, t).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call(Method::DELETE, &path, Some(t), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        api.get("/api/customers", t).await.1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        api.get("/api/conversations/customer", &customer_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, kept) = api.get(&format!("/api/conversations/{conversation}"), t).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kept["data"]["customer"]["name"].is_null(), "{kept}");
    let (_, history) = api.get(&format!("/api/conversations/{conversation}/history"), t).await;
    assert_eq!(
        history["data"].as_array().unwrap().len(),
        1,
        "the conversation's history is untouched"
    );
}

mod deletion {
    use super::*;
    on_both_backends!(deleting_a_customer_forgets_the_profile_and_keeps_the_conversations);
}
