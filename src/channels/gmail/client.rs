//! Google's OAuth 2.0 token endpoint and the Gmail API v1 (`{GMAIL_API_BASE_URL}/gmail/v1/users/me/…`,
//! `Authorization: Bearer <access token>`). Token errors are `{"error": "invalid_grant",
//! "error_description": "…"}`; Gmail errors `{"error": {"code": 404, "message": "…", "status":
//! "NOT_FOUND"}}`. Sources: Google, "Using OAuth 2.0 for Web Server Applications"; Gmail API
//! reference (`users.getProfile`, `users.history.list`, `users.messages.get|list|send`).

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::GmailSettings;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleError {
    /// HTTP 401: the access token expired or was revoked (refresh and try again once).
    #[error("Google refused the access token")]
    Unauthorized,
    /// HTTP 404: the thing is gone — for `users.history.list`, the `startHistoryId` is too old.
    #[error("Google: not found")]
    NotFound,
    /// The refresh token no longer works (`invalid_grant`: revoked, expired, password changed):
    /// the mailbox must be linked again.
    #[error("Google no longer accepts this mailbox's authorization ({0}); link Gmail again")]
    Revoked(String),
    /// Another 4xx: the request will not succeed as it is.
    #[error("Google refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// A message that cannot be taken as it is (too large, not decodable, an id that is not
    /// Gmail's): skipped, never retried.
    #[error("the Gmail message cannot be taken: {0}")]
    Unusable(&'static str),
    /// HTTP 429 or 5xx, or an answer that is not Google's JSON: worth another attempt.
    #[error("Google answered {status}")]
    Server { status: u16 },
    #[error("Google could not be reached: {0}")]
    Transport(String),
}

impl GoogleError {
    /// Worth another attempt later (rate limit, server error, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, GoogleError::Server { .. } | GoogleError::Transport(_))
    }
}

/// What the token endpoint answers.
#[derive(Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    /// Seconds the access token lives.
    #[serde(default = "default_lifetime")]
    pub expires_in: u64,
    /// Only on the first exchange with `access_type=offline`.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The scopes granted, space-separated (the admin may have unticked some).
    #[serde(default)]
    pub scope: Option<String>,
}

impl Tokens {
    /// Whether every scope Netia asks for ([`super::SCOPES`]) was granted (`true` when Google did
    /// not say).
    pub fn grants_all(&self) -> bool {
        let Some(granted) = &self.scope else { return true };
        let granted: Vec<&str> = granted.split_whitespace().collect();
        super::SCOPES.split_whitespace().all(|s| granted.contains(&s))
    }
}

fn default_lifetime() -> u64 {
    3_600
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// `users.getProfile`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    #[serde(default)]
    pub messages_total: u64,
    #[serde(default)]
    pub threads_total: u64,
    /// A decimal string in Gmail's JSON.
    pub history_id: String,
}

/// A Gmail id (message or thread): letters and digits (Gmail's are hex), at most 64. Nothing else
/// is put in a URL or a stream id.
pub fn is_gmail_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The largest message taken, in bytes (as inbound email).
const MAX_RAW_BYTES: usize = crate::app::inbound_email::MAX_EMAIL_BYTES;

/// `users.messages.get` with `format=raw`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBody {
    id: String,
    thread_id: String,
    #[serde(default)]
    label_ids: Vec<String>,
    #[serde(default)]
    raw: String,
}

/// A message's ids (and labels, when Gmail gives them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub id: String,
    pub thread_id: String,
    #[serde(default)]
    pub label_ids: Vec<String>,
}

/// One page of `users.history.list`: history records (oldest first) with the messages each added.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    /// (record id, messages added by it).
    pub records: Vec<(u64, Vec<MessageRef>)>,
    pub next_page_token: Option<String>,
    /// The mailbox's current history id.
    pub history_id: u64,
}

/// A message as stored (`format=raw`).
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub id: String,
    pub thread_id: String,
    pub label_ids: Vec<String>,
    /// The RFC 5322 message.
    pub raw: Vec<u8>,
}

/// Gmail's decimal-string history ids.
pub fn history_number(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

#[derive(Clone)]
pub struct GoogleClient {
    http: reqwest::Client,
    settings: GmailSettings,
}

impl GoogleClient {
    pub fn new(settings: GmailSettings) -> Self {
        Self {
            http: crate::channels::vendor_http(CALL_TIMEOUT),
            settings,
        }
    }

    pub fn settings(&self) -> &GmailSettings {
        &self.settings
    }

    /// The consent page's URL: offline access (a refresh token), consent asked every time (so a
    /// relink gets a refresh token again), [`super::SCOPES`].
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let mut url = url::Url::parse(&self.settings.authorize_url).unwrap_or_else(|_| {
            url::Url::parse(super::AUTHORIZE_URL).unwrap_or_else(|_| unreachable!("a valid constant"))
        });
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", super::SCOPES)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("state", state);
        url.into()
    }

    async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), GoogleError> {
        let response = request.send().await.map_err(|e| {
            GoogleError::Transport(if e.is_timeout() {
                "timed out".into()
            } else {
                e.without_url().to_string()
            })
        })?;
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(GoogleError::Server { status });
        }
        let body: Value = response.json().await.map_err(|_| GoogleError::Server { status })?;
        Ok((status, body))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, GoogleError> {
        let secret = self.settings.client_secret.expose_secret();
        let mut fields = vec![
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", secret),
        ];
        fields.extend_from_slice(form);
        let (status, body) = Self::send(self.http.post(&self.settings.token_url).form(&fields)).await?;
        if status == 400 && body["error"] == "invalid_grant" {
            return Err(GoogleError::Revoked("invalid_grant".into()));
        }
        if !(200..300).contains(&status) {
            return Err(GoogleError::Refused {
                status,
                message: text(&body["error"]),
            });
        }
        serde_json::from_value(body).map_err(|_| GoogleError::Server { status })
    }

    /// Exchanges an authorization `code` (grant `authorization_code`).
    pub async fn exchange(&self, code: &str, redirect_uri: &str) -> Result<Tokens, GoogleError> {
        let form = [
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
        ];
        self.token(&form).await
    }

    /// A new access token from a refresh token (grant `refresh_token`).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<Tokens, GoogleError> {
        let form = [
            ("refresh_token", refresh_token.expose_secret()),
            ("grant_type", "refresh_token"),
        ];
        self.token(&form).await
    }

    fn api(&self, path: &str) -> String {
        format!("{}/gmail/v1/users/me{path}", self.settings.api_base_url)
    }

    async fn gmail(&self, request: reqwest::RequestBuilder, access_token: &str) -> Result<Value, GoogleError> {
        let (status, body) = Self::send(request.bearer_auth(access_token)).await?;
        // Gmail says "slow down" with 403 too (`rateLimitExceeded`, `userRateLimitExceeded`,
        // `dailyLimitExceeded`; "Resolve errors" in the Gmail API guide): worth a retry.
        let reason = body["error"]["errors"][0]["reason"].as_str().unwrap_or_default();
        match status {
            200..=299 => Ok(body),
            401 => Err(GoogleError::Unauthorized),
            404 => Err(GoogleError::NotFound),
            403 if reason.ends_with("LimitExceeded") => Err(GoogleError::Server { status }),
            _ => Err(GoogleError::Refused {
                status,
                message: text(&body["error"]["message"]),
            }),
        }
    }

    /// `users.getProfile`.
    pub async fn profile(&self, access_token: &str) -> Result<Profile, GoogleError> {
        let body = self.gmail(self.http.get(self.api("/profile")), access_token).await?;
        serde_json::from_value(body).map_err(|_| GoogleError::Server { status: 200 })
    }

    /// One page of `users.history.list` of added messages after `start` (`NotFound` when Gmail no
    /// longer has that history).
    pub async fn history(
        &self,
        access_token: &str,
        start: u64,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, GoogleError> {
        let mut query = vec![
            ("startHistoryId", start.to_string()),
            ("historyTypes", "messageAdded".to_owned()),
            ("historyTypes", "labelAdded".to_owned()),
            ("maxResults", "500".to_owned()),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token.to_owned()));
        }
        let body = self
            .gmail(self.http.get(self.api("/history")).query(&query), access_token)
            .await?;
        let history_id = history_number(&body["historyId"]).ok_or(GoogleError::Server { status: 200 })?;
        let mut records = Vec::new();
        for record in body["history"].as_array().into_iter().flatten() {
            let Some(id) = history_number(&record["id"]) else {
                continue;
            };
            let message = |a: &Value| serde_json::from_value::<MessageRef>(a["message"].clone()).ok();
            let mut added: Vec<MessageRef> = record["messagesAdded"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(message)
                .collect();
            // Moved into the inbox (out of spam, say) is arriving too.
            let to_inbox = record["labelsAdded"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["labelIds"].as_array().is_some_and(|l| l.iter().any(|l| l == "INBOX")))
                .filter_map(message);
            added.extend(to_inbox);
            records.push((id, added));
        }
        Ok(HistoryPage {
            records,
            next_page_token: body["nextPageToken"].as_str().map(str::to_owned),
            history_id,
        })
    }

    /// One page of `users.messages.list` for the search `query` (newest first) in `INBOX`.
    pub async fn list(
        &self,
        access_token: &str,
        query: &str,
        page_token: Option<&str>,
    ) -> Result<(Vec<MessageRef>, Option<String>), GoogleError> {
        let mut params = vec![
            ("q", query.to_owned()),
            ("labelIds", "INBOX".to_owned()),
            ("maxResults", "100".to_owned()),
        ];
        if let Some(token) = page_token {
            params.push(("pageToken", token.to_owned()));
        }
        let body = self
            .gmail(self.http.get(self.api("/messages")).query(&params), access_token)
            .await?;
        let messages = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| serde_json::from_value(m.clone()).ok())
            .collect();
        Ok((messages, body["nextPageToken"].as_str().map(str::to_owned)))
    }

    /// `users.messages.get` with `format=raw`. A message over 10 MiB, or one that does not decode,
    /// is [`GoogleError::Unusable`].
    pub async fn message(&self, access_token: &str, id: &str) -> Result<RawMessage, GoogleError> {
        if !is_gmail_id(id) {
            return Err(GoogleError::Unusable("not a Gmail message id"));
        }
        let request = self
            .http
            .get(self.api(&format!("/messages/{id}")))
            .query(&[("format", "raw")]);
        let body = self.gmail(request, access_token).await?;
        let body: RawBody =
            serde_json::from_value(body).map_err(|_| GoogleError::Unusable("not Gmail's message shape"))?;
        if !is_gmail_id(&body.id) || !is_gmail_id(&body.thread_id) {
            return Err(GoogleError::Unusable("not a Gmail message id"));
        }
        if body.raw.len() / 4 * 3 > MAX_RAW_BYTES {
            return Err(GoogleError::Unusable("larger than 10 MiB"));
        }
        let raw = decode_base64url(&body.raw).ok_or(GoogleError::Unusable("raw is not base64url"))?;
        Ok(RawMessage {
            id: body.id,
            thread_id: body.thread_id,
            label_ids: body.label_ids,
            raw,
        })
    }

    /// `users.messages.send`: `raw` (an RFC 5322 message) into thread `thread_id`; the sent
    /// message's ids (`None` when Gmail's 2xx answer does not name them: sent all the same).
    pub async fn send_message(
        &self,
        access_token: &str,
        raw: &[u8],
        thread_id: &str,
    ) -> Result<Option<MessageRef>, GoogleError> {
        let body = json!({
            "raw": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            "threadId": thread_id,
        });
        let request = self.http.post(self.api("/messages/send")).json(&body);
        let sent = self.gmail(request, access_token).await?;
        Ok(serde_json::from_value(sent).ok())
    }

    /// Revokes a refresh token at Google (`POST /revoke`), so that an unlinked mailbox's grant
    /// ends there too. Best effort: the caller logs a failure.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<(), GoogleError> {
        let form = [("token", refresh_token.expose_secret())];
        let (status, body) = Self::send(self.http.post(&self.settings.revoke_url).form(&form)).await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(GoogleError::Refused {
            status,
            message: text(&body["error"]),
        })
    }
}

/// Gmail's base64url, with or without padding.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed).ok()
}

/// A vendor's message, printable and bounded.
fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or("no message")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_ids_are_read_from_strings_or_numbers_and_base64url_with_or_without_padding() {
        assert_eq!(history_number(&json!("123456")), Some(123_456));
        assert_eq!(history_number(&json!(7)), Some(7));
        assert_eq!(history_number(&json!("x")), None);
        assert_eq!(decode_base64url("aGk_").unwrap(), b"hi?");
        assert_eq!(decode_base64url("aGk=").unwrap(), b"hi");
        assert!(is_gmail_id("18c2f0a9b3d4e5f6"));
        for bad in ["", "..", "../x", "a/b", "a b", &"f".repeat(65)] {
            assert!(!is_gmail_id(bad), "{bad:?}");
        }
    }
}
