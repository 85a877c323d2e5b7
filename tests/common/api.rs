//! A running server on a test database, and a small HTTP client for its API.

use std::collections::HashMap;

use netia::settings::Settings;
use netia::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::TestDb;

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// An agent signed in: their token and ids.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub renew_token: String,
    pub user_id: String,
    pub account_id: String,
}

/// The `METRICS_TOKEN` of test servers.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";
/// The `ATTACHMENTS_URL` of test servers: one directory for all (keys are unique), outside the
/// checkout.
pub const UPLOADS_URL: &str = "file:///tmp/netia-test-uploads";
/// The `NETIA_SECRET_KEY` of test servers (every node of a test shares it).
pub const SECRET_KEY: &str = "bmV0aWEtdGVzdC1zZWNyZXQta2V5LTMyLWJ5dGVzISE=";

impl Api {
    /// Starts a server (projectors included) on `db`, with extra settings.
    pub async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> Api {
        let mut vars: HashMap<&str, &str> = HashMap::from([
            ("PORT", "0"),
            ("DATABASE_URL", db.url.as_str()),
            ("METRICS_TOKEN", METRICS_TOKEN),
            ("NETIA_SECRET_KEY", SECRET_KEY),
            ("ATTACHMENTS_URL", UPLOADS_URL),
        ]);
        vars.extend(extra.iter().copied());
        let settings = Settings::from_map(&vars).unwrap();
        let app = Application::start(&settings, db.store.clone()).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Api {
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn start(db: &TestDb) -> Api {
        Self::start_with(db, &[]).await
    }

    /// Turns AI replies on for the account of the admin `token` (a business context with
    /// `llm_enabled`), as the settings page does.
    pub async fn enable_ai(&self, token: &str) {
        let context = json!({"business_name": "Acme Bikes", "business_description": "Bike repairs",
            "instructions": "", "scheduling_link": null, "llm_enabled": true});
        let (status, body) = self
            .call(Method::PUT, "/api/business_context", Some(token), Some(context))
            .await;
        assert!(status.is_success(), "{body}");
    }

    /// The value of one series (`name{label="value",…}` as rendered) at `/metrics`, if present.
    /// Metrics are per process: test servers in one test binary add up.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// `/metrics` as Prometheus would scrape it (with the token).
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// Sends `body` (JSON, if any) with an optional bearer token; returns status and JSON body
    /// (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    /// Registers a new account; its admin is signed in.
    pub async fn register(&self, email: &str) -> Session {
        let (status, body) = self
            .post(
                "/api/registration",
                None,
                json!({"email": email, "password": "correct horse battery", "account_name": "Acme"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        session(&body)
    }

    /// The admin invites `email` with `role`: the invitation token.
    pub async fn invite(&self, admin: &Session, email: &str, role: &str) -> String {
        let (status, invitation) = self
            .post(
                "/api/user_invitations",
                Some(&admin.token),
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invitation}");
        invitation["data"]["token"].as_str().unwrap().to_owned()
    }

    /// The invitee registers with the invitation and is signed in.
    pub async fn accept(&self, email: &str, invitation: &str, display_name: &str) -> Session {
        let (status, body) = self
            .post(
                "/api/registration",
                None,
                json!({"email": email, "password": "another good one", "invitation_token": invitation, "display_name": display_name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        session(&body)
    }

    /// A widget customer of `account_id` and its token.
    pub async fn customer(&self, account_id: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/customers",
                None,
                json!({"account_id": account_id, "name": "Ada", "email": "ada@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["data"]["id"].as_str().unwrap().to_owned(),
            body["data"]["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A conversation opened by a new widget customer of `account_id`: (conversation id, customer token).
    pub async fn conversation(&self, account_id: &str) -> (String, String) {
        let (customer_id, token) = self.customer(account_id).await;
        let (status, body) = self
            .post(
                "/api/conversations",
                Some(&token),
                json!({"account_id": account_id, "customer_id": customer_id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["data"]["id"].as_str().unwrap().to_owned(), token)
    }
}

/// The customer of `conversation` writes `text` (as the widget's `shout` does), through the
/// command bus on `store`.
pub async fn customer_says(
    api: &Api,
    admin: &Session,
    store: &std::sync::Arc<dyn netia::store::EventStore>,
    conversation: &str,
    text: &str,
) {
    use netia_events::conversation::Author;
    use netia_events::{Actor, ConversationId, CustomerId, Metadata};
    let (_, body) = api
        .get(&format!("/api/conversations/{conversation}"), &admin.token)
        .await;
    let customer: CustomerId = body["data"]["customer_id"].as_str().unwrap().parse().unwrap();
    let id: ConversationId = conversation.parse().unwrap();
    let meta = Metadata::new(Actor::Customer { customer_id: customer });
    let command = super::message(
        Author::Customer { customer_id: customer },
        text,
        false,
        None,
        chrono::Utc::now(),
    );
    netia::command_bus::CommandBus::new(store.clone())
        .execute::<netia_commands::Conversation>(id, command, &meta)
        .await
        .unwrap();
}

pub fn session(body: &Value) -> Session {
    let data = &body["data"];
    Session {
        token: data["token"].as_str().unwrap().to_owned(),
        renew_token: data["renew_token"].as_str().unwrap().to_owned(),
        user_id: data["user_id"].as_str().unwrap().to_owned(),
        account_id: data["account_id"].as_str().unwrap().to_owned(),
    }
}
