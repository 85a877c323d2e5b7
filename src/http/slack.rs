//! Slack: the install (OAuth v2 start and callback), the account's link and channel mapping
//! (admins), and the Events API endpoint Slack calls (signed; see
//! [`crate::channels::slack::signature`]). The rules are in [`crate::app::slack`].

use actix_web::{HttpRequest, HttpResponse, web};
use netia_commands::AccountError;
use netia_events::InboxId;
use netia_events::user::Role;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState, parse_id};
use crate::app::slack::{self, SlackStatus, SlackUseError};
use crate::channels::slack::client::{Channel, SlackError};
use crate::channels::slack::signature;
use crate::secrets::SealError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/slack")
            .route(web::get().to(status))
            .route(web::delete().to(uninstall)),
    )
    .service(web::resource("/slack/oauth/start").route(web::get().to(start)))
    .service(web::resource("/slack/oauth").route(web::get().to(callback)))
    .service(web::resource("/slack/channels").route(web::get().to(channels)))
    .service(web::resource("/slack/mapping").route(web::put().to(map)))
    .service(web::resource("/slack/events").route(web::post().to(events)))
    .service(web::resource("/slack/actions").route(web::post().to(actions)));
}

fn slack_error(e: SlackUseError) -> ApiError {
    match e {
        SlackUseError::NotConfigured => ApiError::NotFound(e.to_string()),
        SlackUseError::State(_) | SlackUseError::NotAdmin => ApiError::Forbidden(e.to_string()),
        SlackUseError::UnknownChannel(_) => ApiError::Invalid(e.to_string()),
        SlackUseError::Slack(SlackError::Api { .. }) => ApiError::Invalid(e.to_string()),
        SlackUseError::Slack(_) => ApiError::Unavailable(e.to_string()),
        SlackUseError::Seal(e @ (SealError::NoKey | SealError::Unreadable)) => ApiError::Unavailable(e.to_string()),
        SlackUseError::Account(e) => ApiError::from_command(e, |e| matches!(e, AccountError::NotFound)),
        SlackUseError::Conversation(e) => ApiError::internal(e),
        SlackUseError::App(e) => e.into(),
        SlackUseError::Auth(e) => e.into(),
        SlackUseError::Change(e) => ApiError::Invalid(e.to_string()),
    }
}

/// The account's Slack link (admins): whether this deployment has a Slack app, the workspace, the
/// channel each inbox posts to. Never the token.
#[utoipa::path(get, path = "/api/slack", tag = "slack", security(("bearer" = [])),
    responses((status = 200, body = Data<SlackStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn status(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = slack::status(&state, agent.account_id).await.map_err(slack_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Unlinks Slack (admins): nothing more is posted, thread replies are no longer taken.
#[utoipa::path(delete, path = "/api/slack", tag = "slack", security(("bearer" = [])),
    responses((status = 204, description = "Unlinked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn uninstall(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    slack::uninstall(&state, agent.account_id, &agent.meta())
        .await
        .map_err(slack_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Binds an OAuth link to this browser (see `channels::oauth_state`): Lax, so that the vendor's
/// top-level redirect back brings it; only the callback's path; as long as the state lives.
pub(super) fn oauth_cookie(
    state: &AppState,
    flow: crate::channels::oauth_state::Flow,
    nonce: String,
) -> actix_web::cookie::Cookie<'static> {
    let secure = state.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    actix_web::cookie::Cookie::build(flow.cookie, nonce)
        .path(flow.callback)
        .http_only(true)
        .secure(secure)
        .same_site(actix_web::cookie::SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::minutes(10))
        .finish()
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct InstallUrl {
    /// Slack's authorize URL with this deployment's client id, the scopes and a sealed `state`
    /// bound to the account and admin (valid 10 minutes): open it in the browser.
    pub url: String,
}

/// Starts linking Slack (admins): the URL to open. 404 when the deployment has no Slack app.
#[utoipa::path(get, path = "/api/slack/oauth/start", tag = "slack", security(("bearer" = [])),
    responses((status = 200, body = Data<InstallUrl>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn start(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let (url, nonce) = slack::start_url(&state, agent.account_id, agent.user_id).map_err(slack_error)?;
    let cookie = oauth_cookie(&state, crate::channels::oauth_state::SLACK, nonce);
    Ok(HttpResponse::Ok().cookie(cookie).json(Data {
        data: InstallUrl { url },
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Callback {
    /// The code to exchange (absent when the admin declined).
    code: Option<String>,
    /// The `state` Netia issued.
    state: Option<String>,
    /// Slack's reason when the admin declined (`access_denied`).
    error: Option<String>,
}

/// Slack's redirect after the admin approved (or declined): checks `state`, exchanges `code`, and
/// sends the browser back to the dashboard's Integrations (`/#integrations`). A forged or expired
/// `state`, or one brought by another browser than the one that started (no `netia_slack_oauth`
/// cookie of its own), is refused (403).
#[utoipa::path(get, path = "/api/slack/oauth", tag = "slack", params(Callback),
    responses((status = 303, description = "Linked: back to the dashboard"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn callback(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Callback>,
) -> Result<HttpResponse, ApiError> {
    if let Some(error) = &query.error {
        let error: String = error.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
        return Err(ApiError::BadRequest(format!("Slack did not link: {error}")));
    }
    let (Some(code), Some(sealed)) = (&query.code, &query.state) else {
        return Err(ApiError::BadRequest("code and state are required".into()));
    };
    if code.len() > 500 || sealed.len() > 2_000 {
        return Err(ApiError::BadRequest("code or state is too long".into()));
    }
    let cookie = request.cookie(crate::channels::oauth_state::SLACK.cookie);
    slack::finish_install(&state, code, sealed, cookie.as_ref().map(|c| c.value()))
        .await
        .map_err(slack_error)?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/#integrations"))
        .finish())
}

/// The channels the Netia bot can see (admins), to choose where conversations go.
#[utoipa::path(get, path = "/api/slack/channels", tag = "slack", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<Channel>>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn channels(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = slack::channels(&state, agent.account_id).await.map_err(slack_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Mapping {
    /// The inbox (the account's primary inbox).
    inbox_id: String,
    /// A channel the bot can see (`C…`).
    channel_id: String,
}

/// Posts an inbox's conversations to a Slack channel (admins).
#[utoipa::path(put, path = "/api/slack/mapping", tag = "slack", request_body = Mapping, security(("bearer" = [])),
    responses((status = 200, body = Data<SlackStatus>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn map(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<Mapping>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let inbox: InboxId = parse_id(&body.inbox_id, "inbox_id")?;
    slack::map_channel(&state, agent.account_id, inbox, &body.channel_id, &agent.meta())
        .await
        .map_err(|e| match e {
            SlackUseError::Account(netia_commands_error) => ApiError::from_command(netia_commands_error, |e| {
                matches!(e, AccountError::NotFound | AccountError::InboxNotFound)
            }),
            other => slack_error(other),
        })?;
    let data = slack::status(&state, agent.account_id).await.map_err(slack_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Checks that a request is Slack's (v0 signature, 5-minute window): 401 otherwise.
fn verified(state: &AppState, request: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let Some(app) = state.slack.as_ref() else {
        return Err(ApiError::NotFound("Slack is not configured on this deployment".into()));
    };
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let secret = secrecy::ExposeSecret::expose_secret(&app.settings.signing_secret);
    signature::verify(
        secret,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| ApiError::Unauthorized(format!("not a request from Slack: {e}")))
}

/// The form Slack posts to the interactivity endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct ActionsForm {
    /// The interaction as JSON (`{"type": "block_actions", "user", "team", "channel", "message",
    /// "actions": [{"action_id", "value"}]}`).
    #[allow(dead_code)]
    payload: String,
}

/// Slack's interactivity endpoint (called by Slack, signed like the events): the parent message's
/// buttons close, reopen or assign the conversation to the agent who clicked (matched by email;
/// viewers and strangers change nothing), and the message is updated to show it.
#[utoipa::path(post, path = "/api/slack/actions", tag = "slack", request_body(content = ActionsForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Taken (or ignored)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn actions(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verified(&state, &request, &body)?;
    let payload = url::form_urlencoded::parse(&body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError::BadRequest("payload is required".into()))?;
    let payload: Value =
        serde_json::from_str(&payload).map_err(|_| ApiError::BadRequest("payload is not JSON".into()))?;
    let acted = slack::act(&state, &state.auth, &payload).await.map_err(slack_error)?;
    tracing::debug!(?acted, "Slack action taken");
    Ok(HttpResponse::Ok().finish())
}

/// Slack's Events API (called by Slack, signed with the app's signing secret): answers the
/// `url_verification` challenge, and takes agents' replies in conversation threads. An unsigned,
/// tampered or stale request is 401 and nothing is stored; a retry of an event already taken
/// changes nothing.
#[utoipa::path(post, path = "/api/slack/events", tag = "slack", request_body = Object,
    responses((status = 200, description = "Taken (or ignored)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn events(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verified(&state, &request, &body)?;
    let envelope: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest("the body is not JSON".into()))?;
    match envelope["type"].as_str() {
        Some("url_verification") => {
            let challenge = envelope["challenge"].as_str().unwrap_or_default();
            Ok(HttpResponse::Ok().json(json!({ "challenge": challenge })))
        }
        Some("event_callback") => {
            let received = slack::receive(&state, &state.auth, &envelope).await;
            match received {
                Ok(received) => {
                    tracing::debug!(?received, "Slack event taken");
                    Ok(HttpResponse::Ok().finish())
                }
                // Slack retries a non-2xx answer: a retry of an event already taken changes nothing.
                Err(e) => Err(slack_error(e)),
            }
        }
        _ => Ok(HttpResponse::Ok().finish()),
    }
}
