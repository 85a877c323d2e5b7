//! The signed-in agent and their personal API keys.

use actix_web::{HttpResponse, web};
use netia_commands::Account;
use netia_events::user::Role;
use serde::Deserialize;
use serde_json::json;

use super::{Agent, ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me))
        .route("/personal_api_keys", web::get().to(list_keys))
        .route("/personal_api_keys", web::post().to(create_key))
        .route("/personal_api_keys/{id}", web::delete().to(revoke_key));
}

async fn me(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let (account, _) = state
        .bus
        .load::<Account>(agent.account_id)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))?;
    Ok(HttpResponse::Ok().json(json!({"data": {
        "id": agent.user_id,
        "email": agent.email,
        "display_name": agent.display_name,
        "role": agent.role,
        "account_id": agent.account_id,
        "account": {"id": agent.account_id, "name": account.name},
    }})))
}

async fn list_keys(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let keys = state.auth.api_keys(agent.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
}

/// Creates a key for the caller; the secret is in this response only.
async fn create_key(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Viewer)?;
    if agent.via_api_key {
        return Err(ApiError::Forbidden("API keys cannot create API keys; sign in".into()));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid("name must be 1 to 100 printable characters".into()));
    }
    let issued = state.auth.create_api_key(agent.user_id, agent.account_id, name).await?;
    Ok(HttpResponse::Created().json(json!({"data": {
        "id": issued.token_id,
        "name": name,
        "key": issued.token,
    }})))
}

async fn revoke_key(state: web::Data<AppState>, agent: Agent, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if state.auth.revoke_api_key(agent.user_id, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no such API key".into()))
    }
}
