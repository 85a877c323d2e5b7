//! Inbound email: the primary inbox's address and webhook (admins), and the webhook a forwarding
//! service (Mailgun, Postmark, SES, a script) posts raw messages to. The rules are in
//! [`crate::app::inbound_email`].

use actix_web::{HttpResponse, web};
use netia_commands::{AccountError, ConversationError, CustomerError};
use netia_events::user::Role;
use serde_json::json;

use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState, parse_id};
use crate::app::inbound_email::{self, EmailReceived, InboundAddress, InboundEmailError, MAX_EMAIL_BYTES, Route};
use crate::secrets::SealError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/email/inbound").route(web::get().to(address)))
        .service(web::resource("/email/inbound/rotate").route(web::post().to(rotate)))
        .service(
            web::resource("/email/inbound/{token}")
                .app_data(web::PayloadConfig::new(MAX_EMAIL_BYTES))
                .route(web::post().to(receive)),
        )
        .service(web::resource("/conversations/{id}/messages/{message_id}/original").route(web::get().to(original)));
}

fn email_error(e: InboundEmailError) -> ApiError {
    match e {
        InboundEmailError::UnknownInbox => ApiError::NotFound(e.to_string()),
        InboundEmailError::Parse(_) => ApiError::Invalid(e.to_string()),
        InboundEmailError::Seal(e @ (SealError::NoKey | SealError::Unreadable)) => ApiError::Unavailable(e.to_string()),
        InboundEmailError::Account(e) => ApiError::from_command(e, |e| matches!(e, AccountError::NotFound)),
        InboundEmailError::Conversation(e) => ApiError::from_command(e, |e| matches!(e, ConversationError::NotFound)),
        InboundEmailError::Customer(e) => ApiError::from_command(e, |e| matches!(e, CustomerError::NotFound)),
        InboundEmailError::App(e) => e.into(),
    }
}

/// The primary inbox's inbound address and webhook URL (admins; issued on first call). Forward
/// mail to the address (with `INBOUND_EMAIL_DOMAIN`'s MX on this deployment) or have a
/// forwarding service post each raw message to the webhook URL.
#[utoipa::path(get, path = "/api/email/inbound", tag = "email", security(("bearer" = [])),
    responses((status = 200, body = Data<InboundAddress>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn address(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = inbound_email::address(&state, agent.account_id, &agent.meta())
        .await
        .map_err(email_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// A new webhook token (admins): the old webhook URL stops working; the address stays.
#[utoipa::path(post, path = "/api/email/inbound/rotate", tag = "email", security(("bearer" = [])),
    responses((status = 200, body = Data<InboundAddress>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn rotate(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = inbound_email::rotate(&state, agent.account_id, &agent.meta())
        .await
        .map_err(email_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// A raw RFC 5322 message (whatever the content type, e.g. `message/rfc822`; at most 10 MiB),
/// authenticated by the inbox's token in the path. 201 with the conversation (`new`: whether the
/// message opened it); 200 with it for a message already taken (the same Message-ID again: one
/// message, `new` false); 202 for an auto-reply or bounce (no conversation); 404 for an unknown
/// token; 422 for something that is not an email.
#[utoipa::path(post, path = "/api/email/inbound/{token}", tag = "email",
    params(("token" = String, Path, description = "The inbox's webhook token")),
    request_body(content = String, content_type = "text/plain", description = "The raw message (any content type is taken, e.g. message/rfc822)"),
    responses((status = 201, description = "Taken: {\"data\": {\"conversation_id\", \"new\"}}"), (status = 200, description = "Already taken (the same Message-ID): {\"data\": {\"conversation_id\", \"new\": false}}"), (status = 202, description = "An automatic message: not taken"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn receive(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let received = inbound_email::receive(&state, Route::Token(&token), &body)
        .await
        .map_err(email_error)?;
    Ok(match received {
        EmailReceived::Taken {
            conversation_id,
            new,
            resent,
        } => {
            let mut response = if resent {
                HttpResponse::Ok()
            } else {
                HttpResponse::Created()
            };
            response.json(json!({"data": {"conversation_id": conversation_id, "new": new}}))
        }
        EmailReceived::Automatic(reason) => {
            HttpResponse::Accepted().json(json!({"data": {"taken": false, "reason": reason}}))
        }
    })
}

/// The original of an email message (any agent of the account): the RFC 5322 message byte for
/// byte as it was received (SMTP, webhook or Gmail), as a download (`message/rfc822`,
/// `Content-Disposition: attachment`, never rendered). 404 for a message that is not a received
/// email, or another account's.
#[utoipa::path(get, path = "/api/conversations/{id}/messages/{message_id}/original", tag = "email",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), ("message_id" = uuid::Uuid, Path, description = "Message id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The message as received", content_type = "message/rfc822", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn original(
    state: web::Data<AppState>,
    agent: Agent,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let conversation_id = parse_id(&conversation, "id")?;
    let message_id = parse_id(&message, "message_id")?;
    let raw = inbound_email::original(&state, agent.account_id, conversation_id, message_id)
        .await
        .map_err(email_error)?;
    Ok(HttpResponse::Ok()
        .content_type("message/rfc822")
        .insert_header(("Content-Disposition", "attachment; filename=\"message.eml\""))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(raw))
}
