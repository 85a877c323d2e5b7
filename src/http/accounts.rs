//! The signed-in agent, their notification settings and their personal API keys.

use actix_web::{HttpResponse, web};
use netia_commands::{Account, User, UserCommand, UserError};
use netia_events::user::Role;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::views::{AccountRef, ApiKeyCreated, Data, ErrorBody, MeView};
use super::{Agent, ApiError, AppState};
use crate::auth::ApiKey;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/me").route(web::get().to(me)))
        .service(
            web::resource("/me/notifications")
                .route(web::get().to(notifications))
                .route(web::put().to(set_notifications)),
        )
        .service(
            web::resource("/personal_api_keys")
                .route(web::get().to(list_keys))
                .route(web::post().to(create_key)),
        )
        .service(web::resource("/personal_api_keys/{id}").route(web::delete().to(revoke_key)));
}

/// The signed-in agent and their account.
#[utoipa::path(get, path = "/api/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Data<MeView>), (status = 401, body = ErrorBody)))]
pub(super) async fn me(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let account = state.load::<Account>(agent.account_id).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: MeView {
            id: agent.user_id.to_string(),
            email: agent.email,
            display_name: agent.display_name,
            role: super::caller::role_name(agent.role).to_owned(),
            account_id: agent.account_id.to_string(),
            account: AccountRef {
                id: agent.account_id.to_string(),
                name: account.name,
            },
        },
    }))
}

/// What the signed-in agent hears by email.
#[derive(Debug, serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// A customer's message while no agent of the account is online is emailed (at most one
    /// email per conversation per `AGENT_NOTIFY_DELAY`; needs `SMTP_URL`). On by default.
    pub new_conversation_emails: bool,
}

/// The signed-in agent's notification settings.
#[utoipa::path(get, path = "/api/me/notifications", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Data<Notifications>), (status = 401, body = ErrorBody)))]
pub(super) async fn notifications(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let user = state.load::<User>(agent.user_id).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: Notifications {
            new_conversation_emails: !user.no_new_conversation_emails,
        },
    }))
}

/// Changes the signed-in agent's notification settings.
#[utoipa::path(put, path = "/api/me/notifications", tag = "auth", security(("bearer" = [])), request_body = Notifications,
    responses((status = 200, body = Data<Notifications>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn set_notifications(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<Notifications>,
) -> Result<HttpResponse, ApiError> {
    let command = UserCommand::SetNotifications {
        new_conversation_emails: body.new_conversation_emails,
    };
    state
        .bus
        .execute::<User>(agent.user_id, command, &agent.meta())
        .await
        .map_err(|e| ApiError::from_command(e, |e| matches!(e, UserError::NotFound)))?;
    Ok(HttpResponse::Ok().json(Data {
        data: body.into_inner(),
    }))
}

/// The caller's personal API keys (never their secrets).
#[utoipa::path(get, path = "/api/personal_api_keys", tag = "api keys", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<ApiKey>>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_keys(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let keys = state.auth.api_keys(agent.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": keys })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// Creates a key for the caller (admins manage keys); the secret is in this response only. The key
/// acts with its owner's current role.
#[utoipa::path(post, path = "/api/personal_api_keys", tag = "api keys", request_body = NewKey, security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 201, body = Data<ApiKeyCreated>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_key(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    if agent.via_api_key {
        return Err(ApiError::Forbidden("API keys cannot create API keys; sign in".into()));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid("name must be 1 to 100 printable characters".into()));
    }
    let issued = state.auth.create_api_key(agent.user_id, agent.account_id, name).await?;
    Ok(HttpResponse::Created().json(Data {
        data: ApiKeyCreated {
            id: issued.token_id,
            name: name.to_owned(),
            key: issued.token,
        },
    }))
}

/// Revokes one of the caller's keys at once.
#[utoipa::path(delete, path = "/api/personal_api_keys/{id}", tag = "api keys", params(("id" = String, Path, description = "The key's id")), security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_key(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.auth.revoke_api_key(agent.user_id, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no such API key".into()))
    }
}
