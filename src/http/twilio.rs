//! Twilio SMS: the account's Twilio link (admins) and the two endpoints Twilio calls — the
//! number's incoming-message webhook and our replies' status callbacks, both form-encoded and
//! signed (`X-Twilio-Signature`; see [`crate::channels::twilio::signature`]). The rules are in
//! [`crate::app::twilio`].

use actix_web::{HttpRequest, HttpResponse, web};
use netia_commands::{AccountError, ConversationError, CustomerError};
use netia_events::ConversationId;
use netia_events::user::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState};
use crate::app::twilio::{self, TwilioLink, TwilioRequest, TwilioStatus, TwilioUseError};
use crate::channels::twilio::client::TwilioError;
use crate::secrets::SealError;

/// What Twilio expects back from a messaging webhook: TwiML that does nothing more.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/twilio/authorization")
            .route(web::get().to(status))
            .route(web::put().to(link))
            .route(web::delete().to(unlink)),
    )
    .service(web::resource("/twilio/webhook").route(web::post().to(webhook)))
    .service(web::resource("/twilio/status").route(web::post().to(status_callback)));
}

fn twilio_error(e: TwilioUseError) -> ApiError {
    match e {
        TwilioUseError::Invalid { .. } => ApiError::Invalid(e.to_string()),
        TwilioUseError::Refused(_) => ApiError::Invalid(e.to_string()),
        TwilioUseError::Unverified(_) => ApiError::Forbidden(e.to_string()),
        TwilioUseError::Twilio(TwilioError::Refused { .. }) => ApiError::Invalid(e.to_string()),
        TwilioUseError::Twilio(_) => ApiError::Unavailable(e.to_string()),
        TwilioUseError::Seal(e @ (SealError::NoKey | SealError::Unreadable)) => ApiError::Unavailable(e.to_string()),
        TwilioUseError::Account(e) => ApiError::from_command(e, |e| matches!(e, AccountError::NotFound)),
        TwilioUseError::Conversation(e) => ApiError::from_command(e, |e| matches!(e, ConversationError::NotFound)),
        TwilioUseError::Customer(e) => ApiError::from_command(e, |e| matches!(e, CustomerError::NotFound)),
        TwilioUseError::App(e) => e.into(),
    }
}

/// The account's Twilio link (admins): the account SID, the number, the webhook URL to enter in
/// Twilio's console. Never the auth token.
#[utoipa::path(get, path = "/api/twilio/authorization", tag = "twilio", security(("bearer" = [])),
    responses((status = 200, body = Data<TwilioStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn status(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = twilio::status(&state, agent.account_id).await.map_err(twilio_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Links a Twilio number (admins; Papercups' twilio authorization). The credentials are checked
/// with Twilio first; the auth token is stored sealed and never returned. 422 for a malformed
/// field, credentials Twilio refuses, or a number another Netia account linked.
#[utoipa::path(put, path = "/api/twilio/authorization", tag = "twilio", security(("bearer" = [])), request_body = TwilioLink,
    responses((status = 200, body = Data<TwilioStatus>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn link(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<TwilioLink>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    twilio::link(
        &state,
        agent.account_id,
        body.into_inner(),
        agent.user_id,
        &agent.meta(),
    )
    .await
    .map_err(twilio_error)?;
    let data = twilio::status(&state, agent.account_id).await.map_err(twilio_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Unlinks Twilio (admins): SMS are no longer taken or sent.
#[utoipa::path(delete, path = "/api/twilio/authorization", tag = "twilio", security(("bearer" = [])),
    responses((status = 204, description = "Unlinked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn unlink(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    twilio::unlink(&state, agent.account_id, &agent.meta())
        .await
        .map_err(twilio_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The URL Twilio signed: `NETIA_PUBLIC_URL` and the path and query (behind a proxy the address
/// we were called at is not the one Twilio used), else the address as this request names it.
fn signed_url(state: &AppState, request: &HttpRequest) -> String {
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |p| p.as_str().to_owned());
    match &state.public_url {
        Some(base) => format!("{base}{path}"),
        None => {
            let info = request.connection_info();
            format!("{}://{}{path}", info.scheme(), info.host())
        }
    }
}

/// What Twilio sent: the URL it signed, the form, the `X-Twilio-Signature`.
fn twilio_request<'a>(state: &AppState, request: &'a HttpRequest, params: &'a [(String, String)]) -> TwilioRequest<'a> {
    TwilioRequest {
        url: signed_url(state, request),
        params,
        signature: request
            .headers()
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok()),
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Twilio's messaging webhook parameters (the ones Netia reads; Twilio sends more, all signed).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(non_snake_case, dead_code)]
pub(super) struct IncomingSmsForm {
    AccountSid: String,
    From: String,
    To: String,
    MessageSid: String,
    Body: Option<String>,
}

/// Twilio's status callback parameters (the ones Netia reads).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(non_snake_case, dead_code)]
pub(super) struct StatusForm {
    AccountSid: String,
    MessageSid: String,
    MessageStatus: String,
}

/// An incoming SMS (Twilio's messaging webhook, `application/x-www-form-urlencoded`: `AccountSid`,
/// `To`, `From`, `MessageSid`, `Body`, …). Answers empty TwiML; 403 when it is not signed by the
/// auth token of the account that linked `To`; Twilio's retries of one `MessageSid` are one message.
#[utoipa::path(post, path = "/api/twilio/webhook", tag = "twilio",
    request_body(content = IncomingSmsForm, content_type = "application/x-www-form-urlencoded", description = "Twilio's messaging webhook parameters"),
    responses((status = 200, description = "Empty TwiML", content_type = "text/xml"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn webhook(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let params = form(&body);
    let twilio_request = twilio_request(&state, &request, &params);
    let received = twilio::receive(&state, &twilio_request).await.map_err(twilio_error)?;
    tracing::debug!(?received, "Twilio SMS taken");
    Ok(HttpResponse::Ok().content_type("text/xml").body(EMPTY_TWIML))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StatusTarget {
    /// The conversation of the reply (set by Netia in the callback URL it gives Twilio).
    conversation_id: String,
}

/// A status callback for one of our replies (`MessageSid`, `MessageStatus`: `queued`, `sent`,
/// `delivered`, `undelivered`, `failed`, …), signed like the webhook. 204; 403 when not Twilio's.
#[utoipa::path(post, path = "/api/twilio/status", tag = "twilio", params(StatusTarget),
    request_body(content = StatusForm, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback parameters"),
    responses((status = 204, description = "Recorded"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn status_callback(
    state: web::Data<AppState>,
    request: HttpRequest,
    target: web::Query<StatusTarget>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let conversation_id: ConversationId = target
        .conversation_id
        .parse()
        .map_err(|_| ApiError::Forbidden("not a request from Twilio: no such conversation".into()))?;
    let params = form(&body);
    let twilio_request = twilio_request(&state, &request, &params);
    twilio::delivery_status(&state, conversation_id, &twilio_request)
        .await
        .map_err(twilio_error)?;
    Ok(HttpResponse::NoContent().finish())
}
