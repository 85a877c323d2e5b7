//! Account events: registration, business context, widget settings, LLM on/off, canned responses,
//! identity verification, outbound webhook subscriptions, the Slack, Twilio and Gmail links.

use serde::{Deserialize, Serialize};

use crate::codec::no_upcasters;
use crate::event_family;
use crate::ids::{AccountId, InboxId, UserId};

event_family! {
    /// Everything that happens to an account.
    AccountEvent, stream = "account", upcasters = no_upcasters, {
        AccountRegistered = 1,
        BusinessContextUpdated = 1,
        WidgetSettingsUpdated = 1,
        LlmEnabled = 1,
        LlmDisabled = 1,
        CannedResponseSaved = 1,
        CannedResponseDeleted = 1,
        IdentitySecretRotated = 1,
        IdentityVerificationSet = 1,
        EventSubscriptionCreated = 1,
        EventSubscriptionDeleted = 1,
        SlackInstalled = 1,
        SlackUninstalled = 1,
        SlackChannelMapped = 1,
        TwilioLinked = 1,
        TwilioUnlinked = 1,
        InboundEmailAddressIssued = 1,
        GmailLinked = 1,
        GmailUnlinked = 1,
        GmailHistorySynced = 1,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRegistered {
    pub account_id: AccountId,
    pub name: String,
    pub owner_user_id: UserId,
    pub primary_inbox_id: InboxId,
}

/// What the LLM is told about the business (SPEC §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessContext {
    pub business_name: String,
    pub business_description: String,
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessContextUpdated {
    pub context: BusinessContext,
}

/// How the chat widget looks and where it may be embedded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetSettings {
    pub title: String,
    pub subtitle: String,
    pub primary_color: String,
    pub greeting: String,
    pub new_message_placeholder: String,
    pub show_agent_availability: bool,
    pub is_branding_hidden: bool,
    /// Origins allowed to embed the widget and open sockets; empty means any.
    pub allowed_origins: Vec<String>,
    /// The widget's language (`en`, `fr`, `de`, `es`); empty: the visitor's browser language.
    /// Absent from events written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locale: String,
    /// What the widget says about how soon the team answers: `minutes`, `hours` or `day` ("We
    /// typically reply in a few minutes / a few hours / a day"); empty: nothing. Absent from events
    /// written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reply_time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidgetSettingsUpdated {
    pub settings: WidgetSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmEnabled {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmDisabled {}

/// A reply agents can insert (created, or replaced when the id exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CannedResponseSaved {
    pub canned_response_id: uuid::Uuid,
    pub name: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CannedResponseDeleted {
    pub canned_response_id: uuid::Uuid,
}

/// An admin issued a new identity secret, the HMAC key with which the account's own servers sign
/// their users' external ids for the widget (`user_hash`). The previous secret stops working.
/// The secret is sealed (AES-256-GCM under the deployment's `NETIA_SECRET_KEY`, bound to the
/// account), never in clear in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentitySecretRotated {
    pub sealed_secret: String,
}

/// Whether the widget must prove every external id and email it sends with a valid `user_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityVerificationSet {
    pub required: bool,
}

/// The kinds of event an outbound webhook can subscribe to (Papercups' event subscriptions, with
/// `conversation:closed` and `customer:created` added).
pub const WEBHOOK_EVENTS: [&str; 5] = [
    "message:created",
    "conversation:created",
    "conversation:updated",
    "conversation:closed",
    "customer:created",
];

/// An admin subscribed `url` to `events` (each one of [`WEBHOOK_EVENTS`]). Deliveries are signed
/// with the subscription's secret, sealed here (AES-256-GCM under `NETIA_SECRET_KEY`, bound to the
/// subscription id): the secret itself is never in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSubscriptionCreated {
    pub subscription_id: uuid::Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub sealed_secret: String,
}

/// The subscription stops: no new deliveries, and queued ones are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSubscriptionDeleted {
    pub subscription_id: uuid::Uuid,
}

/// An admin linked a Slack workspace (OAuth v2). The bot token is sealed (AES-256-GCM under
/// `NETIA_SECRET_KEY`, bound to the account), never in clear in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackInstalled {
    pub team_id: String,
    pub team_name: String,
    /// The bot's own user id: its messages in a thread are ours, not replies.
    pub bot_user_id: String,
    pub sealed_bot_token: String,
    pub installed_by: UserId,
}

/// The Slack workspace was unlinked: nothing more is posted, replies are no longer taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackUninstalled {}

/// Conversations of `inbox_id` are posted to Slack channel `channel_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackChannelMapped {
    pub inbox_id: InboxId,
    pub channel_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
}

/// An admin linked a Twilio account (Papercups' twilio authorization): SMS to `from_number` become
/// conversations, agents' replies are sent from it. The auth token is sealed (AES-256-GCM under
/// `NETIA_SECRET_KEY`, bound to the account), never in clear in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwilioLinked {
    /// Twilio's account SID: `AC` and 32 hex digits.
    pub account_sid: String,
    /// The Twilio number, E.164 (`+15005550006`).
    pub from_number: String,
    pub sealed_auth_token: String,
    pub linked_by: UserId,
}

/// The Twilio link was removed: SMS are no longer taken or sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwilioUnlinked {}

/// Inbox `inbox_id` takes email at `<local_part>@<INBOUND_EMAIL_DOMAIN>` (the built-in SMTP
/// receiver) and at `POST /api/email/inbound/<token>` (a forwarding service). Issued on first use
/// and again on rotation (a new token; the local part stays, so forwarding rules keep working).
/// The token is kept as its SHA-256 (hex, for lookups) and sealed (to show the webhook URL again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEmailAddressIssued {
    pub inbox_id: InboxId,
    pub local_part: String,
    pub token_sha256: String,
    pub sealed_token: String,
}

/// An admin linked a Gmail inbox by Google OAuth: its new inbound mail becomes conversations and
/// agents' replies on them are sent through the Gmail API as this address. The refresh token is
/// sealed (AES-256-GCM under `NETIA_SECRET_KEY`, bound to the account), never in clear in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmailLinked {
    /// The mailbox's address (`users.getProfile` `emailAddress`).
    pub email_address: String,
    pub sealed_refresh_token: String,
    /// The mailbox's `historyId` when it was linked: the sync starts after it.
    pub history_id: u64,
    pub linked_by: UserId,
}

/// The Gmail link was removed: nothing more is synced or sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmailUnlinked {}

/// The mailbox was synced up to `history_id` (`users.history.list`; or, after Gmail forgot the
/// previous one, a resync of the last days, `resynced`): the next sync starts after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmailHistorySynced {
    pub history_id: u64,
    #[serde(default)]
    pub resynced: bool,
}
