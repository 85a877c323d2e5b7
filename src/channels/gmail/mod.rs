//! Gmail (SPEC §7): an account links a mailbox by Google OAuth 2.0 (web-server flow, offline
//! access: a refresh token, sealed), [`sync`] turns the mailbox's new inbound mail into
//! conversations every `GMAIL_SYNC_INTERVAL` (one conversation per Gmail thread, deduplicated by
//! Gmail message id), and [`outbound`] sends agents' replies with `users.messages.send` in the
//! thread.
//!
//! Vendor documentation: "Using OAuth 2.0 for Web Server Applications"
//! (`https://developers.google.com/identity/protocols/oauth2/web-server`), Gmail API v1
//! `users.getProfile`, `users.history.list`, `users.messages.list`, `users.messages.get`
//! (`format=raw`), `users.messages.send`, and "Synchronizing clients with Gmail" (an expired
//! `startHistoryId` answers 404: do a full sync).

pub mod client;
pub mod outbound;
pub mod sync;

use secrecy::SecretString;

use crate::channels::slack::is_http_url;

/// What Netia asks of the mailbox: read it (history, messages) and send as it — not delete or
/// change labels.
pub const SCOPES: &str = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send";

/// Google's authorization endpoint, unless `GOOGLE_OAUTH_BASE_URL` is set.
pub const AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint, unless `GOOGLE_OAUTH_BASE_URL` is set.
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's revocation endpoint, unless `GOOGLE_OAUTH_BASE_URL` is set.
pub const REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
/// The Gmail API, unless `GMAIL_API_BASE_URL` is set.
pub const API_BASE_URL: &str = "https://gmail.googleapis.com";

/// The deployment's Google OAuth client (`GOOGLE_*`) and the Gmail sync's pace.
#[derive(Debug, Clone)]
pub struct GmailSettings {
    /// `GOOGLE_CLIENT_ID`.
    pub client_id: String,
    /// `GOOGLE_CLIENT_SECRET`: exchanges codes and refresh tokens.
    pub client_secret: SecretString,
    /// The authorization endpoint: [`AUTHORIZE_URL`], or `{GOOGLE_OAUTH_BASE_URL}/o/oauth2/v2/auth`.
    pub authorize_url: String,
    /// The token endpoint: [`TOKEN_URL`], or `{GOOGLE_OAUTH_BASE_URL}/token`.
    pub token_url: String,
    /// The revocation endpoint: [`REVOKE_URL`], or `{GOOGLE_OAUTH_BASE_URL}/revoke`.
    pub revoke_url: String,
    /// `GMAIL_API_BASE_URL`, default [`API_BASE_URL`].
    pub api_base_url: String,
    /// `GMAIL_SYNC_INTERVAL` (seconds, 1 to 3600, default 60): how often each mailbox is synced.
    pub sync_interval: std::time::Duration,
}

/// Why the Gmail settings are refused: (variable, reason).
pub type SettingsRefusal = (&'static str, &'static str);

impl GmailSettings {
    /// The settings from `get` (the environment): both `GOOGLE_CLIENT_ID` and
    /// `GOOGLE_CLIENT_SECRET`, or neither (Gmail off).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, SettingsRefusal> {
        let set = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (client_id, client_secret) = match (set("GOOGLE_CLIENT_ID"), set("GOOGLE_CLIENT_SECRET")) {
            (None, None) => return Ok(None),
            (Some(id), Some(secret)) => (id, secret),
            (None, Some(_)) => return Err(("GOOGLE_CLIENT_ID", "is needed with GOOGLE_CLIENT_SECRET")),
            (Some(_), None) => return Err(("GOOGLE_CLIENT_SECRET", "is needed with GOOGLE_CLIENT_ID")),
        };
        let url = |name: &'static str| match set(name) {
            None => Ok(None),
            Some(url) if is_http_url(&url) => Ok(Some(url.trim_end_matches('/').to_owned())),
            Some(_) => Err((name, "must be an http(s) URL")),
        };
        let (authorize_url, token_url, revoke_url) = match url("GOOGLE_OAUTH_BASE_URL")? {
            Some(base) => (
                format!("{base}/o/oauth2/v2/auth"),
                format!("{base}/token"),
                format!("{base}/revoke"),
            ),
            None => (AUTHORIZE_URL.to_owned(), TOKEN_URL.to_owned(), REVOKE_URL.to_owned()),
        };
        let sync_interval = match set("GMAIL_SYNC_INTERVAL") {
            None => 60,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (1..=3600).contains(&s) => s,
                _ => {
                    return Err((
                        "GMAIL_SYNC_INTERVAL",
                        "must be a whole number of seconds from 1 to 3600",
                    ));
                }
            },
        };
        Ok(Some(Self {
            client_id,
            client_secret: SecretString::from(client_secret),
            authorize_url,
            token_url,
            revoke_url,
            api_base_url: url("GMAIL_API_BASE_URL")?.unwrap_or_else(|| API_BASE_URL.to_owned()),
            sync_interval: std::time::Duration::from_secs(sync_interval),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<GmailSettings>, SettingsRefusal> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        GmailSettings::from_lookup(&|name: &str| vars.get(name).cloned())
    }

    #[test]
    fn gmail_is_off_without_a_client_and_needs_both_halves() {
        assert!(settings(&[]).unwrap().is_none());
        assert_eq!(
            settings(&[("GOOGLE_CLIENT_ID", "id")]).unwrap_err().0,
            "GOOGLE_CLIENT_SECRET"
        );
        let on = settings(&[("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (on.authorize_url.as_str(), on.token_url.as_str()),
            (AUTHORIZE_URL, TOKEN_URL)
        );
        assert_eq!(on.sync_interval.as_secs(), 60);
    }

    #[test]
    fn base_urls_and_the_interval_are_checked() {
        let both = [("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = both.to_vec();
            vars.push(extra);
            settings(&vars)
        };
        let local = with(("GOOGLE_OAUTH_BASE_URL", "http://127.0.0.1:9/")).unwrap().unwrap();
        assert_eq!(local.token_url, "http://127.0.0.1:9/token");
        assert_eq!(
            with(("GMAIL_API_BASE_URL", "ftp://x")).unwrap_err().0,
            "GMAIL_API_BASE_URL"
        );
        assert_eq!(with(("GMAIL_SYNC_INTERVAL", "0")).unwrap_err().0, "GMAIL_SYNC_INTERVAL");
    }
}
