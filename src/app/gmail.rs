//! Gmail use cases: link a mailbox (Google OAuth 2.0 with a sealed `state` bound to the admin's
//! browser; the refresh token sealed), show and unlink it, call the Gmail API with a fresh access
//! token (refreshed before it expires, and once more when Google answers 401), and take one of the
//! mailbox's messages: one conversation per Gmail thread (source `gmail`), the customer found or
//! created by `From`, the same Gmail message id (or Message-ID) twice one message. The sync loop
//! and the outbound consumer are in [`crate::channels::gmail`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use netia_commands::{Account, AccountCommand, AccountError, Conversation, ConversationError};
use netia_events::conversation::{GmailMessage, Source};
use netia_events::{AccountId, ConversationId, Metadata, UserId};
use netia_projections::ConversationProjection;
use secrecy::SecretString;
use serde::Serialize;

use super::inbound_email::{Filing, InboundEmailError};
use super::{App, AppError};
use crate::channels::email::parse;
use crate::channels::gmail::GmailSettings;
use crate::channels::gmail::client::{GoogleClient, GoogleError, Profile, RawMessage};
use crate::channels::oauth_state::{self as state, StateRefused};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// Labels of messages that are not the customer's mail to the inbox.
const NOT_INBOUND: [&str; 5] = ["SENT", "DRAFT", "SPAM", "TRASH", "CHAT"];

/// An access token is refreshed this long before Google says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The deployment's Google client, and the access tokens it holds (per account, in memory).
pub struct GmailApp {
    pub client: GoogleClient,
    /// Account → (the sealed refresh token it came from, access token, good until).
    tokens: Mutex<HashMap<AccountId, (String, SecretString, Instant)>>,
}

impl GmailApp {
    pub fn new(settings: GmailSettings) -> Arc<Self> {
        Arc::new(Self {
            client: GoogleClient::new(settings),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, account_id: AccountId, sealed: &str) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match tokens.get(&account_id) {
            Some((from, token, until)) if from == sealed && Instant::now() < *until => Some(token.clone()),
            _ => None,
        }
    }

    fn keep(&self, account_id: AccountId, sealed: &str, token: &str, expires_in: u64) {
        // Google says an hour; anything beyond a day is not believed.
        let lifetime = Duration::from_secs(expires_in.min(86_400)).saturating_sub(EXPIRY_MARGIN);
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.insert(
            account_id,
            (
                sealed.to_owned(),
                SecretString::from(token.to_owned()),
                Instant::now() + lifetime,
            ),
        );
    }

    fn forget(&self, account_id: AccountId) {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.remove(&account_id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GmailUseError {
    /// `GOOGLE_CLIENT_ID`/`GOOGLE_CLIENT_SECRET` are not set (404 for the routes).
    #[error("Gmail is not configured on this deployment (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)")]
    NotConfigured,
    /// The OAuth redirect needs the deployment's public URL.
    #[error("NETIA_PUBLIC_URL must be set to link Gmail (Google redirects the browser to it)")]
    NoPublicUrl,
    /// The account has no linked mailbox.
    #[error("Gmail is not linked")]
    NotLinked,
    #[error(transparent)]
    State(#[from] StateRefused),
    /// The admin who started the link is no longer an admin of the account.
    #[error("only an admin of the account can link Gmail")]
    NotAdmin,
    /// The mailbox is another Netia account's, or Google gave no refresh token.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    #[error(transparent)]
    Conversation(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    Email(#[from] InboundEmailError),
    #[error(transparent)]
    App(#[from] AppError),
}

fn configured(app: &App) -> Result<&GmailApp, GmailUseError> {
    app.gmail.as_deref().ok_or(GmailUseError::NotConfigured)
}

fn redirect_uri(app: &App) -> Result<String, GmailUseError> {
    let base = app.public_url.as_ref().ok_or(GmailUseError::NoPublicUrl)?;
    Ok(format!("{base}/api/gmail/oauth"))
}

fn token_context(account_id: AccountId) -> String {
    format!("gmail-refresh-token:{account_id}")
}

/// Google's consent URL an admin opens to link a mailbox (valid 10 minutes), and the nonce the
/// admin's browser must bring back to the callback (as the [`state::GMAIL`] flow's cookie).
pub fn start_url(app: &App, account_id: AccountId, user_id: UserId) -> Result<(String, String), GmailUseError> {
    let gmail = configured(app)?;
    let redirect = redirect_uri(app)?;
    let (sealed, nonce) = state::issue(state::GMAIL, &app.sealer, account_id, user_id, Utc::now())?;
    Ok((gmail.client.authorize_url(&redirect, &sealed), nonce))
}

/// Finishes the link: checks `state` against the browser's `cookie`, exchanges `code`, reads the
/// mailbox's profile, records the link (refresh token sealed; the sync starts at the mailbox's
/// current history id). Returns the account.
pub async fn finish_link(
    app: &App,
    code: &str,
    sealed_state: &str,
    cookie: Option<&str>,
) -> Result<AccountId, GmailUseError> {
    let gmail = configured(app)?;
    let started = state::open(state::GMAIL, &app.sealer, sealed_state, cookie, Utc::now())?;
    if !super::identity::is_admin_of(app, started.user_id, started.account_id).await? {
        return Err(GmailUseError::NotAdmin);
    }
    let tokens = gmail.client.exchange(code, &redirect_uri(app)?).await?;
    if !tokens.grants_all() {
        return Err(GmailUseError::Refused(
            "Netia needs both reading and sending mail; link Gmail again and allow both".into(),
        ));
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        return Err(GmailUseError::Refused(
            "Google gave no refresh token; remove Netia's access in your Google account and link again".into(),
        ));
    };
    let profile = gmail.client.profile(&tokens.access_token).await?;
    let history_id: u64 = profile
        .history_id
        .parse()
        .map_err(|_| GoogleError::Server { status: 200 })?;
    let address = profile.email_address.trim().to_lowercase();
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let holder = ConversationProjection::by_gmail_mailbox(&mut conn, &address)
        .await
        .map_err(AppError::from)?;
    drop(conn);
    if holder.is_some_and(|holder| holder != started.account_id.to_string()) {
        return Err(GmailUseError::Refused(format!(
            "{address} is linked to another Netia account"
        )));
    }
    let sealed = app
        .sealer
        .seal(refresh_token.as_bytes(), &token_context(started.account_id))?;
    gmail.keep(started.account_id, &sealed, &tokens.access_token, tokens.expires_in);
    let command = AccountCommand::LinkGmail {
        email_address: address,
        sealed_refresh_token: sealed,
        history_id,
        linked_by: started.user_id,
    };
    let meta = Metadata::new(netia_events::Actor::Agent {
        user_id: started.user_id,
    })
    .with_account(started.account_id);
    app.bus.execute::<Account>(started.account_id, command, &meta).await?;
    app.caught_up_with_log("conversation").await;
    Ok(started.account_id)
}

/// What admins see of the account's Gmail link (never a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GmailStatus {
    /// Whether this deployment has a Google client at all.
    pub configured: bool,
    pub linked: bool,
    pub email_address: Option<String>,
    /// Synced up to this Gmail `historyId`.
    pub history_id: Option<u64>,
}

pub async fn status(app: &App, account_id: AccountId) -> Result<GmailStatus, GmailUseError> {
    let account = app.state_of::<Account>(account_id).await?;
    let link = account.gmail.as_ref();
    Ok(GmailStatus {
        configured: app.gmail.is_some(),
        linked: link.is_some(),
        email_address: link.map(|g| g.email_address.clone()),
        history_id: link.map(|g| g.history_id),
    })
}

/// The linked mailbox's profile, asked of Gmail now.
pub async fn profile(app: &App, account_id: AccountId) -> Result<Profile, GmailUseError> {
    let gmail = configured(app)?;
    authorized(
        app,
        account_id,
        |token| async move { gmail.client.profile(&token).await },
    )
    .await
}

/// Unlinks the mailbox, and revokes Netia's grant at Google (best effort: a failure is logged;
/// the sealed token stays unusable without the deployment's client secret).
pub async fn unlink(app: &App, account_id: AccountId, meta: &Metadata) -> Result<(), GmailUseError> {
    let account = app.state_of::<Account>(account_id).await?;
    app.bus
        .execute::<Account>(account_id, AccountCommand::UnlinkGmail, meta)
        .await?;
    if let Some(gmail) = app.gmail.as_deref() {
        gmail.forget(account_id);
        if let Some(link) = &account.gmail {
            let revoked = match app.sealer.open(&link.sealed_refresh_token, &token_context(account_id)) {
                Ok(token) => {
                    let token = SecretString::from(String::from_utf8_lossy(&token).into_owned());
                    gmail.client.revoke(&token).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = revoked {
                tracing::warn!(account = %account_id, error = %e, "could not revoke the Gmail grant at Google");
            }
        }
    }
    app.caught_up_with_log("conversation").await;
    Ok(())
}

/// An access token of the account's mailbox: the one held while it lives, else a new one from
/// the refresh token (`fresh` asks for a new one whatever is held).
async fn access_token(app: &App, account_id: AccountId, fresh: bool) -> Result<String, GmailUseError> {
    let gmail = configured(app)?;
    let account = app.state_of::<Account>(account_id).await?;
    let link = account.gmail.as_ref().ok_or(GmailUseError::NotLinked)?;
    if !fresh && let Some(token) = gmail.cached(account_id, &link.sealed_refresh_token) {
        return Ok(secrecy::ExposeSecret::expose_secret(&token).to_owned());
    }
    let refresh = app
        .sealer
        .open(&link.sealed_refresh_token, &token_context(account_id))?;
    let refresh = SecretString::from(String::from_utf8(refresh).map_err(|_| SealError::Unreadable)?);
    let tokens = gmail.client.refresh(&refresh).await?;
    gmail.keep(
        account_id,
        &link.sealed_refresh_token,
        &tokens.access_token,
        tokens.expires_in,
    );
    Ok(tokens.access_token)
}

/// Runs `call` with an access token of the account's mailbox; when Google answers 401 (expired or
/// revoked early), once more with a freshly refreshed one.
pub async fn authorized<T, F, Fut>(app: &App, account_id: AccountId, call: F) -> Result<T, GmailUseError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, GoogleError>>,
{
    let token = access_token(app, account_id, false).await?;
    match call(token).await {
        Err(GoogleError::Unauthorized) => {
            tracing::info!(account = %account_id, "Gmail refused the access token; refreshing it");
            let token = access_token(app, account_id, true).await?;
            Ok(call(token).await?)
        }
        other => Ok(other?),
    }
}

/// What became of one of the mailbox's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GmailTaken {
    /// In conversation `conversation_id` (or already was).
    Taken { conversation_id: ConversationId },
    /// Not the customer's mail (sent, draft, spam, an auto-reply, the mailbox's own): skipped.
    Skipped(&'static str),
}

/// Takes `message` of the account's mailbox `mailbox` (its address). A message the rules refuse
/// (a sender address or Message-ID Netia does not take, a body too long) is skipped and logged:
/// one such email never stops the mailbox's sync.
pub async fn take(
    app: &App,
    account_id: AccountId,
    mailbox: &str,
    message: &RawMessage,
) -> Result<GmailTaken, GmailUseError> {
    use super::inbound_email::InboundEmailError as E;
    match take_checked(app, account_id, mailbox, message).await {
        Err(
            e @ (GmailUseError::Conversation(CommandError::Domain(_))
            | GmailUseError::Email(
                E::Parse(_) | E::Customer(CommandError::Domain(_)) | E::Conversation(CommandError::Domain(_)),
            )),
        ) => {
            metrics::counter!("netia_gmail_messages_refused_total").increment(1);
            tracing::warn!(account = %account_id, gmail_id = %message.id, error = %e, "Gmail message refused; skipped");
            Ok(GmailTaken::Skipped("refused by the conversation rules"))
        }
        other => other,
    }
}

async fn take_checked(
    app: &App,
    account_id: AccountId,
    mailbox: &str,
    message: &RawMessage,
) -> Result<GmailTaken, GmailUseError> {
    if message.label_ids.iter().any(|l| NOT_INBOUND.contains(&l.as_str())) {
        return Ok(GmailTaken::Skipped("not inbound mail"));
    }
    let email = match parse::parse(&message.raw) {
        Ok(email) => email,
        Err(e) => {
            tracing::info!(account = %account_id, gmail_id = %message.id, error = %e, "Gmail message not taken");
            return Ok(GmailTaken::Skipped("not a readable email"));
        }
    };
    if let Some(reason) = email.automatic {
        return Ok(GmailTaken::Skipped(reason));
    }
    if email.from_address == mailbox {
        return Ok(GmailTaken::Skipped("written by the mailbox itself"));
    }
    let account = app.state_of::<Account>(account_id).await?;
    let inbox_id = account.primary_inbox_id.ok_or(AppError::NotFound("account"))?;
    let mut conversation_id = ConversationId(super::derived_id(account_id, "gmail-thread", &message.thread_id));
    let mut conversation = app.state_of::<Conversation>(conversation_id).await?;
    if conversation.account_id.is_none() {
        // A thread Gmail split off (it threads a reply only when the subject matches): found by
        // the Message-IDs it answers, as inbound email is.
        if let Some((threaded, _)) = super::inbound_email::thread_of(app, account_id, &email.replied_to).await? {
            conversation_id = threaded;
            conversation = app.state_of::<Conversation>(conversation_id).await?;
        }
    }
    let customer_id = match conversation.customer_id {
        Some(customer_id) => customer_id,
        None => super::inbound_email::customer_of(app, account_id, &email).await?,
    };
    let place = Filing {
        account_id,
        inbox_id,
        conversation_id,
        customer_id,
        source: Source::Gmail,
        create: conversation.account_id.is_none(),
    };
    let ids = GmailMessage {
        id: message.id.clone(),
        thread_id: message.thread_id.clone(),
    };
    super::inbound_email::file(app, place, email, &message.raw, Some(ids)).await?;
    Ok(GmailTaken::Taken { conversation_id })
}
