//! Slack use cases: link a workspace (OAuth v2 with a sealed `state`), map the inbox to a channel,
//! unlink, and take an agent's reply in a conversation's thread (the Events API) as the agent's
//! message to the customer. The client, signatures and the outbound consumer are in
//! [`crate::channels::slack`].

use std::sync::Arc;

use chrono::Utc;
use netia_commands::{
    Account, AccountCommand, AccountError, Conversation, ConversationCommand, ConversationError, User,
};
use netia_events::conversation::Author;
use netia_events::user::Role;
use netia_events::{AccountId, ConversationId, InboxId, MessageId, Metadata, UserId};
use netia_projections::ConversationProjection;
use serde::Serialize;
use serde_json::Value;

use super::{App, AppError};
use crate::auth::{Auth, AuthError};
use crate::channels::oauth_state::{self as state, StateRefused};
use crate::channels::slack::client::{Channel, SlackClient, SlackError};
use crate::channels::slack::mrkdwn::from_mrkdwn;
use crate::channels::slack::outbound::token_context;
use crate::channels::slack::{SCOPES, SlackSettings};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// The deployment's Slack app and its client.
pub struct SlackApp {
    pub settings: SlackSettings,
    pub client: SlackClient,
}

impl SlackApp {
    pub fn new(settings: SlackSettings) -> Arc<Self> {
        let client = SlackClient::new(&settings.api_base_url);
        Arc::new(Self { settings, client })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlackUseError {
    /// `SLACK_*` is not configured on this deployment (404 for its routes).
    #[error("Slack is not configured on this deployment (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_SIGNING_SECRET)")]
    NotConfigured,
    #[error(transparent)]
    State(#[from] StateRefused),
    /// The admin who started the install is no longer an admin of the account.
    #[error("only an admin of the account can link Slack")]
    NotAdmin,
    #[error(transparent)]
    Slack(#[from] SlackError),
    /// The channel is not one the bot can see.
    #[error("channel {0} is not visible to the Netia bot; invite it to the channel first")]
    UnknownChannel(String),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    #[error(transparent)]
    Conversation(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The conversation refused the change a button asked for.
    #[error(transparent)]
    Change(#[from] super::conversations::ChangeError),
}

fn configured(app: &App) -> Result<&SlackApp, SlackUseError> {
    app.slack.as_deref().ok_or(SlackUseError::NotConfigured)
}

/// The OAuth callback URL, when the deployment knows its public URL.
fn redirect_uri(app: &App) -> Option<String> {
    app.public_url.as_ref().map(|base| format!("{base}/api/slack/oauth"))
}

/// The Slack authorize URL an admin opens to link a workspace (valid 10 minutes), and the nonce
/// the admin's browser must bring back to the callback (as the [`state::SLACK`] flow's cookie).
pub fn start_url(app: &App, account_id: AccountId, user_id: UserId) -> Result<(String, String), SlackUseError> {
    let slack = configured(app)?;
    let (sealed, nonce) = state::issue(state::SLACK, &app.sealer, account_id, user_id, Utc::now())?;
    let mut params = vec![
        ("client_id", slack.settings.client_id.clone()),
        ("scope", SCOPES.to_owned()),
        ("state", sealed),
    ];
    if let Some(uri) = redirect_uri(app) {
        params.push(("redirect_uri", uri));
    }
    let url = reqwest::Url::parse_with_params(&slack.settings.oauth_url, &params)
        .map_err(|_| SlackUseError::NotConfigured)?;
    Ok((url.to_string(), nonce))
}

/// Finishes the install: checks `state` against the browser's `cookie`, exchanges `code`
/// (`oauth.v2.access`), records the installation with the bot token sealed. Returns the account.
pub async fn finish_install(
    app: &App,
    code: &str,
    sealed_state: &str,
    cookie: Option<&str>,
) -> Result<AccountId, SlackUseError> {
    let slack = configured(app)?;
    let started = state::open(state::SLACK, &app.sealer, sealed_state, cookie, Utc::now())?;
    if !super::identity::is_admin_of(app, started.user_id, started.account_id).await? {
        return Err(SlackUseError::NotAdmin);
    }
    let secret = secrecy::ExposeSecret::expose_secret(&slack.settings.client_secret).to_owned();
    let installation = slack
        .client
        .oauth_access(&slack.settings.client_id, &secret, code, redirect_uri(app).as_deref())
        .await?;
    let sealed_bot_token = app
        .sealer
        .seal(installation.bot_token.as_bytes(), &token_context(started.account_id))?;
    let command = AccountCommand::InstallSlack {
        team_id: installation.team_id,
        team_name: installation.team_name,
        bot_user_id: installation.bot_user_id,
        sealed_bot_token,
        installed_by: started.user_id,
    };
    let meta = Metadata::new(netia_events::Actor::Agent {
        user_id: started.user_id,
    })
    .with_account(started.account_id);
    app.bus.execute::<Account>(started.account_id, command, &meta).await?;
    Ok(started.account_id)
}

/// What admins see of the account's Slack link (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SlackStatus {
    /// Whether this deployment has a Slack app at all.
    pub configured: bool,
    pub installed: bool,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    /// The account's inbox, to map to a channel.
    pub inbox_id: Option<String>,
    /// The channel each inbox posts to.
    pub mappings: Vec<SlackMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SlackMapping {
    pub inbox_id: String,
    pub channel_id: String,
}

pub async fn status(app: &App, account_id: AccountId) -> Result<SlackStatus, SlackUseError> {
    let account = app.state_of::<Account>(account_id).await?;
    Ok(SlackStatus {
        configured: app.slack.is_some(),
        installed: account.slack.is_some(),
        team_id: account.slack.as_ref().map(|s| s.team_id.clone()),
        team_name: account.slack.as_ref().map(|s| s.team_name.clone()),
        inbox_id: account.primary_inbox_id.map(|i| i.to_string()),
        mappings: account
            .slack_channels
            .iter()
            .map(|(inbox, channel)| SlackMapping {
                inbox_id: inbox.to_string(),
                channel_id: channel.clone(),
            })
            .collect(),
    })
}

pub async fn uninstall(app: &App, account_id: AccountId, meta: &Metadata) -> Result<(), SlackUseError> {
    app.bus
        .execute::<Account>(account_id, AccountCommand::UninstallSlack, meta)
        .await?;
    Ok(())
}

/// The bot token of a linked account, opened.
fn bot_token(app: &App, account_id: AccountId, account: &Account) -> Result<String, SlackUseError> {
    let installation = account
        .slack
        .as_ref()
        .ok_or(SlackUseError::Account(CommandError::Domain(
            AccountError::SlackNotInstalled,
        )))?;
    let bytes = app
        .sealer
        .open(&installation.sealed_bot_token, &token_context(account_id))?;
    Ok(String::from_utf8(bytes).map_err(|_| SealError::Unreadable)?)
}

/// The channels the bot can see (`conversations.list`).
pub async fn channels(app: &App, account_id: AccountId) -> Result<Vec<Channel>, SlackUseError> {
    let slack = configured(app)?;
    let account = app.state_of::<Account>(account_id).await?;
    let token = bot_token(app, account_id, &account)?;
    Ok(slack.client.channels(&token).await?)
}

/// Posts the conversations of `inbox_id` to `channel_id`, a channel the bot can see.
pub async fn map_channel(
    app: &App,
    account_id: AccountId,
    inbox_id: InboxId,
    channel_id: &str,
    meta: &Metadata,
) -> Result<(), SlackUseError> {
    let found = channels(app, account_id)
        .await?
        .into_iter()
        .find(|c| c.id == channel_id)
        .ok_or_else(|| SlackUseError::UnknownChannel(channel_id.to_owned()))?;
    let command = AccountCommand::MapSlackChannel {
        inbox_id,
        channel_id: found.id,
        channel_name: Some(found.name),
    };
    app.bus.execute::<Account>(account_id, command, meta).await?;
    Ok(())
}

/// What became of an event Slack sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A reply in a conversation's thread, now the agent's message (or already, for a retry).
    Posted { conversation_id: ConversationId },
    /// Not ours to take: another event type, a bot's or our own message, an edit, a message
    /// outside our threads, another workspace.
    Ignored(&'static str),
    /// The conversation refused it (an empty or too long message).
    Refused(ConversationError),
}

/// Takes one Events API `event_callback` envelope (already verified as Slack's).
pub async fn receive(app: &App, auth: &Auth, envelope: &Value) -> Result<Received, SlackUseError> {
    let slack = configured(app)?;
    let event = &envelope["event"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let (channel, thread_ts, ts, user) = (
        text(&event["channel"]),
        text(&event["thread_ts"]),
        text(&event["ts"]),
        text(&event["user"]),
    );
    if event["type"] != "message" {
        return Ok(Received::Ignored("not a message"));
    }
    // A plain reply, a reply also sent to the channel, a reply with a file: taken. Edits,
    // deletions, bots' messages and channel notices are not.
    let subtype = event["subtype"].as_str();
    if !matches!(subtype, None | Some("thread_broadcast" | "file_share"))
        || event.get("bot_id").is_some_and(|b| !b.is_null())
    {
        return Ok(Received::Ignored("an edit, a deletion, a notice or a bot's message"));
    }
    if thread_ts.is_empty() || thread_ts == ts || user.is_empty() {
        return Ok(Received::Ignored("not a reply in a thread"));
    }
    let Some((conversation_id, account_id)) = thread_of(app, &channel, &thread_ts).await? else {
        return Ok(Received::Ignored("not a thread of a Netia conversation"));
    };
    let (Ok(conversation_id), Ok(account_id)) = (
        conversation_id.parse::<ConversationId>(),
        account_id.parse::<AccountId>(),
    ) else {
        return Ok(Received::Ignored("not a thread of a Netia conversation"));
    };
    let account = app.state_of::<Account>(account_id).await?;
    let Some(installation) = &account.slack else {
        return Ok(Received::Ignored("Slack is no longer linked to the account"));
    };
    if envelope["team_id"].as_str() != Some(installation.team_id.as_str()) {
        return Ok(Received::Ignored("another workspace"));
    }
    if user == installation.bot_user_id {
        return Ok(Received::Ignored("our own message"));
    }
    let token = bot_token(app, account_id, &account)?;
    let author = author_of(app, auth, slack, &token, account_id, &user).await?;
    let event_id = envelope["event_id"]
        .as_str()
        .map_or_else(|| format!("ts:{ts}"), str::to_owned);
    let command = ConversationCommand::ReceiveSlackMessage {
        message_id: MessageId::new(),
        author: author.clone(),
        body: from_mrkdwn(&text(&event["text"])),
        slack_event_id: event_id,
        slack_ts: Some(ts),
        at: Utc::now(),
    };
    let actor = match author {
        Author::Agent { user_id } => netia_events::Actor::Agent { user_id },
        _ => netia_events::Actor::System {
            component: "slack".into(),
        },
    };
    let meta = Metadata::new(actor).with_account(account_id);
    match app.bus.execute::<Conversation>(conversation_id, command, &meta).await {
        Ok(_) => Ok(Received::Posted { conversation_id }),
        // Empty (a file alone) or too long: Slack's retries would not change that.
        Err(CommandError::Domain(refusal)) => {
            tracing::info!(conversation = %conversation_id, %refusal, "Slack reply not taken");
            Ok(Received::Refused(refusal))
        }
        Err(e) => Err(e.into()),
    }
}

/// The conversation (and account) of a Slack thread; when the read model does not know it yet,
/// once more after it has caught up with the log (a reply right after the parent was posted).
async fn thread_of(app: &App, channel: &str, thread_ts: &str) -> Result<Option<(String, String)>, SlackUseError> {
    for attempt in 0..2 {
        if attempt == 1 {
            app.caught_up_with_log("conversation").await;
        }
        let mut conn = app.db.acquire().await.map_err(AppError::from)?;
        let found = ConversationProjection::by_slack_thread(&mut conn, channel, thread_ts)
            .await
            .map_err(AppError::from)?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Who Slack user `user` is for `account_id`: the enabled agent with the email Slack has for them
/// (`users.info`), else an external agent under the name Slack shows for them.
async fn author_of(
    app: &App,
    auth: &Auth,
    slack: &SlackApp,
    token: &str,
    account_id: AccountId,
    user: &str,
) -> Result<Author, SlackUseError> {
    let member = slack.client.user(token, user).await?;
    if let Some(email) = &member.email
        && let Some(user_id) = agent_by_email(app, auth, account_id, email).await?
    {
        return Ok(Author::Agent { user_id });
    }
    Ok(Author::ExternalAgent {
        name: member.name,
        channel_user_id: user.to_owned(),
    })
}

/// The enabled agent of `account_id` whose email is `email` (case-insensitive).
async fn agent_by_email(
    app: &App,
    auth: &Auth,
    account_id: AccountId,
    email: &str,
) -> Result<Option<UserId>, SlackUseError> {
    for id in auth.users(account_id).await? {
        let Ok(user_id) = id.parse::<UserId>() else { continue };
        let user = app.state_of::<User>(user_id).await?;
        if !user.disabled && user.account_id == Some(account_id) && user.email.eq_ignore_ascii_case(email) {
            return Ok(Some(user_id));
        }
    }
    Ok(None)
}

/// What a button on a parent message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    /// The conversation changed (or already was so), and the parent message says so now.
    Done { conversation_id: ConversationId },
    /// Not a button of ours, or a message that is not a conversation's parent.
    Ignored(&'static str),
    /// The Slack user is not an agent of the account who may change conversations.
    NotAllowed,
}

/// Takes one interactivity payload (`block_actions`, already verified as Slack's): close, reopen or
/// assign-to-me on a conversation's parent message, as the agent the Slack user is; then the parent
/// message shows the new state (`chat.update`).
pub async fn act(app: &App, auth: &Auth, payload: &Value) -> Result<Acted, SlackUseError> {
    use crate::channels::slack::outbound::{ASSIGN_ME, CLOSE, REOPEN, parent_blocks};
    let slack = configured(app)?;
    if payload["type"] != "block_actions" {
        return Ok(Acted::Ignored("not a button"));
    }
    let action = &payload["actions"][0];
    let action_id = action["action_id"].as_str().unwrap_or_default();
    let Ok(conversation_id) = action["value"].as_str().unwrap_or_default().parse::<ConversationId>() else {
        return Ok(Acted::Ignored("not a conversation's button"));
    };
    let conversation = app.state_of::<Conversation>(conversation_id).await?;
    let (Some(account_id), Some((channel, thread_ts))) = (conversation.account_id, conversation.slack_thread.clone())
    else {
        return Ok(Acted::Ignored("not a mirrored conversation"));
    };
    // The button must be on that conversation's own parent, in the account's workspace.
    let account = app.state_of::<Account>(account_id).await?;
    let same_team = account
        .slack
        .as_ref()
        .is_some_and(|s| payload["team"]["id"].as_str() == Some(s.team_id.as_str()));
    if !same_team
        || payload["channel"]["id"].as_str() != Some(channel.as_str())
        || payload["message"]["ts"].as_str() != Some(thread_ts.as_str())
    {
        return Ok(Acted::Ignored("not the conversation's parent message"));
    }
    let token = bot_token(app, account_id, &account)?;
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    // Only agents may press the buttons: an external agent may answer, not close or assign.
    let Author::Agent { user_id } = author_of(app, auth, slack, &token, account_id, user).await? else {
        return Ok(Acted::NotAllowed);
    };
    let agent_state = app.state_of::<User>(user_id).await?;
    if matches!(agent_state.role, None | Some(Role::Viewer)) {
        return Ok(Acted::NotAllowed);
    }
    let changes = match action_id {
        CLOSE => super::conversations::Changes {
            status: Some(super::conversations::StatusChange::Closed),
            ..Default::default()
        },
        REOPEN => super::conversations::Changes {
            status: Some(super::conversations::StatusChange::Open),
            ..Default::default()
        },
        ASSIGN_ME => super::conversations::Changes {
            assignee: Some(Some(user_id)),
            ..Default::default()
        },
        _ => return Ok(Acted::Ignored("not a button of ours")),
    };
    let meta = Metadata::new(netia_events::Actor::Agent { user_id }).with_account(account_id);
    let events = super::conversations::change(app, account_id, conversation_id, changes, &meta).await?;
    app.caught_up("inbox", &events).await;
    let now = app.state_of::<Conversation>(conversation_id).await?;
    let who = if agent_state.display_name.is_empty() {
        agent_state.email.clone()
    } else {
        agent_state.display_name.clone()
    };
    let status = match action_id {
        CLOSE => format!("Closed by {who}"),
        REOPEN => format!("Reopened by {who}"),
        _ => format!("Assigned to {who}"),
    };
    let status = format!(
        "{status} · {}",
        match now.status {
            netia_commands::ConversationStatus::Closed => "closed",
            netia_commands::ConversationStatus::Snoozed { .. } => "snoozed",
            netia_commands::ConversationStatus::Open => "open",
        }
    );
    let text = payload["message"]["blocks"][0]["text"]["text"]
        .as_str()
        .or_else(|| payload["message"]["text"].as_str())
        .unwrap_or("Conversation")
        .to_owned();
    let blocks = parent_blocks(&text, conversation_id, Some(&status));
    slack
        .client
        .update_message(&token, &channel, &thread_ts, &text, &blocks)
        .await?;
    Ok(Acted::Done { conversation_id })
}
