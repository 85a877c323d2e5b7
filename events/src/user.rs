//! User (agent) events: invited, registered, role changed, disabled, enabled, online, offline,
//! notification settings.

use serde::{Deserialize, Serialize};

use crate::codec::no_upcasters;
use crate::event_family;
use crate::ids::{AccountId, UserId};

event_family! {
    /// Everything that happens to a user of an account.
    UserEvent, stream = "user", upcasters = no_upcasters, {
        UserInvited = 1,
        UserRegistered = 1,
        UserRoleChanged = 1,
        UserDisabled = 1,
        UserEnabled = 1,
        AgentCameOnline = 1,
        AgentWentOffline = 1,
        SessionEnded = 1,
        NotificationSettingsChanged = 1,
    }
}

/// What a user may do (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInvited {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    pub role: Role,
    pub previous_role: Role,
    pub changed_by: UserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDisabled {
    pub disabled_by: UserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEnabled {
    pub enabled_by: UserId,
}

/// The agent opened a connection (dashboard socket) while none was open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCameOnline {}

/// The agent's last connection closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentWentOffline {}

/// Why a session ended before its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The agent signed out.
    LoggedOut,
    /// Its renew token was exchanged for a new session.
    Renewed,
}

/// A session of the agent (`token_id`, as listed in the auth store; never the secret) ended: every
/// socket opened with it closes, on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    pub token_id: String,
    pub reason: SessionEnd,
}

/// What the agent wants to hear by email. `new_conversation_emails`: a customer's message while no
/// agent of the account is online is emailed to them (default on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSettingsChanged {
    pub new_conversation_emails: bool,
}
