//! The user aggregate: an agent's invitation, registration, role and access.

#[cfg(test)]
mod tests;

use netia_events::user::*;
use netia_events::{AccountId, UserId};
use serde::{Deserialize, Serialize};

use crate::validate::{is_email, is_label};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    Invite {
        user_id: UserId,
        account_id: AccountId,
        email: String,
        role: Role,
        invited_by: UserId,
    },
    /// The founding admin of a new account, or an invitee accepting (who keeps the invited role).
    Register {
        user_id: UserId,
        account_id: AccountId,
        email: String,
        display_name: String,
        role: Role,
    },
    ChangeRole {
        role: Role,
        changed_by: UserId,
    },
    Disable {
        disabled_by: UserId,
    },
    Enable {
        enabled_by: UserId,
    },
    /// A connection opened (`online: true`) or the last one closed; a no-op when nothing changes.
    SetOnline {
        online: bool,
    },
    /// Whether customers' messages are emailed while no agent is online (a no-op when unchanged).
    SetNotifications {
        new_conversation_emails: bool,
    },
    /// A session of this user ended (signed out, or renewed).
    EndSession {
        token_id: String,
        reason: SessionEnd,
    },
}

impl crate::Commutes for UserCommand {
    fn commutes(&self) -> bool {
        matches!(self, UserCommand::SetOnline { .. } | UserCommand::EndSession { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user not found")]
    NotFound,
    #[error("user already exists")]
    AlreadyExists,
    #[error("user already registered")]
    AlreadyRegistered,
    #[error("the invitation belongs to another account")]
    WrongAccount,
    #[error("email address is invalid")]
    InvalidEmail,
    #[error("display name must be 1 to 100 printable characters")]
    InvalidDisplayName,
    #[error("nobody can change their own role")]
    CannotChangeOwnRole,
    #[error("nobody can disable themselves")]
    CannotDisableSelf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserStatus {
    #[default]
    Unknown,
    Invited,
    Registered,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Option<UserId>,
    pub account_id: Option<AccountId>,
    pub status: UserStatus,
    pub email: String,
    pub display_name: String,
    pub role: Option<Role>,
    pub disabled: bool,
    pub online: bool,
    /// Off when the agent turned new-conversation emails off (they are on by default).
    #[serde(default)]
    pub no_new_conversation_emails: bool,
}

impl User {
    pub fn evolve(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserInvited(e) => {
                self.id = Some(e.user_id);
                self.account_id = Some(e.account_id);
                self.email = e.email.clone();
                self.role = Some(e.role);
                self.status = UserStatus::Invited;
            }
            UserEvent::UserRegistered(e) => {
                self.id = Some(e.user_id);
                self.account_id = Some(e.account_id);
                self.email = e.email.clone();
                self.display_name = e.display_name.clone();
                self.role = Some(e.role);
                self.status = UserStatus::Registered;
            }
            UserEvent::UserRoleChanged(e) => self.role = Some(e.role),
            UserEvent::UserDisabled(_) => self.disabled = true,
            UserEvent::UserEnabled(_) => self.disabled = false,
            UserEvent::AgentCameOnline(_) => self.online = true,
            UserEvent::AgentWentOffline(_) => self.online = false,
            UserEvent::SessionEnded(_) => {}
            UserEvent::NotificationSettingsChanged(e) => self.no_new_conversation_emails = !e.new_conversation_emails,
        }
    }

    fn self_id(&self) -> Result<UserId, UserError> {
        self.id.ok_or(UserError::NotFound)
    }
}

impl crate::Decide for User {
    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Invite {
                user_id,
                account_id,
                email,
                role,
                invited_by,
            } => {
                if self.status != UserStatus::Unknown {
                    return Err(UserError::AlreadyExists);
                }
                if !is_email(email) {
                    return Err(UserError::InvalidEmail);
                }
                Ok(vec![UserEvent::UserInvited(UserInvited {
                    user_id: *user_id,
                    account_id: *account_id,
                    email: email.to_lowercase(),
                    role: *role,
                    invited_by: *invited_by,
                })])
            }
            UserCommand::Register {
                user_id,
                account_id,
                email,
                display_name,
                role,
            } => {
                if !is_email(email) {
                    return Err(UserError::InvalidEmail);
                }
                if !is_label(display_name, 100) {
                    return Err(UserError::InvalidDisplayName);
                }
                let role = match self.status {
                    UserStatus::Registered => return Err(UserError::AlreadyRegistered),
                    UserStatus::Invited if self.account_id != Some(*account_id) => {
                        return Err(UserError::WrongAccount);
                    }
                    UserStatus::Invited => self.role.unwrap_or(Role::Viewer),
                    UserStatus::Unknown => *role,
                };
                Ok(vec![UserEvent::UserRegistered(UserRegistered {
                    user_id: *user_id,
                    account_id: *account_id,
                    email: email.to_lowercase(),
                    display_name: display_name.trim().to_owned(),
                    role,
                })])
            }
            UserCommand::ChangeRole { role, changed_by } => {
                let me = self.self_id()?;
                if *changed_by == me {
                    return Err(UserError::CannotChangeOwnRole);
                }
                let previous_role = self.role.unwrap_or(Role::Viewer);
                Ok(if previous_role == *role {
                    Vec::new()
                } else {
                    vec![UserEvent::UserRoleChanged(UserRoleChanged {
                        role: *role,
                        previous_role,
                        changed_by: *changed_by,
                    })]
                })
            }
            UserCommand::Disable { disabled_by } => {
                let me = self.self_id()?;
                if *disabled_by == me {
                    return Err(UserError::CannotDisableSelf);
                }
                Ok(if self.disabled {
                    Vec::new()
                } else {
                    vec![UserEvent::UserDisabled(UserDisabled {
                        disabled_by: *disabled_by,
                    })]
                })
            }
            UserCommand::SetNotifications {
                new_conversation_emails,
            } => {
                self.self_id()?;
                if self.no_new_conversation_emails != *new_conversation_emails {
                    return Ok(Vec::new());
                }
                Ok(vec![UserEvent::NotificationSettingsChanged(
                    NotificationSettingsChanged {
                        new_conversation_emails: *new_conversation_emails,
                    },
                )])
            }
            UserCommand::SetOnline { online } => {
                self.self_id()?;
                Ok(match (self.online, online) {
                    (false, true) => vec![UserEvent::AgentCameOnline(AgentCameOnline {})],
                    (true, false) => vec![UserEvent::AgentWentOffline(AgentWentOffline {})],
                    _ => Vec::new(),
                })
            }
            UserCommand::EndSession { token_id, reason } => {
                self.self_id()?;
                Ok(vec![UserEvent::SessionEnded(SessionEnded {
                    token_id: token_id.clone(),
                    reason: *reason,
                })])
            }
            UserCommand::Enable { enabled_by } => {
                self.self_id()?;
                Ok(if self.disabled {
                    vec![UserEvent::UserEnabled(UserEnabled {
                        enabled_by: *enabled_by,
                    })]
                } else {
                    Vec::new()
                })
            }
        }
    }
}

crate::aggregate!(User, "user", UserCommand, UserEvent, UserError);
