//! Registration, login, logout and session renewal.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use netia_commands::{Account, AccountCommand, AccountError, Decide, User, UserCommand, UserError};
use netia_events::chain::format_time;
use netia_events::user::Role;
use netia_events::{AccountId, Actor, InboxId, Metadata, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{Data, ErrorBody, SessionView};
use super::{Agent, ApiError, AppState};
use crate::auth::{Auth, Issued, TokenKind};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/registration").route(web::post().to(register)))
        .service(
            web::resource("/api/session")
                .route(web::post().to(login))
                .route(web::delete().to(logout)),
        )
        .service(web::resource("/api/session/renew").route(web::post().to(renew)));
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Registration {
    #[schema(max_length = 320)]
    email: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// A new account's name; or, to join an account, the `invitation_token` its admin sent.
    account_name: Option<String>,
    invitation_token: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

fn session_body(user: UserId, account: AccountId, session: &Issued, renew: &Issued) -> Data<SessionView> {
    let time = |t: Option<DateTime<Utc>>| t.map(format_time);
    Data {
        data: SessionView {
            token: session.token.clone(),
            renew_token: renew.token.clone(),
            expires_at: time(session.expires_at),
            renew_expires_at: time(renew.expires_at),
            user_id: user.to_string(),
            account_id: account.to_string(),
            inbox_id: None,
        },
    }
}

fn display_name(body: &Registration, email: &str) -> String {
    body.display_name
        .clone()
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().chars().take(100).collect())
}

/// A new account with its first admin and primary inbox, signed in; or, with an invitation token,
/// the invited user joining their account with the invited role.
#[utoipa::path(post, path = "/api/registration", tag = "auth", request_body = Registration,
    responses((status = 201, body = Data<SessionView>), (status = 400, body = ErrorBody), (status = 401, description = "Invalid invitation", body = ErrorBody),
        (status = 409, description = "Email address taken", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn register(
    state: web::Data<AppState>,
    body: web::Json<Registration>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account_name = match (&body.account_name, &body.invitation_token) {
        (Some(name), None) => name.trim().to_owned(),
        (None, Some(token)) => return accept_invitation(&state, &body, token).await,
        _ => {
            return Err(ApiError::Invalid(
                "give either account_name (a new account) or invitation_token (join one)".into(),
            ));
        }
    };
    let email = body.email.trim().to_lowercase();
    let display_name = display_name(&body, &email);
    let (account_id, user_id, inbox_id) =
        create_account(&state, &email, display_name, &body.password, account_name).await?;
    let (session, renew) = state.auth.start_session(user_id, account_id).await?;
    let mut body = session_body(user_id, account_id, &session, &renew);
    body.data.inbox_id = Some(inbox_id.to_string());
    Ok(HttpResponse::Created().json(body))
}

pub(super) async fn accept_invitation(
    state: &AppState,
    body: &Registration,
    token: &str,
) -> Result<HttpResponse, ApiError> {
    let refused = || ApiError::Unauthorized("the invitation is invalid, expired or used".into());
    let holder = state
        .auth
        .holder(token, &[TokenKind::Invitation])
        .await?
        .ok_or_else(refused)?;
    let user_id = holder.user_id.ok_or_else(refused)?;
    let account_id = holder.account_id;
    let (invited, _) = state
        .bus
        .load::<User>(user_id)
        .await
        .map_err(|e| ApiError::from_command(e, |e| matches!(e, UserError::NotFound)))?;
    let email = body.email.trim().to_lowercase();
    if email != invited.email {
        return Err(ApiError::Invalid("email must be the invited address".into()));
    }
    let register = UserCommand::Register {
        user_id,
        account_id,
        email: email.clone(),
        display_name: display_name(body, &email),
        role: invited.role.unwrap_or(Role::Viewer),
    };
    invited
        .decide(&register)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let hash = Auth::hash_password(&body.password).await?;
    state.auth.claim(user_id, account_id, &email, &hash).await?;
    let meta = Metadata::new(Actor::Agent { user_id }).with_account(account_id);
    if let Err(e) = state.bus.execute::<User>(user_id, register, &meta).await {
        state.auth.release(user_id).await?;
        return Err(ApiError::from_command(e, |e| matches!(e, UserError::NotFound)));
    }
    // This invitation is used up, and the address's others (another account's, an earlier one)
    // can no longer be accepted: every one is labelled with the invited address.
    state.auth.end_invitations_to(&email).await?;
    let (session, renew) = state.auth.start_session(user_id, account_id).await?;
    Ok(HttpResponse::Created().json(session_body(user_id, account_id, &session, &renew)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    email: String,
    password: String,
}

/// Signs in with email and password.
#[utoipa::path(post, path = "/api/session", tag = "auth", request_body = Login,
    responses((status = 413, body = ErrorBody), (status = 201, body = Data<SessionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn login(
    state: web::Data<AppState>,
    limiter: Option<web::Data<crate::limits::Limiter>>,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let refused = || ApiError::Unauthorized("email or password is wrong".into());
    if body.email.len() > 320 || body.password.chars().count() > crate::auth::MAX_PASSWORD {
        return Err(refused());
    }
    // Too many attempts for this address lock it out, from wherever the guesses come.
    if let Some(Err(wait)) = limiter.as_ref().map(|l| l.login_attempt(&body.email)) {
        return Ok(super::limits::too_many(wait, "email address (too many login attempts)"));
    }
    let (user_id, account_id) = state
        .auth
        .login(&body.email, &body.password)
        .await?
        .ok_or_else(refused)?;
    let user = state.load::<User>(user_id).await?;
    if user.disabled {
        return Err(ApiError::Unauthorized("this user is disabled".into()));
    }
    let (session, renew) = state.auth.start_session(user_id, account_id).await?;
    Ok(HttpResponse::Created().json(session_body(user_id, account_id, &session, &renew)))
}

/// Ends the caller's session (its renew token too).
#[utoipa::path(delete, path = "/api/session", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Signed out"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn logout(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    if agent.via_api_key {
        return Err(ApiError::BadRequest("API keys are revoked, not logged out".into()));
    }
    crate::app::identity::end_session(&state.app, &state.auth, agent.user_id, &agent.token_id, &agent.meta()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Renew {
    renew_token: Option<String>,
}

/// Exchanges a renew token (body `renew_token`, or `Authorization: Bearer`) for a new session.
#[utoipa::path(post, path = "/api/session/renew", tag = "auth", request_body(content = Renew, description = "Or send the renew token as the bearer token"),
    responses((status = 413, body = ErrorBody), (status = 201, body = Data<SessionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn renew(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Option<web::Json<Renew>>,
) -> Result<HttpResponse, ApiError> {
    let token = body
        .and_then(|b| b.into_inner().renew_token)
        .or_else(|| super::caller::bearer(&req))
        .ok_or_else(|| ApiError::Unauthorized("a renew token is required".into()))?;
    let renewed = crate::app::identity::renew(&state.app, &state.auth, &token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the renew token is invalid, expired or used".into()))?;
    Ok(HttpResponse::Created().json(session_body(
        renewed.user_id,
        renewed.account_id,
        &renewed.session,
        &renewed.renew,
    )))
}

/// Creates an account with its first admin (`email`, `password`); nothing is written if anything is
/// invalid or the address is taken. Returns the account, the user and the primary inbox.
pub async fn create_account(
    state: &AppState,
    email: &str,
    display_name: String,
    password: &str,
    account_name: String,
) -> Result<(AccountId, UserId, InboxId), ApiError> {
    let account_id = AccountId::new();
    let user_id = UserId::new();
    let inbox_id = InboxId::new();
    let email = email.to_owned();
    let create_account = AccountCommand::Register {
        account_id,
        name: account_name,
        owner_user_id: user_id,
        primary_inbox_id: inbox_id,
    };
    let create_user = UserCommand::Register {
        user_id,
        account_id,
        email: email.clone(),
        display_name,
        role: Role::Admin,
    };
    // Validate everything before anything is written.
    Account::default()
        .decide(&create_account)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    User::default()
        .decide(&create_user)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let hash = Auth::hash_password(password).await?;
    state.auth.claim(user_id, account_id, &email, &hash).await?;
    let meta = Metadata::new(Actor::Agent { user_id }).with_account(account_id);
    let written = async {
        state
            .bus
            .execute::<Account>(account_id, create_account, &meta)
            .await
            .map_err(|e| ApiError::from_command(e, |e| matches!(e, AccountError::NotFound)))?;
        state
            .bus
            .execute::<User>(user_id, create_user, &meta)
            .await
            .map_err(|e| ApiError::from_command(e, |e| matches!(e, UserError::NotFound)))
    };
    if let Err(e) = written.await {
        state.auth.release(user_id).await?;
        return Err(e);
    }
    // Invitations to the address can no longer be accepted: it is registered.
    state.auth.end_invitations_to(&email).await?;
    Ok((account_id, user_id, inbox_id))
}
