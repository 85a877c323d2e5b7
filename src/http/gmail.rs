//! Gmail: the link (Google OAuth 2.0 start and callback), its status, the mailbox's profile, a
//! sync on demand, and the unlink (admins). The rules are in [`crate::app::gmail`]; the minutely
//! sync and the outbound replies in [`crate::channels::gmail`].

use actix_web::{HttpRequest, HttpResponse, web};
use netia_commands::AccountError;
use netia_events::user::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::slack::{InstallUrl, oauth_cookie};
use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState};
use crate::app::gmail::{self, GmailStatus, GmailUseError};
use crate::channels::gmail::client::{GoogleError, Profile};
use crate::channels::oauth_state::GMAIL;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/gmail")
            .route(web::get().to(status))
            .route(web::delete().to(unlink)),
    )
    .service(web::resource("/gmail/oauth/start").route(web::get().to(start)))
    .service(web::resource("/gmail/oauth").route(web::get().to(callback)))
    .service(web::resource("/gmail/profile").route(web::get().to(profile)))
    .service(web::resource("/gmail/sync").route(web::post().to(sync)));
}

fn gmail_error(e: GmailUseError) -> ApiError {
    match e {
        GmailUseError::NotConfigured | GmailUseError::NotLinked => ApiError::NotFound(e.to_string()),
        GmailUseError::NoPublicUrl => ApiError::Unavailable(e.to_string()),
        GmailUseError::State(_) | GmailUseError::NotAdmin => ApiError::Forbidden(e.to_string()),
        GmailUseError::Refused(_) => ApiError::Invalid(e.to_string()),
        GmailUseError::Google(GoogleError::Revoked(_) | GoogleError::Refused { .. }) => {
            ApiError::Invalid(e.to_string())
        }
        GmailUseError::Google(_) => ApiError::Unavailable(e.to_string()),
        GmailUseError::Seal(e) => ApiError::Unavailable(e.to_string()),
        GmailUseError::Account(e) => ApiError::from_command(e, |e| matches!(e, AccountError::NotFound)),
        GmailUseError::Conversation(e) => ApiError::internal(e),
        GmailUseError::Email(e) => ApiError::internal(e),
        GmailUseError::App(e) => e.into(),
    }
}

/// The account's Gmail link (admins): whether this deployment has a Google client, the linked
/// address, how far it is synced. Never a token.
#[utoipa::path(get, path = "/api/gmail", tag = "gmail", security(("bearer" = [])),
    responses((status = 200, body = Data<GmailStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn status(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = gmail::status(&state, agent.account_id).await.map_err(gmail_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Unlinks Gmail (admins): nothing more is synced or sent.
#[utoipa::path(delete, path = "/api/gmail", tag = "gmail", security(("bearer" = [])),
    responses((status = 204, description = "Unlinked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn unlink(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    gmail::unlink(&state, agent.account_id, &agent.meta())
        .await
        .map_err(gmail_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts linking a Gmail inbox (admins): Google's consent URL to open (offline access, read and
/// send scopes, a sealed `state` valid 10 minutes and bound to this browser by the
/// `netia_gmail_oauth` cookie). 404 without `GOOGLE_CLIENT_ID`; 503 without `NETIA_PUBLIC_URL`.
#[utoipa::path(get, path = "/api/gmail/oauth/start", tag = "gmail", security(("bearer" = [])),
    responses((status = 200, body = Data<InstallUrl>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn start(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let (url, nonce) = gmail::start_url(&state, agent.account_id, agent.user_id).map_err(gmail_error)?;
    let cookie = oauth_cookie(&state, GMAIL, nonce);
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
    /// Google's reason when the admin declined (`access_denied`).
    error: Option<String>,
    /// The scopes granted (Google adds it; unused: the profile call shows what works).
    #[allow(dead_code)]
    scope: Option<String>,
}

/// Google's redirect after the admin consented (or declined): checks `state` and the browser's
/// cookie, exchanges `code`, records the link, and sends the browser back to the dashboard's
/// Integrations (`/#integrations`). A forged or expired `state`, or one brought by another
/// browser, is refused (403); Google refusing the code is 422.
#[utoipa::path(get, path = "/api/gmail/oauth", tag = "gmail", params(Callback),
    responses((status = 303, description = "Linked: back to the dashboard"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn callback(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Callback>,
) -> Result<HttpResponse, ApiError> {
    if let Some(error) = &query.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::BadRequest(format!("Google did not link: {error}")));
    }
    let (Some(code), Some(sealed)) = (&query.code, &query.state) else {
        return Err(ApiError::BadRequest("code and state are required".into()));
    };
    if code.len() > 1_000 || sealed.len() > 2_000 || code.contains('\0') {
        return Err(ApiError::BadRequest("code or state is too long".into()));
    }
    let cookie = request.cookie(GMAIL.cookie);
    gmail::finish_link(&state, code, sealed, cookie.as_ref().map(|c| c.value()))
        .await
        .map_err(gmail_error)?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/#integrations"))
        .finish())
}

/// The linked mailbox's Gmail profile, asked of Google now (admins): address, totals, history id.
#[utoipa::path(get, path = "/api/gmail/profile", tag = "gmail", security(("bearer" = [])),
    responses((status = 200, body = Data<Profile>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn profile(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data = gmail::profile(&state, agent.account_id).await.map_err(gmail_error)?;
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// What a sync did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncSummary {
    /// Messages met (ones already held change nothing).
    pub taken: usize,
    /// Whether Gmail had forgotten the stored history id and the last 7 days were read again.
    pub resynced: bool,
}

/// Syncs the mailbox now (admins), as the minutely sync does.
#[utoipa::path(post, path = "/api/gmail/sync", tag = "gmail", security(("bearer" = [])),
    responses((status = 200, body = Data<SyncSummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn sync(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let synced = crate::channels::gmail::sync::sync(&state, agent.account_id)
        .await
        .map_err(gmail_error)?;
    Ok(HttpResponse::Ok().json(Data {
        data: SyncSummary {
            taken: synced.taken,
            resynced: synced.resynced,
        },
    }))
}
