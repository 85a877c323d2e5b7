//! Slack (SPEC §7): an account links a workspace by OAuth v2, its inbox is mapped to a channel,
//! each conversation is mirrored as a parent message and its thread ([`outbound`]), and agents'
//! replies in that thread come back through the signed Events API ([`signature`]).
//!
//! Vendor documentation: OAuth v2 (`https://api.slack.com/authentication/oauth-v2`), Web API methods
//! `oauth.v2.access`, `conversations.list`, `chat.postMessage`, `chat.update`, `users.info`, request
//! signing (`https://api.slack.com/authentication/verifying-requests-from-slack`), rate limits
//! (HTTP 429 with `Retry-After` in seconds).

pub mod client;
pub mod mrkdwn;
pub mod outbound;
pub mod signature;

use secrecy::SecretString;

/// The bot scopes Netia asks for: read channels to map one, post and update messages, read the
/// history of threads it posts in (the `message.channels` event), and users' emails (to find the
/// agent behind a Slack reply).
pub const SCOPES: &str =
    "channels:read,groups:read,chat:write,channels:history,groups:history,users:read,users:read.email";

/// The deployment's Slack app (`SLACK_*`).
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// `SLACK_CLIENT_ID`.
    pub client_id: String,
    /// `SLACK_CLIENT_SECRET`: exchanges OAuth codes.
    pub client_secret: SecretString,
    /// `SLACK_SIGNING_SECRET`: verifies what Slack sends (events, button actions).
    pub signing_secret: SecretString,
    /// `SLACK_API_BASE_URL`, default `https://slack.com/api`.
    pub api_base_url: String,
    /// `SLACK_OAUTH_URL`, default `https://slack.com/oauth/v2/authorize`.
    pub oauth_url: String,
}

/// An absolute `http(s)://host…` URL without spaces.
pub fn is_http_url(url: &str) -> bool {
    let url = url.trim();
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.split_once("://").is_some_and(|(_, rest)| !rest.is_empty())
        && !url.contains(char::is_whitespace)
}

/// Why the Slack settings are refused: (variable, reason).
pub type SettingsRefusal = (&'static str, &'static str);

impl SlackSettings {
    /// The settings from `get` (the environment): all three of `SLACK_CLIENT_ID`,
    /// `SLACK_CLIENT_SECRET`, `SLACK_SIGNING_SECRET`, or none (Slack off).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, SettingsRefusal> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let (id, secret, signing) = (
            set("SLACK_CLIENT_ID"),
            set("SLACK_CLIENT_SECRET"),
            set("SLACK_SIGNING_SECRET"),
        );
        let (client_id, client_secret, signing_secret) = match (id, secret, signing) {
            (None, None, None) => return Ok(None),
            (Some(id), Some(secret), Some(signing)) => (id, secret, signing),
            (None, _, _) => return Err(("SLACK_CLIENT_ID", "is needed with the other SLACK_* secrets")),
            (_, None, _) => return Err(("SLACK_CLIENT_SECRET", "is needed with SLACK_CLIENT_ID")),
            (_, _, None) => return Err(("SLACK_SIGNING_SECRET", "is needed with SLACK_CLIENT_ID")),
        };
        let url = |name: &'static str, default: &str| match set(name) {
            None => Ok(default.to_owned()),
            Some(url) if is_http_url(&url) => Ok(url.trim().trim_end_matches('/').to_owned()),
            Some(_) => Err((name, "must be an http(s) URL")),
        };
        Ok(Some(Self {
            client_id: client_id.trim().to_owned(),
            client_secret: SecretString::from(client_secret),
            signing_secret: SecretString::from(signing_secret),
            api_base_url: url("SLACK_API_BASE_URL", "https://slack.com/api")?,
            oauth_url: url("SLACK_OAUTH_URL", "https://slack.com/oauth/v2/authorize")?,
        }))
    }
}
