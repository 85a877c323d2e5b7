//! The Slack Web API client: `POST <SLACK_API_BASE_URL>/<method>` with the bot token as a bearer and
//! a JSON body (form-encoded for `oauth.v2.access`, as Slack documents it). Every answer is
//! `{"ok": true, …}` or `{"ok": false, "error": "<code>"}`; HTTP 429 carries `Retry-After` (seconds).

use std::time::Duration;

use netia_events::conversation::EXTERNAL_NAME_MAX;
use serde_json::{Value, json};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `ok: false` with this error code (e.g. `channel_not_found`, `invalid_auth`).
    #[error("Slack refused {method}: {code}")]
    Api { method: &'static str, code: String },
    /// HTTP 429: wait this long before calling again.
    #[error("Slack rate-limited {method}; retry after {retry_after:?}")]
    RateLimited {
        method: &'static str,
        retry_after: Duration,
    },
    /// HTTP 5xx, or an answer that is not Slack's JSON.
    #[error("Slack answered {method} with {status}")]
    Server { method: &'static str, status: u16 },
    /// Slack could not be reached, or did not answer in time.
    #[error("Slack could not be reached for {method}: {reason}")]
    Transport { method: &'static str, reason: String },
}

impl SlackError {
    /// Worth another attempt later (rate limit, server error, network).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SlackError::Api { .. })
    }
}

/// What `oauth.v2.access` returns that Netia keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub team_id: String,
    pub team_name: String,
    pub bot_user_id: String,
    /// `xoxb-…`: seal it before it goes anywhere.
    pub bot_token: String,
}

/// A channel the bot can see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub is_private: bool,
    /// Whether the bot is in it (it must be invited to post there).
    pub is_member: bool,
}

#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
}

impl SlackClient {
    /// A client of the Web API at `base` (`https://slack.com/api`).
    pub fn new(base: &str) -> Self {
        Self {
            http: super::super::vendor_http(CALL_TIMEOUT),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn answer(
        method: &'static str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, SlackError> {
        let response = sent.map_err(|e| SlackError::Transport {
            method,
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            },
        })?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(SlackError::RateLimited {
                method,
                retry_after: Duration::from_secs(retry_after.min(300)),
            });
        }
        if !status.is_success() {
            return Err(SlackError::Server {
                method,
                status: status.as_u16(),
            });
        }
        let body: Value = response.json().await.map_err(|_| SlackError::Server {
            method,
            status: status.as_u16(),
        })?;
        if body["ok"] == true {
            Ok(body)
        } else {
            Err(SlackError::Api {
                method,
                code: body["error"].as_str().unwrap_or("unknown_error").to_owned(),
            })
        }
    }

    /// Calls `method` with `token` and a JSON `body`.
    pub async fn call(&self, method: &'static str, token: &str, body: &Value) -> Result<Value, SlackError> {
        let sent = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await;
        Self::answer(method, sent).await
    }

    /// Calls a read method (`users.info`, `conversations.list`) with `token` and form `params`:
    /// Slack takes JSON bodies only for (most) write methods.
    pub async fn read(&self, method: &'static str, token: &str, params: &[(&str, &str)]) -> Result<Value, SlackError> {
        let sent = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .form(params)
            .send()
            .await;
        Self::answer(method, sent).await
    }

    /// Exchanges an OAuth `code` for the workspace's bot token (`oauth.v2.access`).
    pub async fn oauth_access(
        &self,
        client_id: &str,
        client_secret: &str,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<Installation, SlackError> {
        let mut form = vec![
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("code", code),
        ];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let sent = self
            .http
            .post(format!("{}/oauth.v2.access", self.base))
            .form(&form)
            .send()
            .await;
        let body = Self::answer("oauth.v2.access", sent).await?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(Installation {
            team_id: text(&body["team"]["id"]),
            team_name: text(&body["team"]["name"]),
            bot_user_id: text(&body["bot_user_id"]),
            bot_token: text(&body["access_token"]),
        })
    }

    /// The public and private channels the bot can see (`conversations.list`, every page).
    pub async fn channels(&self, token: &str) -> Result<Vec<Channel>, SlackError> {
        let mut channels = Vec::new();
        let mut cursor = String::new();
        for _ in 0..20 {
            let mut params = vec![
                ("types", "public_channel,private_channel"),
                ("exclude_archived", "true"),
                ("limit", "200"),
            ];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let page = self.read("conversations.list", token, &params).await?;
            for c in page["channels"].as_array().into_iter().flatten() {
                channels.push(Channel {
                    id: c["id"].as_str().unwrap_or_default().to_owned(),
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    is_private: c["is_private"].as_bool().unwrap_or(false),
                    is_member: c["is_member"].as_bool().unwrap_or(false),
                });
            }
            cursor = page["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if cursor.is_empty() {
                break;
            }
        }
        Ok(channels)
    }

    /// Posts `text` (mrkdwn) to `channel`, in `thread_ts`'s thread if given, with Block Kit
    /// `blocks` if given (`text` is then the notification's fallback); the new message's `ts`.
    pub async fn post_message(
        &self,
        token: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
        blocks: Option<&Value>,
    ) -> Result<String, SlackError> {
        let mut body = json!({"channel": channel, "text": text, "unfurl_links": false});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.clone();
        }
        let answer = self.call("chat.postMessage", token, &body).await?;
        Ok(answer["ts"].as_str().unwrap_or_default().to_owned())
    }

    /// Replaces message `ts` of `channel` (`chat.update`) with `text` and `blocks`.
    pub async fn update_message(
        &self,
        token: &str,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks});
        self.call("chat.update", token, &body).await.map(|_| ())
    }

    /// Slack user `user` (`users.info`): their email address (needs `users:read.email`) and the
    /// name Slack shows for them.
    pub async fn user(&self, token: &str, user: &str) -> Result<SlackUser, SlackError> {
        let answer = self.read("users.info", token, &[("user", user)]).await?;
        Ok(SlackUser::from_users_info(user, &answer["user"]))
    }
}

/// A Slack workspace member, as `users.info` describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    /// `profile.email`; absent without the `users:read.email` scope or for bots.
    pub email: Option<String>,
    /// The name Slack shows: `profile.display_name`, else `profile.real_name`, else the
    /// `name` handle, else the user id; trimmed, control characters dropped, at most
    /// [`EXTERNAL_NAME_MAX`] characters.
    pub name: String,
}

impl SlackUser {
    fn from_users_info(id: &str, user: &Value) -> Self {
        let profile = &user["profile"];
        let name = [
            &profile["display_name"],
            &profile["real_name"],
            &user["real_name"],
            &user["name"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .map(|name| name.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|name| name.trim().chars().take(EXTERNAL_NAME_MAX).collect::<String>())
        .find(|name| !name.trim().is_empty())
        .map_or_else(|| id.to_owned(), |name| name.trim_end().to_owned());
        Self {
            email: profile["email"].as_str().map(str::to_owned),
            name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_user_is_named_as_slack_shows_them() {
        let user = json!({"name": "ada.l", "real_name": "Ada L", "profile": {"display_name": "", "real_name": "Ada Lovelace", "email": "ada@example.com"}});
        let found = SlackUser::from_users_info("U1", &user);
        assert_eq!(found.name, "Ada Lovelace");
        assert_eq!(found.email.as_deref(), Some("ada@example.com"));
        let shown = json!({"profile": {"display_name": " Ada\u{7} ", "real_name": "Ada Lovelace"}});
        assert_eq!(SlackUser::from_users_info("U1", &shown).name, "Ada");
    }

    #[test]
    fn a_slack_user_without_a_name_is_their_id_and_long_names_are_cut() {
        assert_eq!(SlackUser::from_users_info("U1", &json!({"profile": {}})).name, "U1");
        let long = "n".repeat(200);
        let user = json!({"profile": {"real_name": long}});
        assert_eq!(
            SlackUser::from_users_info("U1", &user).name.chars().count(),
            EXTERNAL_NAME_MAX
        );
    }
}
