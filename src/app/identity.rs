//! Who a token belongs to: an enabled agent of one account (session token, or a personal API key
//! where the entry point accepts them) or a widget customer (customer token). An agent's role and
//! disabled flag are read from the user's own stream on every call, so a role change or a disable
//! takes effect at once.

use netia_commands::User;
use netia_commands::user::UserCommand;
use netia_commands::user::UserStatus;
use netia_events::Metadata;
use netia_events::user::Role;
use netia_events::user::SessionEnd;
use netia_events::{AccountId, CustomerId, UserId};

use super::{App, AppError};
use crate::auth::{Auth, AuthError, TokenKind};

/// An authenticated, enabled agent.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub role: Role,
    pub email: String,
    pub display_name: String,
    /// The session or API key used (to end the session on logout).
    pub token_id: String,
    pub via_api_key: bool,
    /// When the token expires (`None` for API keys: until revoked).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A widget customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerIdentity {
    pub customer_id: CustomerId,
    pub account_id: AccountId,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Unknown, expired or revoked; or not a token of the kinds accepted here.
    #[error("a valid, unexpired token is required (Authorization: Bearer …)")]
    Invalid,
    #[error("this user is disabled")]
    Disabled,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    App(#[from] AppError),
    /// The end of a session could not be recorded.
    #[error("recording the end of the session: {0}")]
    Record(#[from] crate::command_bus::CommandError<netia_commands::UserError>),
}

/// The agent holding `token`, one of `kinds` (sessions; API keys too where accepted).
pub async fn agent(app: &App, auth: &Auth, token: &str, kinds: &[TokenKind]) -> Result<AgentIdentity, IdentityError> {
    let holder = auth.holder(token, kinds).await?.ok_or(IdentityError::Invalid)?;
    let user_id = holder.user_id.ok_or(IdentityError::Invalid)?;
    let user = app.state_of::<User>(user_id).await?;
    if user.status != UserStatus::Registered || user.account_id != Some(holder.account_id) {
        return Err(IdentityError::Invalid);
    }
    if user.disabled {
        return Err(IdentityError::Disabled);
    }
    Ok(AgentIdentity {
        user_id,
        account_id: holder.account_id,
        role: user.role.unwrap_or(Role::Viewer),
        email: user.email,
        display_name: user.display_name,
        token_id: holder.token_id,
        via_api_key: holder.kind == TokenKind::ApiKey,
        expires_at: holder.expires_at,
    })
}

/// Ends the agent's session `token_id` (its access and renew token) and records it in the user's
/// stream (`SessionEnded`), from which every node closes the sockets opened with it.
pub async fn end_session(
    app: &App,
    auth: &Auth,
    user_id: UserId,
    token_id: &str,
    meta: &Metadata,
) -> Result<(), IdentityError> {
    auth.end_session(token_id).await?;
    session_ended(app, user_id, token_id, SessionEnd::LoggedOut, meta).await
}

/// Exchanges a renew token for a new session (see [`Auth::renew`]); the old session's end is
/// recorded like a sign-out's. `None` when the renew token is invalid, expired or used.
pub async fn renew(app: &App, auth: &Auth, renew_token: &str) -> Result<Option<crate::auth::Renewed>, IdentityError> {
    let Some(renewed) = auth.renew(renew_token).await? else {
        return Ok(None);
    };
    let meta = Metadata::new(netia_events::Actor::Agent {
        user_id: renewed.user_id,
    })
    .with_account(renewed.account_id);
    session_ended(app, renewed.user_id, &renewed.ended, SessionEnd::Renewed, &meta).await?;
    Ok(Some(renewed))
}

async fn session_ended(
    app: &App,
    user_id: UserId,
    token_id: &str,
    reason: SessionEnd,
    meta: &Metadata,
) -> Result<(), IdentityError> {
    let command = UserCommand::EndSession {
        token_id: token_id.to_owned(),
        reason,
    };
    app.bus.execute::<User>(user_id, command, meta).await?;
    Ok(())
}

/// The widget customer holding customer token `token`.
pub async fn customer(auth: &Auth, token: &str) -> Result<CustomerIdentity, IdentityError> {
    let holder = auth
        .holder(token, &[TokenKind::Customer])
        .await?
        .ok_or(IdentityError::Invalid)?;
    Ok(CustomerIdentity {
        customer_id: holder.customer_id.ok_or(IdentityError::Invalid)?,
        account_id: holder.account_id,
    })
}

/// Whether `user_id` is, now, an enabled admin of `account_id` (who may link a channel).
pub async fn is_admin_of(app: &App, user_id: UserId, account_id: AccountId) -> Result<bool, AppError> {
    let user = app.state_of::<User>(user_id).await?;
    Ok(user.account_id == Some(account_id) && !user.disabled && user.role == Some(Role::Admin))
}
