//! Outbound webhooks, Papercups' event subscriptions made trustworthy: an admin subscribes a URL to
//! some of [`WEBHOOK_EVENTS`] and gets a secret, shown once; every delivery is a POST of
//! `{"id", "event", "created_at", "account_id", "payload"}` (the payload in the API's shapes, see
//! [`payload`]) signed with that secret ([`signature`]), retried with backoff until the receiver
//! answers 2xx and parked after the bus's attempts, with a log per subscription ([`delivery`]).
//! URLs may not reach private addresses ([`guard`]).
//!
//! Subscriptions are events of the account (`EventSubscriptionCreated`/`Deleted`), the secret
//! sealed in them. Deliveries are bookkeeping (`webhook_deliveries`), like the bus's claims: an
//! attempt is not a fact about the business, and the log would grow with every retry.

pub mod delivery;
pub mod guard;
pub mod payload;
pub mod signature;

use chrono::Utc;
use netia_commands::{Account, AccountCommand, AccountError};
use netia_events::account::WEBHOOK_EVENTS;
use netia_events::{AccountId, Metadata, RecordedEvent};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use self::delivery::{Delivery, NewDelivery, Sender};
use super::{App, AppError};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// The event name of a delivery sent by "send test event".
pub const TEST_EVENT: &str = "webhook:test";
/// Bytes of randomness in a subscription's secret (`whsec_` + 64 hex characters).
const SECRET_BYTES: usize = 32;

/// What outbound webhooks may reach (`WEBHOOK_ALLOW_PRIVATE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Private, loopback and link-local addresses are allowed (a private deployment, tests).
    pub allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not allowed (422).
    #[error(transparent)]
    Refused(#[from] guard::Refused),
    /// The secret cannot be sealed or opened on this node (503).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The account refused the command (invalid URL or events, too many, not found).
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The HTTP client could not be built (TLS did not initialise).
    #[error("the webhook client cannot start: {0}")]
    Client(String),
}

/// A subscription as admins see it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
}

/// The associated data a sealed subscription secret is bound to.
fn context(subscription_id: Uuid) -> String {
    format!("webhook-secret:{subscription_id}")
}

/// Subscribes `url` to `events` and returns the subscription with its secret (shown only now).
pub async fn create(
    app: &App,
    account_id: AccountId,
    url: &str,
    events: Vec<String>,
    meta: &Metadata,
) -> Result<(Subscription, String), WebhookError> {
    guard::check_url(url, app.webhooks.allow_private).await?;
    let subscription_id = Uuid::now_v7();
    let mut bytes = [0u8; SECRET_BYTES];
    crate::secrets::fill_random(&mut bytes);
    let secret = format!("whsec_{}", hex::encode(bytes));
    let sealed_secret = app.sealer.seal(secret.as_bytes(), &context(subscription_id))?;
    let command = AccountCommand::CreateEventSubscription {
        subscription_id,
        url: url.to_owned(),
        events,
        sealed_secret,
    };
    app.bus.execute::<Account>(account_id, command, meta).await?;
    let account = app.state_of::<Account>(account_id).await?;
    let created = account
        .event_subscriptions
        .get(&subscription_id)
        .ok_or(AppError::NotFound("event subscription"))?;
    Ok((view(subscription_id, created), secret))
}

fn view(id: Uuid, s: &netia_commands::EventSubscription) -> Subscription {
    Subscription {
        id: id.to_string(),
        url: s.url.clone(),
        events: s.events.clone(),
    }
}

/// The account's subscriptions, oldest first.
pub async fn list(app: &App, account_id: AccountId) -> Result<Vec<Subscription>, WebhookError> {
    let account = app.state_of::<Account>(account_id).await?;
    Ok(account.event_subscriptions.iter().map(|(id, s)| view(*id, s)).collect())
}

/// Ends a subscription: nothing more is delivered to it.
pub async fn delete(app: &App, account_id: AccountId, id: Uuid, meta: &Metadata) -> Result<(), WebhookError> {
    let command = AccountCommand::DeleteEventSubscription { subscription_id: id };
    app.bus.execute::<Account>(account_id, command, meta).await?;
    Ok(())
}

async fn subscription(
    app: &App,
    account_id: AccountId,
    id: Uuid,
) -> Result<netia_commands::EventSubscription, WebhookError> {
    let account = app.state_of::<Account>(account_id).await?;
    Ok(account
        .event_subscriptions
        .get(&id)
        .cloned()
        .ok_or(AppError::NotFound("event subscription"))?)
}

/// The latest deliveries to a subscription of the account, newest first.
pub async fn deliveries(app: &App, account_id: AccountId, id: Uuid, limit: i64) -> Result<Vec<Delivery>, WebhookError> {
    subscription(app, account_id, id).await?;
    Ok(delivery::list(&app.db, id, limit).await?)
}

/// The body of a delivery: its id, the event name, when, the account, the payload.
fn body(delivery_id: &str, event: &str, at: &str, account_id: &str, payload: &Value) -> String {
    json!({"id": delivery_id, "event": event, "created_at": at, "account_id": account_id, "payload": payload})
        .to_string()
}

/// Sends a `webhook:test` delivery to the subscription now, once, and answers how it went (the
/// delivery log keeps it too).
pub async fn send_test(app: &App, account_id: AccountId, id: Uuid) -> Result<Delivery, WebhookError> {
    let found = subscription(app, account_id, id).await?;
    let secret = open_secret(app, id, &found.sealed_secret)?;
    let at = netia_events::chain::format_time(Utc::now());
    let account = account_id.to_string();
    let payload = json!({"message": "A test event from Netia: this endpoint receives signed webhooks."});
    let render = |delivery_id: &str| body(delivery_id, TEST_EVENT, &at, &account, &payload);
    let new = NewDelivery {
        subscription_id: id,
        account_id: &account,
        event: TEST_EVENT,
        event_id: None,
        body: &render,
    };
    let opened = delivery::open(&app.db, &new).await?;
    let sender = Sender::new(app.webhooks.allow_private).map_err(|e| WebhookError::Client(e.to_string()))?;
    let attempt = sender.attempt(&found.url, &secret, &opened).await;
    delivery::record(&app.db, &opened, &attempt, !attempt.delivered).await?;
    let recorded = delivery::list(&app.db, id, 500)
        .await?
        .into_iter()
        .find(|d| d.id == opened.id)
        .unwrap_or(opened);
    Ok(recorded)
}

fn open_secret(app: &App, id: Uuid, sealed: &str) -> Result<String, WebhookError> {
    let bytes = app.sealer.open(sealed, &context(id))?;
    Ok(String::from_utf8(bytes).map_err(|_| SealError::Unreadable)?)
}

/// Why the deliveries of an event are not all done.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// Some receivers did not take it: try again later (those that did are not sent it again).
    #[error("{failed} of {tried} webhook deliveries failed: {first}")]
    Failed { failed: usize, tried: usize, first: String },
    #[error(transparent)]
    Payload(#[from] payload::PayloadError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Delivers `event` to every subscription of its account that wants it, skipping deliveries done
/// before (a redelivered event). A delivery failing its `max_attempts`th attempt is logged as
/// parked (the bus parks the event then).
pub async fn deliver_event(
    app: &App,
    sender: &Sender,
    event: &RecordedEvent,
    max_attempts: u32,
) -> Result<(), DeliverError> {
    let names = payload::names_of(event);
    if names.is_empty() {
        return Ok(());
    }
    let Some(account_id) = account_of(app, event).await? else {
        return Ok(());
    };
    let account = app.state_of::<Account>(account_id).await.map_err(WebhookError::from)?;
    let wanted: Vec<(Uuid, &netia_commands::EventSubscription, &str)> = account
        .event_subscriptions
        .iter()
        .flat_map(|(id, s)| {
            names
                .iter()
                .filter(|n| s.events.iter().any(|e| e == *n))
                .map(move |n| (*id, s, *n))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let at = netia_events::chain::format_time(event.recorded_at);
    let account_text = account_id.to_string();
    let mut attempts = Vec::new();
    for name in names {
        if !wanted.iter().any(|(_, _, n)| n == name) {
            continue;
        }
        let Some(rendered) = payload::render(app, name, event).await? else {
            continue;
        };
        for (id, subscription, _) in wanted.iter().filter(|(_, _, n)| n == name) {
            let render = |delivery_id: &str| body(delivery_id, name, &at, &account_text, &rendered);
            let new = NewDelivery {
                subscription_id: *id,
                account_id: &account_text,
                event: name,
                event_id: Some(event.event_id),
                body: &render,
            };
            let opened = delivery::open(&app.db, &new).await.map_err(WebhookError::from)?;
            if opened.state != "delivered" {
                attempts.push((*id, *subscription, opened));
            }
        }
    }
    let tried = attempts.len();
    let outcomes = futures_util::future::join_all(attempts.iter().map(|(id, subscription, opened)| async move {
        let secret = open_secret(app, *id, &subscription.sealed_secret)?;
        let attempt = sender.attempt(&subscription.url, &secret, opened).await;
        let last = opened.attempts + 1 >= i64::from(max_attempts);
        delivery::record(&app.db, opened, &attempt, last).await?;
        Ok::<_, WebhookError>(attempt)
    }))
    .await;
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(attempt) if attempt.delivered => {}
            Ok(attempt) => failures.push(attempt.error.unwrap_or_default()),
            Err(e) => return Err(e.into()),
        }
    }
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(DeliverError::Failed {
            failed: failures.len(),
            tried,
            first: first.clone(),
        }),
    }
}

/// Whether some subscription of the event's account wants `event` (true when that cannot be
/// read now: the delivery then finds out, and retries if it must).
pub async fn wanted(app: &App, event: &RecordedEvent) -> bool {
    let names = payload::names_of(event);
    if names.is_empty() {
        return false;
    }
    let account = match account_of(app, event).await {
        Ok(Some(account_id)) => app.state_of::<Account>(account_id).await,
        Ok(None) => return false,
        Err(_) => return true,
    };
    match account {
        Ok(account) => account
            .event_subscriptions
            .values()
            .any(|s| s.events.iter().any(|e| names.contains(&e.as_str()))),
        Err(_) => true,
    }
}

/// The account an event belongs to: its metadata's, else its stream's aggregate's.
async fn account_of(app: &App, event: &RecordedEvent) -> Result<Option<AccountId>, WebhookError> {
    if let Some(account) = event
        .metadata
        .get("account_id")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
    {
        return Ok(Some(account));
    }
    Ok(match event.stream_type.as_str() {
        "conversation" => {
            app.state_of::<netia_commands::Conversation>(&event.stream_id)
                .await?
                .account_id
        }
        "customer" => {
            app.state_of::<netia_commands::Customer>(&event.stream_id)
                .await?
                .account_id
        }
        _ => None,
    })
}

/// Whether `name` is a subscription event name.
pub fn is_event_name(name: &str) -> bool {
    WEBHOOK_EVENTS.contains(&name)
}
