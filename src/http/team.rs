//! The team: users of an account, invitations, roles, disabling. Admins manage; nobody changes their
//! own role or disables themselves (the user aggregate refuses).

use actix_web::{HttpResponse, web};
use netia_commands::user::UserStatus;
use netia_commands::{User, UserCommand, UserError};
use netia_events::UserId;
use netia_events::user::Role;
use serde::Deserialize;
use utoipa::ToSchema;

use super::caller::role_name;
use super::views::{Data, ErrorBody, InvitationCreated, InvitationView, RoleName, UserView};
use super::{Agent, ApiError, AppState, parse_id};
use crate::command_bus::CommandError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::get().to(list)))
        .service(web::resource("/users/{id}/role").route(web::put().to(change_role)))
        .service(web::resource("/users/{id}/disable").route(web::post().to(disable)))
        .service(web::resource("/users/{id}/enable").route(web::post().to(enable)))
        .service(
            web::resource("/user_invitations")
                .route(web::get().to(invitations))
                .route(web::post().to(invite)),
        )
        .service(web::resource("/user_invitations/{id}").route(web::delete().to(withdraw)));
}

fn user_error(e: CommandError<UserError>) -> ApiError {
    match e {
        CommandError::Domain(e @ (UserError::CannotChangeOwnRole | UserError::CannotDisableSelf)) => {
            ApiError::Forbidden(e.to_string())
        }
        other => ApiError::from_command(other, |e| matches!(e, UserError::NotFound)),
    }
}

fn user_json(id: UserId, user: &User) -> Data<UserView> {
    Data {
        data: UserView {
            id: id.to_string(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            role: user.role.map(|r| role_name(r).to_owned()),
            disabled: user.disabled,
            status: match user.status {
                UserStatus::Registered => "active",
                UserStatus::Invited => "invited",
                UserStatus::Unknown => "unknown",
            }
            .to_owned(),
        },
    }
}

/// A user of the caller's account; anyone else is "not found".
pub(super) async fn member(state: &AppState, agent: &Agent, raw: &str) -> Result<(UserId, User), ApiError> {
    let id: UserId = parse_id(raw, "user id")?;
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    if user.account_id != Some(agent.account_id) || user.status == UserStatus::Unknown {
        return Err(ApiError::NotFound("user not found".into()));
    }
    Ok((id, user))
}

/// The account's users.
#[utoipa::path(get, path = "/api/users", tag = "team", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<UserView>>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let mut data = Vec::new();
    for id in state.auth.users(agent.account_id).await? {
        let id: UserId = parse_id(&id, "user id")?;
        let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
        data.push(user_json(id, &user).data);
    }
    Ok(HttpResponse::Ok().json(Data { data }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleChange {
    #[schema(value_type = RoleName)]
    role: Role,
}

/// Sets a user's role (admins; never one's own).
#[utoipa::path(put, path = "/api/users/{id}/role", tag = "team", params(("id" = uuid::Uuid, Path, description = "User id")), request_body = RoleChange, security(("bearer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<UserView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn change_role(
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
        .execute::<User>(id, command, &agent.meta())
        .await
        .map_err(user_error)?;
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    Ok(HttpResponse::Ok().json(user_json(id, &user)))
}

pub(super) async fn set_disabled(
    state: &AppState,
    agent: &Agent,
    raw: &str,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
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
    let executed = state
        .bus
        .execute::<User>(id, command, &agent.meta())
        .await
        .map_err(user_error)?;
    if disabled {
        // Nobody may be left waiting on a person who cannot answer: their conversations go back
        // to the unassigned queue, each change caused by the disabling.
        let meta = match executed.events.first() {
            Some(cause) => agent.meta().caused_by(cause),
            None => agent.meta(), // already disabled: a repair sweep, in this request's chain
        };
        state.caught_up_with_log("inbox").await;
        let unassigned = crate::app::team::unassign_departed_agent(&state.bus, &state.db, agent.account_id, id, &meta)
            .await
            .map_err(ApiError::internal)?;
        tracing::info!(user = %id, unassigned, "disabled user's conversations unassigned");
        if unassigned > 0 {
            state.caught_up_with_log("inbox").await; // the caller's next inbox read shows them
        }
    }
    let (user, _) = state.bus.load::<User>(id).await.map_err(user_error)?;
    Ok(HttpResponse::Ok().json(user_json(id, &user)))
}

/// Disables a user: their sessions and keys stop working (admins; never oneself), and every
/// conversation assigned to them is unassigned (one `AgentAssigned` event each).
#[utoipa::path(post, path = "/api/users/{id}/disable", tag = "team", params(("id" = uuid::Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = Data<UserView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn disable(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &agent, &id, true).await
}

#[utoipa::path(post, path = "/api/users/{id}/enable", tag = "team", params(("id" = uuid::Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = Data<UserView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn enable(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&state, &agent, &id, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Invitation {
    email: String,
    /// Default `member`.
    #[serde(default = "member_role")]
    #[schema(value_type = RoleName)]
    role: Role,
}

fn member_role() -> Role {
    Role::Member
}

/// Invites an address into the caller's account. The answer holds the invitation token (valid for
/// seven days) that the invitee passes to `POST /api/registration`.
#[utoipa::path(post, path = "/api/user_invitations", tag = "team", request_body = Invitation, security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 201, body = Data<InvitationCreated>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn invite(
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
        .execute::<User>(user_id, command, &agent.meta())
        .await
        .map_err(user_error)?;
    let issued = state.auth.invitation(user_id, agent.account_id, &email).await?;
    Ok(HttpResponse::Created().json(Data {
        data: InvitationCreated {
            id: user_id.to_string(),
            email,
            role: role_name(body.role).to_owned(),
            token: issued.token,
            expires_at: issued.expires_at.map(netia_events::chain::format_time),
        },
    }))
}

/// Pending invitations (admins).
#[utoipa::path(get, path = "/api/user_invitations", tag = "team", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<InvitationView>>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn invitations(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let data: Vec<InvitationView> = state
        .auth
        .invitations(agent.account_id)
        .await?
        .into_iter()
        .map(|(id, email, expires_at)| InvitationView { id, email, expires_at })
        .collect();
    Ok(HttpResponse::Ok().json(Data { data }))
}

/// Withdraws a pending invitation (admins).
#[utoipa::path(delete, path = "/api/user_invitations/{id}", tag = "team", params(("id" = uuid::Uuid, Path, description = "The invited user's id")), security(("bearer" = [])),
    responses((status = 204, description = "Withdrawn"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn withdraw(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id: UserId = parse_id(&id, "invitation id")?;
    if state.auth.end_invitation(agent.account_id, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no pending invitation with this id".into()))
    }
}
