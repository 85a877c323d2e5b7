//! Outbound webhook subscriptions (admins): subscribe a URL to events and get its signing secret
//! once, list, delete, read a subscription's delivery log, send a test event. The rules are in
//! [`crate::app::webhooks`].

use actix_web::{HttpResponse, web};
use netia_commands::AccountError;
use netia_events::user::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState, parse_id};
use crate::app::webhooks::delivery::Delivery;
use crate::app::webhooks::{self, Subscription, WebhookError};
use crate::secrets::SealError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/event_subscriptions")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(web::resource("/event_subscriptions/{id}").route(web::delete().to(delete)))
    .service(web::resource("/event_subscriptions/{id}/deliveries").route(web::get().to(deliveries)))
    .service(web::resource("/event_subscriptions/{id}/test").route(web::post().to(send_test)));
}

fn webhook_error(e: WebhookError) -> ApiError {
    match e {
        WebhookError::Refused(refused) => ApiError::Invalid(format!("url is not allowed: {refused}")),
        WebhookError::Seal(e @ (SealError::NoKey | SealError::Unreadable)) => ApiError::Unavailable(e.to_string()),
        WebhookError::Account(e) => ApiError::from_command(e, |e| {
            matches!(e, AccountError::NotFound | AccountError::EventSubscriptionNotFound)
        }),
        WebhookError::App(e) => e.into(),
        WebhookError::Database(e) => ApiError::internal(e),
        WebhookError::Client(e) => ApiError::internal(anyhow::anyhow!(e)),
    }
}

/// A new subscription, with its secret: shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSubscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `whsec_` + 64 hex characters: the HMAC key of `X-Netia-Signature`. Store it now; it is
    /// never shown again (delete the subscription and create another to change it).
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSubscription {
    /// `http(s)://…`; not a private, loopback or link-local address unless the deployment allows it.
    url: String,
    /// Some of `message:created`, `conversation:created`, `conversation:updated`,
    /// `conversation:closed`, `customer:created`.
    events: Vec<String>,
}

/// The account's webhook subscriptions (admins); never their secrets.
#[utoipa::path(get, path = "/api/event_subscriptions", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<Subscription>>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = webhooks::list(&state, agent.account_id).await.map_err(webhook_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Subscribes a URL to events (admins). Deliveries are POSTs of `{"id", "event", "created_at",
/// "account_id", "payload"}` with `X-Netia-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<body>")>` and `X-Netia-Delivery: <id>`, retried with backoff until a 2xx answer.
#[utoipa::path(post, path = "/api/event_subscriptions", tag = "webhooks", request_body = NewSubscription, security(("bearer" = [])),
    responses((status = 201, body = Data<CreatedSubscription>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn create(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<NewSubscription>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let NewSubscription { url, events } = body.into_inner();
    let (subscription, secret) = webhooks::create(&state, agent.account_id, &url, events, &agent.meta())
        .await
        .map_err(webhook_error)?;
    Ok(HttpResponse::Created().json(Data {
        data: CreatedSubscription {
            id: subscription.id,
            url: subscription.url,
            events: subscription.events,
            secret,
        },
    }))
}

/// Ends a subscription (admins): nothing more is delivered to it.
#[utoipa::path(delete, path = "/api/event_subscriptions/{id}", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "Subscription id")), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id: uuid::Uuid = parse_id(&id, "subscription id")?;
    webhooks::delete(&state, agent.account_id, id, &agent.meta())
        .await
        .map_err(webhook_error)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// At most this many, newest first (1 to 500, default 50).
    limit: Option<i64>,
}

/// A subscription's latest deliveries, newest first (admins): state, attempts, last answer.
#[utoipa::path(get, path = "/api/event_subscriptions/{id}/deliveries", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "Subscription id"), DeliveriesQuery), security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<Delivery>>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn deliveries(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id: uuid::Uuid = parse_id(&id, "subscription id")?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 500".into()));
    }
    let data = webhooks::deliveries(&state, agent.account_id, id, limit)
        .await
        .map_err(webhook_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Sends a `webhook:test` delivery now, once (admins), and answers how it went: `state`
/// `delivered`, or `parked` with the receiver's status or the error.
#[utoipa::path(post, path = "/api/event_subscriptions/{id}/test", tag = "webhooks", params(("id" = uuid::Uuid, Path, description = "Subscription id")), security(("bearer" = [])),
    responses((status = 200, body = Data<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn send_test(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id: uuid::Uuid = parse_id(&id, "subscription id")?;
    let data = webhooks::send_test(&state, agent.account_id, id)
        .await
        .map_err(webhook_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}
