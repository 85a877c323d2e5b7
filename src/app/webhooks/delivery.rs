//! Deliveries of outbound webhooks and their log (`webhook_deliveries`): one row per subscription,
//! log event and event name (or per test), holding the exact body sent on every attempt, its
//! state (`pending`, `delivered`, `failed`, `parked`), the attempts made and the last answer.

use std::time::Duration;

use chrono::Utc;
use netia_events::chain::format_time;
use serde::Serialize;
use sqlx::AnyPool;
use uuid::Uuid;

use super::guard::{self, GuardedResolver};
use super::signature::{DELIVERY_HEADER, SIGNATURE_HEADER, sign};

/// How long one delivery attempt may take (connect, send, answer).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failure's text the log keeps.
const ERROR_CHARS: usize = 500;

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    /// The `X-Netia-Delivery` header and the body's `id`: the same on every attempt.
    pub id: String,
    pub subscription_id: String,
    /// `message:created`, …, or `webhook:test`.
    pub event: String,
    /// The log event that caused it; null for a test.
    pub event_id: Option<String>,
    /// `pending`, `delivered`, `failed` (retried later) or `parked` (attempts exhausted).
    pub state: String,
    pub attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    pub response_status: Option<i64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub body: String,
}

const COLUMNS: &str = "delivery_id AS id, subscription_id, event, event_id, state, attempts, response_status, \
     error, created_at, updated_at, body";

/// What is recorded for a new delivery.
pub struct NewDelivery<'a> {
    pub subscription_id: Uuid,
    pub account_id: &'a str,
    pub event: &'a str,
    pub event_id: Option<Uuid>,
    /// Builds the body from the delivery id (the body names it).
    pub body: &'a (dyn Fn(&str) -> String + Sync),
}

/// The delivery of `new` (its cause's row if one exists already: a redelivered event reuses it,
/// with the same id and body).
pub async fn open(db: &AnyPool, new: &NewDelivery<'_>) -> Result<Delivery, sqlx::Error> {
    let id = Uuid::now_v7().to_string();
    let now = format_time(Utc::now());
    sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, subscription_id, account_id, event, event_id, body, state, \
         attempts, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
         ON CONFLICT (subscription_id, event_id, event) DO NOTHING",
    )
    .bind(&id)
    .bind(new.subscription_id.to_string())
    .bind(new.account_id)
    .bind(new.event)
    .bind(new.event_id.map(|e| e.to_string()))
    .bind((new.body)(&id))
    .bind(&now)
    .execute(db)
    .await?;
    match new.event_id {
        Some(event_id) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 AND event_id = $2 AND event = $3"
            ))
            .bind(new.subscription_id.to_string())
            .bind(event_id.to_string())
            .bind(new.event)
            .fetch_one(db)
            .await
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE delivery_id = $1"
            ))
            .bind(&id)
            .fetch_one(db)
            .await
        }
    }
}

/// The latest deliveries of a subscription, newest first, at most `limit`.
pub async fn list(db: &AnyPool, subscription_id: Uuid, limit: i64) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 ORDER BY delivery_id DESC LIMIT $2"
    ))
    .bind(subscription_id.to_string())
    .bind(limit.clamp(1, 500))
    .fetch_all(db)
    .await
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Sends deliveries: a client that never reaches refused addresses (unless `allow_private`) and
/// never follows redirects.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// The client; fails only when TLS cannot initialise. No proxy is used (`HTTP(S)_PROXY` would
    /// resolve names itself, past the guard).
    pub fn new(allow_private: bool) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Netia-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver));
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
        })
    }

    /// One attempt at `delivery` to `url`, signed with `secret`; a 2xx answer is delivered.
    pub async fn attempt(&self, url: &str, secret: &str, delivery: &Delivery) -> Attempt {
        let failed = |status: Option<u16>, error: String| Attempt {
            delivered: false,
            status,
            error: Some(error.chars().take(ERROR_CHARS).collect()),
        };
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return failed(None, "the subscription's URL does not parse".into());
        };
        if !self.allow_private && guard::literal_refused(&parsed) {
            return failed(None, "the URL's host is a private, loopback or reserved address".into());
        }
        let signature = sign(secret, Utc::now().timestamp(), delivery.body.as_bytes());
        let sent = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, &delivery.id)
            .header("X-Netia-Event", &delivery.event)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Attempt {
                delivered: true,
                status: Some(response.status().as_u16()),
                error: None,
            },
            Ok(response) => {
                let status = response.status();
                failed(Some(status.as_u16()), format!("the receiver answered {status}"))
            }
            Err(e) if e.is_timeout() => failed(None, format!("no answer within {DELIVERY_TIMEOUT:?}")),
            Err(e) => failed(None, describe(&e)),
        }
    }
}

/// A transport error with its causes (reqwest's own text omits them).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Records `attempt` on `delivery`: delivered, failed, or parked when `last`.
pub async fn record(db: &AnyPool, delivery: &Delivery, attempt: &Attempt, last: bool) -> Result<(), sqlx::Error> {
    let state = match (attempt.delivered, last) {
        (true, _) => "delivered",
        (false, false) => "failed",
        (false, true) => "parked",
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, response_status = $2, error = $3, \
         updated_at = $4 WHERE delivery_id = $5",
    )
    .bind(state)
    .bind(attempt.status.map(i64::from))
    .bind(attempt.error.clone())
    .bind(format_time(Utc::now()))
    .bind(&delivery.id)
    .execute(db)
    .await?;
    Ok(())
}
