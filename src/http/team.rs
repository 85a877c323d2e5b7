//! The team: users of an account, invitations, roles, disabling. Admins manage; nobody changes their
//! own role or disables themselves (the user aggregate refuses).

use actix_web::{HttpResponse, web};
use netia_commands::user::UserStatus;
use netia_commands::{User, UserCommand, UserError};
use netia_events::user::Role;
use netia_events::{Actor, Metadata, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Agent, ApiError, AppState, parse_id};
use crate::command_bus::CommandError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users/{id}/role", web::put().to(change_role))
        .route("/users/{id}/disable", web::post().to(disable))
        .route("/users/{id}/enable", web::post().to(enable))
        .route("/user_invitations", web::get().to(invitations))
        .route("/user_invitations", web::post().to(invite))
        .route("/user_invitations/{id}", web::delete().to(withdraw));
}

fn user_error(e: CommandError<UserError>) -> ApiError {
    match e {
        CommandError::Domain(e @ (UserError::CannotChangeOwnRole | UserError::CannotDisableSelf)) => {
            ApiError::Forbidden(e.to_string())
        }
        other => ApiError::from_command(other, |e| matches!(e, UserError::NotFound)),
    }
}

fn meta(agent: &Agent) -> Metadata {
    Metadata::new(Actor::Agent { user_id: agent.user_id }).with_account(agent.account_id)
}

fn user_json(id: UserId, user: &User) -> Value {
    json!({
        "id": id,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "disabled": user.disabled,
        "status": match user.status {
            UserStatus::Registered => "active",
            UserStatus::Invited => "invited",
            UserStatus::Unknown => "unknown",
        },
    })
}

/// A user of the caller's account; anyone else is "not found".
async fn member(state: &AppState, agent: &Agent, raw: &str) -> Result<(UserId, User), ApiError> {
    let id: UserId = parse_id(raw, "user id")?;
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    if user.account_id != Some(agent.account_id) || user.status == UserStatus::Unknown {
        return Err(ApiError::NotFound("user not found".into()));
    }
    Ok((id, user))
}

async fn list(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let mut data = Vec::new();
    for id in state.auth.users(agent.account_id).await? {
        let id: UserId = parse_id(&id, "user id")?;
        let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
        data.push(user_json(id, &user));
    }
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role: Role,
}

async fn change_role(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    body: web::Json<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    let (id, _) = member(&state, &agent, &id).await?;
    if id == agent.user_id {
        return Err(ApiError::Forbidden(UserError::CannotChangeOwnRole.to_string()));
    }
    agent.require(Role::Admin)?;
    let command = UserCommand::ChangeRole {
        role: body.role,
        changed_by: agent.user_id,
    };
    state
        .bus
        .execute::<User>(id, command, &meta(&agent))
        .await
        .map_err(user_error)?;
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    Ok(HttpResponse::Ok().json(json!({ "data": user_json(id, &user) })))
}

async fn set_disabled(state: &AppState, agent: &Agent, raw: &str, disabled: bool) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let (id, _) = member(state, agent, raw).await?;
    let command = if disabled {
        UserCommand::Disable {
            disabled_by: agent.user_id,
        }
    } else {
        UserCommand::Enable {
            enabled_by: agent.user_id,
        }
    };
    state
        .bus
        .execute::<User>(id, command, &meta(agent))
        .await
        .map_err(user_error)?;
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    Ok(HttpResponse::Ok().json(json!({ "data": user_json(id, &user) })))
}

async fn disable(state: web::Data<AppState>, agent: Agent, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &agent, &id, true).await
}

async fn enable(state: web::Data<AppState>, agent: Agent, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &agent, &id, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invitation {
    email: String,
    #[serde(default = "member_role")]
    role: Role,
}

fn member_role() -> Role {
    Role::Member
}

/// Invites an address into the caller's account. The answer holds the invitation token (valid for
/// seven days) that the invitee passes to `POST /api/registration`.
async fn invite(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<Invitation>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let email = body.email.trim().to_lowercase();
    if state.auth.email_taken(&email).await? {
        return Err(ApiError::Conflict("a user with this email address exists".into()));
    }
    let user_id = UserId::new();
    let command = UserCommand::Invite {
        user_id,
        account_id: agent.account_id,
        email: email.clone(),
        role: body.role,
        invited_by: agent.user_id,
    };
    state
        .bus
        .execute::<User>(user_id, command, &meta(&agent))
        .await
        .map_err(user_error)?;
    let issued = state.auth.invitation(user_id, agent.account_id, &email).await?;
    Ok(HttpResponse::Created().json(json!({"data": {
        "id": user_id,
        "email": email,
        "role": body.role,
        "token": issued.token,
        "expires_at": issued.expires_at.map(netia_events::chain::format_time),
    }})))
}

async fn invitations(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data: Vec<Value> = state
        .auth
        .invitations(agent.account_id)
        .await?
        .into_iter()
        .map(|(id, email, expires_at)| json!({"id": id, "email": email, "expires_at": expires_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

async fn withdraw(state: web::Data<AppState>, agent: Agent, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id: UserId = parse_id(&id, "invitation id")?;
    if state.auth.end_invitation(agent.account_id, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no pending invitation with this id".into()))
    }
}
