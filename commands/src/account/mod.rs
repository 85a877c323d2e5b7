//! The account aggregate: registration, business context, widget settings, LLM on/off, canned
//! responses, identity verification, outbound webhook subscriptions, the Slack, Twilio and Gmail links.

mod gmail;
pub use gmail::GmailLink;
#[cfg(test)]
mod gmail_tests;
mod slack;
pub use slack::SlackInstallation;
mod twilio;
pub use twilio::{TwilioAuthorization, is_account_sid, is_e164};
#[cfg(test)]
mod slack_tests;
#[cfg(test)]
mod subscription_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod twilio_tests;

use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use serde::{Deserialize, Serialize};

use crate::validate::{is_clean_text, is_http_url, is_label};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountCommand {
    Register {
        account_id: AccountId,
        name: String,
        owner_user_id: UserId,
        primary_inbox_id: InboxId,
    },
    UpdateBusinessContext {
        context: BusinessContext,
    },
    UpdateWidgetSettings {
        settings: WidgetSettings,
    },
    EnableLlm,
    DisableLlm,
    SaveCannedResponse {
        canned_response_id: uuid::Uuid,
        name: String,
        body: String,
    },
    DeleteCannedResponse {
        canned_response_id: uuid::Uuid,
    },
    /// Records a new identity secret, already sealed by the application layer.
    RotateIdentitySecret {
        sealed_secret: String,
    },
    /// Turns required identity verification on or off; on needs an identity secret.
    SetIdentityVerification {
        required: bool,
    },
    /// Subscribes an outbound webhook; its secret already sealed by the application layer (which
    /// also checks the URL against private addresses, a rule of the deployment, not the account).
    CreateEventSubscription {
        subscription_id: uuid::Uuid,
        url: String,
        events: Vec<String>,
        sealed_secret: String,
    },
    DeleteEventSubscription {
        subscription_id: uuid::Uuid,
    },
    /// Records a Slack installation (OAuth v2 done by the application layer; token sealed).
    InstallSlack {
        team_id: String,
        team_name: String,
        bot_user_id: String,
        sealed_bot_token: String,
        installed_by: UserId,
    },
    UninstallSlack,
    /// Posts the conversations of `inbox_id` to Slack channel `channel_id`.
    MapSlackChannel {
        inbox_id: InboxId,
        channel_id: String,
        channel_name: Option<String>,
    },
    /// Links a Twilio number (credentials checked by the application layer; token sealed).
    LinkTwilio {
        account_sid: String,
        from_number: String,
        sealed_auth_token: String,
        linked_by: UserId,
    },
    UnlinkTwilio,
    /// Issues inbox `inbox_id` a new inbound-email token (and, the first time, its address).
    IssueInboundEmailAddress {
        inbox_id: InboxId,
        /// Used only when the inbox has no address yet.
        local_part: String,
        token_sha256: String,
        sealed_token: String,
    },
    /// Links a Gmail mailbox (the OAuth exchange done by the application layer; token sealed).
    LinkGmail {
        email_address: String,
        sealed_refresh_token: String,
        history_id: u64,
        linked_by: UserId,
    },
    UnlinkGmail,
    /// Records that mailbox `email_address` was synced up to `history_id`; a no-op unless it is
    /// the linked mailbox and the id moves forward (or `resynced`: Gmail forgot the previous one).
    RecordGmailSync {
        email_address: String,
        history_id: u64,
        resynced: bool,
    },
}

impl crate::Commutes for AccountCommand {
    fn commutes(&self) -> bool {
        matches!(
            self,
            AccountCommand::EnableLlm
                | AccountCommand::DisableLlm
                | AccountCommand::SaveCannedResponse { .. }
                | AccountCommand::DeleteCannedResponse { .. }
                | AccountCommand::CreateEventSubscription { .. }
                | AccountCommand::DeleteEventSubscription { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account not found")]
    NotFound,
    #[error("account already registered")]
    AlreadyExists,
    #[error("account name must be 1 to 100 printable characters")]
    InvalidName,
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
    #[error("canned response not found")]
    CannedResponseNotFound,
    #[error("an account has at most {MAX_CANNED_RESPONSES} canned responses")]
    TooManyCannedResponses,
    #[error("event subscription not found")]
    EventSubscriptionNotFound,
    #[error("an account has at most {MAX_EVENT_SUBSCRIPTIONS} event subscriptions")]
    TooManyEventSubscriptions,
    #[error("Slack is not linked to this account")]
    SlackNotInstalled,
    #[error("inbox not found")]
    InboxNotFound,
}

/// Outbound webhook subscriptions per account.
pub const MAX_EVENT_SUBSCRIPTIONS: usize = 20;

/// An outbound webhook: where deliveries go, for which events, signed with which (sealed) secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSubscription {
    pub url: String,
    pub events: Vec<String>,
    pub sealed_secret: String,
}

/// Canned responses per account.
pub const MAX_CANNED_RESPONSES: usize = 500;

/// A saved reply: name and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    pub name: String,
    pub body: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Option<AccountId>,
    pub name: String,
    pub business_context: BusinessContext,
    pub widget_settings: WidgetSettings,
    pub llm_enabled: bool,
    pub canned_responses: std::collections::BTreeMap<uuid::Uuid, CannedResponse>,
    /// The inbox created with the account: where conversations go that name no inbox.
    #[serde(default)]
    pub primary_inbox_id: Option<InboxId>,
    /// The identity secret, sealed (see `IdentitySecretRotated`); `None` until an admin issues one.
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// Whether external ids and emails from the widget must carry a valid `user_hash`.
    #[serde(default)]
    pub identity_verification_required: bool,
    /// Outbound webhooks, by subscription id.
    #[serde(default)]
    pub event_subscriptions: std::collections::BTreeMap<uuid::Uuid, EventSubscription>,
    /// The linked Slack workspace, if any.
    #[serde(default)]
    pub slack: Option<slack::SlackInstallation>,
    /// The Slack channel of each mapped inbox.
    #[serde(default)]
    pub slack_channels: std::collections::BTreeMap<InboxId, String>,
    /// The linked Twilio number, if any.
    #[serde(default)]
    pub twilio: Option<twilio::TwilioAuthorization>,
    /// Each inbox's inbound email address and token.
    #[serde(default)]
    pub inbound_email: std::collections::BTreeMap<InboxId, InboundEmailAddressIssued>,
    /// The linked Gmail mailbox, if any.
    #[serde(default)]
    pub gmail: Option<gmail::GmailLink>,
}

impl Account {
    pub fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountRegistered(e) => {
                self.id = Some(e.account_id);
                self.name = e.name.clone();
                self.primary_inbox_id = Some(e.primary_inbox_id);
            }
            AccountEvent::BusinessContextUpdated(e) => self.business_context = e.context.clone(),
            AccountEvent::WidgetSettingsUpdated(e) => self.widget_settings = e.settings.clone(),
            AccountEvent::LlmEnabled(_) => self.llm_enabled = true,
            AccountEvent::LlmDisabled(_) => self.llm_enabled = false,
            AccountEvent::CannedResponseSaved(e) => {
                self.canned_responses.insert(
                    e.canned_response_id,
                    CannedResponse {
                        name: e.name.clone(),
                        body: e.body.clone(),
                    },
                );
            }
            AccountEvent::CannedResponseDeleted(e) => {
                self.canned_responses.remove(&e.canned_response_id);
            }
            AccountEvent::IdentitySecretRotated(e) => self.identity_secret = Some(e.sealed_secret.clone()),
            AccountEvent::IdentityVerificationSet(e) => self.identity_verification_required = e.required,
            AccountEvent::EventSubscriptionCreated(e) => {
                self.event_subscriptions.insert(
                    e.subscription_id,
                    EventSubscription {
                        url: e.url.clone(),
                        events: e.events.clone(),
                        sealed_secret: e.sealed_secret.clone(),
                    },
                );
            }
            AccountEvent::EventSubscriptionDeleted(e) => {
                self.event_subscriptions.remove(&e.subscription_id);
            }
            AccountEvent::SlackInstalled(_)
            | AccountEvent::SlackUninstalled(_)
            | AccountEvent::SlackChannelMapped(_) => {
                self.evolve_slack(event);
            }
            AccountEvent::TwilioLinked(_) | AccountEvent::TwilioUnlinked(_) => self.evolve_twilio(event),
            AccountEvent::GmailLinked(_) | AccountEvent::GmailUnlinked(_) | AccountEvent::GmailHistorySynced(_) => {
                self.evolve_gmail(event)
            }
            AccountEvent::InboundEmailAddressIssued(e) => {
                self.inbound_email.insert(e.inbox_id, e.clone());
            }
        }
    }
}

impl crate::Decide for Account {
    fn decide(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match (self.id, command) {
            (
                None,
                AccountCommand::Register {
                    account_id,
                    name,
                    owner_user_id,
                    primary_inbox_id,
                },
            ) => {
                if !is_label(name, 100) {
                    return Err(AccountError::InvalidName);
                }
                Ok(vec![AccountEvent::AccountRegistered(AccountRegistered {
                    account_id: *account_id,
                    name: name.trim().to_owned(),
                    owner_user_id: *owner_user_id,
                    primary_inbox_id: *primary_inbox_id,
                })])
            }
            (None, _) => Err(AccountError::NotFound),
            (Some(_), AccountCommand::Register { .. }) => Err(AccountError::AlreadyExists),
            (Some(_), AccountCommand::UpdateBusinessContext { context }) => {
                check_context(context)?;
                Ok(if *context == self.business_context {
                    Vec::new()
                } else {
                    vec![AccountEvent::BusinessContextUpdated(BusinessContextUpdated {
                        context: context.clone(),
                    })]
                })
            }
            (Some(_), AccountCommand::UpdateWidgetSettings { settings }) => {
                check_widget(settings)?;
                Ok(if *settings == self.widget_settings {
                    Vec::new()
                } else {
                    vec![AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated {
                        settings: settings.clone(),
                    })]
                })
            }
            (Some(_), AccountCommand::EnableLlm) => Ok(if self.llm_enabled {
                Vec::new()
            } else {
                vec![AccountEvent::LlmEnabled(LlmEnabled {})]
            }),
            (Some(_), AccountCommand::DisableLlm) => Ok(if self.llm_enabled {
                vec![AccountEvent::LlmDisabled(LlmDisabled {})]
            } else {
                Vec::new()
            }),
            (
                Some(_),
                AccountCommand::SaveCannedResponse {
                    canned_response_id,
                    name,
                    body,
                },
            ) => {
                if !is_label(name, 100) {
                    return Err(invalid("name", "must be 1 to 100 printable characters"));
                }
                if body.trim().is_empty() {
                    return Err(invalid("body", "is empty"));
                }
                check_text("body", body, 5_000)?;
                let saved = CannedResponse {
                    name: name.trim().to_owned(),
                    body: body.clone(),
                };
                match self.canned_responses.get(canned_response_id) {
                    Some(existing) if *existing == saved => return Ok(Vec::new()),
                    None if self.canned_responses.len() >= MAX_CANNED_RESPONSES => {
                        return Err(AccountError::TooManyCannedResponses);
                    }
                    _ => {}
                }
                Ok(vec![AccountEvent::CannedResponseSaved(CannedResponseSaved {
                    canned_response_id: *canned_response_id,
                    name: saved.name,
                    body: saved.body,
                })])
            }
            (Some(_), AccountCommand::DeleteCannedResponse { canned_response_id }) => {
                if !self.canned_responses.contains_key(canned_response_id) {
                    return Err(AccountError::CannedResponseNotFound);
                }
                Ok(vec![AccountEvent::CannedResponseDeleted(CannedResponseDeleted {
                    canned_response_id: *canned_response_id,
                })])
            }
            (Some(_), AccountCommand::RotateIdentitySecret { sealed_secret }) => {
                if sealed_secret.is_empty() || sealed_secret.len() > 1_000 {
                    return Err(invalid("identity_secret", "must be a sealed secret"));
                }
                Ok(vec![AccountEvent::IdentitySecretRotated(IdentitySecretRotated {
                    sealed_secret: sealed_secret.clone(),
                })])
            }
            (Some(_), AccountCommand::SetIdentityVerification { required }) => {
                if *required && self.identity_secret.is_none() {
                    return Err(invalid(
                        "require_identity_verification",
                        "needs an identity secret: issue one first",
                    ));
                }
                Ok(if *required == self.identity_verification_required {
                    Vec::new()
                } else {
                    vec![AccountEvent::IdentityVerificationSet(IdentityVerificationSet {
                        required: *required,
                    })]
                })
            }
            (
                Some(_),
                AccountCommand::CreateEventSubscription {
                    subscription_id,
                    url,
                    events,
                    sealed_secret,
                },
            ) => self.create_subscription(*subscription_id, url, events, sealed_secret),
            (
                Some(_),
                AccountCommand::InstallSlack { .. }
                | AccountCommand::UninstallSlack
                | AccountCommand::MapSlackChannel { .. },
            ) => self.decide_slack(command),
            (Some(_), AccountCommand::LinkTwilio { .. } | AccountCommand::UnlinkTwilio) => self.decide_twilio(command),
            (
                Some(_),
                AccountCommand::LinkGmail { .. } | AccountCommand::UnlinkGmail | AccountCommand::RecordGmailSync { .. },
            ) => self.decide_gmail(command),
            (
                Some(_),
                AccountCommand::IssueInboundEmailAddress {
                    inbox_id,
                    local_part,
                    token_sha256,
                    sealed_token,
                },
            ) => {
                if Some(*inbox_id) != self.primary_inbox_id {
                    return Err(AccountError::InboxNotFound);
                }
                let local_part = match self.inbound_email.get(inbox_id) {
                    Some(issued) => issued.local_part.clone(),
                    None if is_local_part(local_part) => local_part.clone(),
                    None => {
                        return Err(invalid(
                            "local_part",
                            "must be 3 to 64 lowercase letters, digits or hyphens",
                        ));
                    }
                };
                if token_sha256.len() != 64
                    || !token_sha256.chars().all(|c| c.is_ascii_hexdigit())
                    || sealed_token.is_empty()
                {
                    return Err(invalid("token", "must be a SHA-256 and a sealed token"));
                }
                Ok(vec![AccountEvent::InboundEmailAddressIssued(
                    InboundEmailAddressIssued {
                        inbox_id: *inbox_id,
                        local_part,
                        token_sha256: token_sha256.clone(),
                        sealed_token: sealed_token.clone(),
                    },
                )])
            }
            (Some(_), AccountCommand::DeleteEventSubscription { subscription_id }) => {
                if !self.event_subscriptions.contains_key(subscription_id) {
                    return Err(AccountError::EventSubscriptionNotFound);
                }
                Ok(vec![AccountEvent::EventSubscriptionDeleted(EventSubscriptionDeleted {
                    subscription_id: *subscription_id,
                })])
            }
        }
    }
}

impl Account {
    /// A new subscription: an http(s) URL without credentials, 1 to 5 distinct known events; the
    /// same id again with the same fields is a no-op (a retried request).
    fn create_subscription(
        &self,
        subscription_id: uuid::Uuid,
        url: &str,
        events: &[String],
        sealed_secret: &str,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let authority = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next());
        if !is_http_url(url) || authority.is_none_or(|a| a.is_empty() || a.contains('@')) {
            return Err(invalid("url", "must be an http(s) URL without credentials"));
        }
        if events.is_empty() {
            return Err(invalid("events", "name at least one event"));
        }
        if events.iter().any(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(invalid(
                "events",
                "each must be one of message:created, conversation:created, conversation:updated, conversation:closed, customer:created",
            ));
        }
        let mut distinct = events.to_vec();
        distinct.sort();
        distinct.dedup();
        if sealed_secret.is_empty() || sealed_secret.len() > 1_000 {
            return Err(invalid("secret", "must be a sealed secret"));
        }
        match self.event_subscriptions.get(&subscription_id) {
            Some(existing) if existing.url == url && existing.events == distinct => return Ok(Vec::new()),
            Some(_) => return Err(invalid("subscription_id", "is taken")),
            None if self.event_subscriptions.len() >= MAX_EVENT_SUBSCRIPTIONS => {
                return Err(AccountError::TooManyEventSubscriptions);
            }
            None => {}
        }
        Ok(vec![AccountEvent::EventSubscriptionCreated(EventSubscriptionCreated {
            subscription_id,
            url: url.to_owned(),
            events: distinct,
            sealed_secret: sealed_secret.to_owned(),
        })])
    }
}

crate::aggregate!(Account, "account", AccountCommand, AccountEvent, AccountError);

/// The local part of an inbound address: 3 to 64 of `a-z`, `0-9` and `-` (RFC 5321's dot-atom
/// text, narrowed so that no address needs quoting or differs only in case).
pub fn is_local_part(s: &str) -> bool {
    (3..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn invalid(field: &'static str, reason: &'static str) -> AccountError {
    AccountError::InvalidField { field, reason }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), AccountError> {
    if value.chars().count() > max {
        return Err(invalid(field, "too long"));
    }
    if !is_clean_text(value) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_context(c: &BusinessContext) -> Result<(), AccountError> {
    check_text("business_name", &c.business_name, 200)?;
    check_text("business_description", &c.business_description, 5_000)?;
    check_text("instructions", &c.instructions, 10_000)?;
    match &c.scheduling_link {
        Some(link) if !is_http_url(link) => Err(invalid("scheduling_link", "must be an http(s) URL")),
        _ => Ok(()),
    }
}

/// The widget's languages (`assets/chat.js` holds their strings); empty: the browser's.
pub const WIDGET_LOCALES: [&str; 5] = ["", "en", "fr", "de", "es"];

/// How soon the widget says the team typically replies (`assets/chat.js` words them); empty: it
/// says nothing.
pub const WIDGET_REPLY_TIMES: [&str; 4] = ["", "minutes", "hours", "day"];

fn check_widget(s: &WidgetSettings) -> Result<(), AccountError> {
    check_text("title", &s.title, 200)?;
    check_text("subtitle", &s.subtitle, 500)?;
    check_text("greeting", &s.greeting, 2_000)?;
    check_text("new_message_placeholder", &s.new_message_placeholder, 200)?;
    if !is_color(&s.primary_color) {
        return Err(invalid("primary_color", "must be #rgb or #rrggbb"));
    }
    if !WIDGET_LOCALES.contains(&s.locale.as_str()) {
        return Err(invalid(
            "locale",
            "must be en, fr, de, es, or empty (the visitor's browser language)",
        ));
    }
    if !WIDGET_REPLY_TIMES.contains(&s.reply_time.as_str()) {
        return Err(invalid(
            "reply_time",
            "must be minutes, hours, day, or empty (say nothing)",
        ));
    }
    if s.allowed_origins.len() > 50 {
        return Err(invalid("allowed_origins", "at most 50 origins"));
    }
    if !s.allowed_origins.iter().all(|o| is_origin(o)) {
        return Err(invalid(
            "allowed_origins",
            "each must be scheme://host[:port] without a path",
        ));
    }
    Ok(())
}

/// `#rgb` or `#rrggbb`, or empty for the default colour.
pub fn is_color(s: &str) -> bool {
    s.is_empty() || (s.starts_with('#') && matches!(s.len(), 4 | 7) && s[1..].chars().all(|c| c.is_ascii_hexdigit()))
}

/// A web origin: `http(s)://host[:port]`, no path, query or credentials.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest.len() <= 253
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}
