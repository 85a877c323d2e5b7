//! Who a token belongs to: an enabled agent of one account (session token, or a personal API key
//! where the entry point accepts them) or a widget customer (customer token). An agent's role and
//! disabled flag are read from the user's own stream on every call, so a role change or a disable
//! takes effect at once.

use netia_commands::User;
use netia_commands::user::UserStatus;
use netia_events::user::Role;
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
    })
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
