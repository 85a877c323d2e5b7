//! The Twilio REST client: `{TWILIO_API_BASE_URL}/2010-04-01/Accounts/{AccountSid}/…` with HTTP
//! basic auth (the account SID and auth token) and form-encoded bodies; answers are JSON, errors
//! `{"code": <Twilio error code>, "message": "…", "status": <HTTP status>}`. Source: Twilio,
//! "Messages resource" and "API responses".

use std::time::Duration;

use serde::Deserialize;

/// Twilio's REST API, unless `TWILIO_API_BASE_URL` says otherwise.
pub const API_BASE_URL: &str = "https://api.twilio.com";

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest body one Messages API call takes, in characters (Twilio error 21617 beyond).
pub const MAX_SMS_CHARS: usize = 1_600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// Twilio refused the request (4xx other than 429): `code` is Twilio's error code (e.g. 21211,
    /// an invalid `To` number; 20003, wrong credentials).
    #[error("Twilio refused the request ({status}, code {code}): {message}")]
    Refused { status: u16, code: i64, message: String },
    /// HTTP 429 or 5xx, or an answer that is not Twilio's JSON: worth another attempt.
    #[error("Twilio answered {status}")]
    Server { status: u16 },
    /// Twilio could not be reached, or did not answer in time.
    #[error("Twilio could not be reached: {0}")]
    Transport(String),
}

impl TwilioError {
    /// Worth another attempt later (rate limit, server error, network).
    pub fn is_transient(&self) -> bool {
        !matches!(self, TwilioError::Refused { .. })
    }
}

/// The credentials of one Twilio account.
#[derive(Clone)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
}

impl std::fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// What the Messages API answers about a created message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    /// `SM…`.
    pub sid: String,
    /// Usually `queued` (or `accepted` with a messaging service).
    pub status: String,
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
}

impl TwilioClient {
    /// A client of the REST API at `base` (`https://api.twilio.com`).
    pub fn new(base: &str) -> Self {
        Self {
            http: super::super::vendor_http(CALL_TIMEOUT),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, credentials: &TwilioCredentials, rest: &str) -> String {
        format!("{}/2010-04-01/Accounts/{}{rest}", self.base, credentials.account_sid)
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, TwilioError> {
        let response = sent.map_err(|e| {
            TwilioError::Transport(if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            })
        })?;
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(TwilioError::Server { status });
        }
        let body: serde_json::Value = response.json().await.map_err(|_| TwilioError::Server { status })?;
        if !(200..300).contains(&status) {
            return Err(TwilioError::Refused {
                status,
                code: body["code"].as_i64().unwrap_or_default(),
                message: body["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        serde_json::from_value(body).map_err(|_| TwilioError::Server { status })
    }

    /// Checks `credentials` (`GET /Accounts/{sid}.json`): `Refused` with code 20003 when Twilio
    /// does not know them.
    pub async fn check(&self, credentials: &TwilioCredentials) -> Result<(), TwilioError> {
        let sent = self
            .http
            .get(self.url(credentials, ".json"))
            .basic_auth(&credentials.account_sid, Some(&credentials.auth_token))
            .send()
            .await;
        Self::answer::<serde_json::Value>(sent).await.map(|_| ())
    }

    /// Sends `body` (at most [`MAX_SMS_CHARS`] characters) from `from` to `to` (`POST
    /// /Accounts/{sid}/Messages.json`); Twilio will POST the message's statuses to
    /// `status_callback`.
    pub async fn send(
        &self,
        credentials: &TwilioCredentials,
        from: &str,
        to: &str,
        body: &str,
        status_callback: Option<&str>,
    ) -> Result<SentMessage, TwilioError> {
        let mut form = vec![("To", to), ("From", from), ("Body", body)];
        if let Some(url) = status_callback {
            form.push(("StatusCallback", url));
        }
        let sent = self
            .http
            .post(self.url(credentials, "/Messages.json"))
            .basic_auth(&credentials.account_sid, Some(&credentials.auth_token))
            .form(&form)
            .send()
            .await;
        Self::answer(sent).await
    }
}

/// `body` cut into parts of at most [`MAX_SMS_CHARS`] characters, at a line break or space when
/// one is near the end of a part.
pub fn parts(body: &str) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + MAX_SMS_CHARS).min(chars.len());
        if end < chars.len()
            && let Some(space) = chars[start..end].iter().rposition(|c| c.is_whitespace())
            && space > MAX_SMS_CHARS / 2
        {
            end = start + space + 1;
        }
        parts.push(chars[start..end].iter().collect::<String>().trim_end().to_owned());
        start = end;
    }
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_body_is_one_part_and_a_long_one_is_cut_at_a_space() {
        assert_eq!(parts("Hello"), vec!["Hello"]);
        let long = format!("{} {}", "a".repeat(1_500), "b".repeat(500));
        let cut = parts(&long);
        assert_eq!(cut, vec!["a".repeat(1_500), "b".repeat(500)]);
        let unbroken = "c".repeat(3_300);
        let cut = parts(&unbroken);
        assert_eq!(
            cut.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![1_600, 1_600, 100]
        );
    }
}
