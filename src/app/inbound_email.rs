//! Inbound email use cases: each inbox's address (`<local part>@<INBOUND_EMAIL_DOMAIN>`, for the
//! built-in SMTP receiver) and webhook token (`POST /api/email/inbound/<token>`, for forwarding
//! services), and taking a received message: parsed ([`crate::channels::email::parse`]), auto-replies
//! and bounces dropped, threaded by `In-Reply-To`/`References` against every Message-ID the
//! account sent or received, else a new conversation (source `email`) of the customer with the
//! `From` address; the same Message-ID twice is one message.

use chrono::Utc;
use netia_commands::{
    Account, AccountCommand, AccountError, Conversation, ConversationCommand, ConversationError, Customer,
    CustomerCommand, CustomerError,
};
use netia_events::conversation::{Author, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, Metadata};
use netia_projections::{ConversationProjection, CustomerProjection};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{App, AppError};
use crate::channels::email::parse::{self, ParseError};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// The largest message taken, in bytes (a 2 MB HTML email with its encoding fits; attachments
/// beyond are the sender's to host).
pub const MAX_EMAIL_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InboundEmailError {
    /// No inbox has this token or address.
    #[error("no inbox receives email here")]
    UnknownInbox,
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    #[error(transparent)]
    Conversation(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    Customer(#[from] CommandError<CustomerError>),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Where an inbox takes email (`GET /api/email/inbound`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundAddress {
    pub inbox_id: String,
    /// `<local part>@<INBOUND_EMAIL_DOMAIN>`; `null` without `INBOUND_EMAIL_DOMAIN`.
    pub address: Option<String>,
    pub local_part: String,
    /// `<NETIA_PUBLIC_URL>/api/email/inbound/<token>`: where a forwarding service posts the raw
    /// message; `null` without `NETIA_PUBLIC_URL` (the path is then `webhook_path`).
    pub webhook_url: Option<String>,
    pub webhook_path: String,
}

/// A new token, as hex (64 characters), and its SHA-256.
fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    crate::secrets::fill_random(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = token_sha256(&token);
    (token, hash)
}

/// The SHA-256 of a token, hex: how the read model knows it.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_context(account_id: AccountId, inbox_id: InboxId) -> String {
    format!("inbound-email-token:{account_id}:{inbox_id}")
}

/// A local part for a new address: the account's name as a slug and six random hex digits
/// (`acme-bikes-3f9a1c`).
fn new_local_part(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let mut random = [0u8; 3];
    crate::secrets::fill_random(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    if slug.is_empty() {
        format!("inbox-{suffix}")
    } else {
        format!("{slug}-{suffix}")
    }
}

/// Issues the primary inbox a new token (and its address, the first time).
async fn issue(app: &App, account_id: AccountId, account: &Account, meta: &Metadata) -> Result<(), InboundEmailError> {
    let inbox_id = account.primary_inbox_id.ok_or(AppError::NotFound("account"))?;
    let (token, hash) = new_token();
    let command = AccountCommand::IssueInboundEmailAddress {
        inbox_id,
        local_part: new_local_part(&account.name),
        token_sha256: hash,
        sealed_token: app
            .sealer
            .seal(token.as_bytes(), &token_context(account_id, inbox_id))?,
    };
    app.bus.execute::<Account>(account_id, command, meta).await?;
    app.caught_up_with_log("conversation").await;
    Ok(())
}

/// The primary inbox's inbound address, issued on first use.
pub async fn address(app: &App, account_id: AccountId, meta: &Metadata) -> Result<InboundAddress, InboundEmailError> {
    let mut account = app.state_of::<Account>(account_id).await?;
    let inbox_id = account.primary_inbox_id.ok_or(AppError::NotFound("account"))?;
    if !account.inbound_email.contains_key(&inbox_id) {
        issue(app, account_id, &account, meta).await?;
        account = app.state_of::<Account>(account_id).await?;
    }
    let issued = account
        .inbound_email
        .get(&inbox_id)
        .ok_or(AppError::NotFound("inbound address"))?;
    let token = app
        .sealer
        .open(&issued.sealed_token, &token_context(account_id, inbox_id))?;
    let token = String::from_utf8(token).map_err(|_| SealError::Unreadable)?;
    let webhook_path = format!("/api/email/inbound/{token}");
    Ok(InboundAddress {
        inbox_id: inbox_id.to_string(),
        address: app
            .inbound_email_domain
            .as_ref()
            .map(|domain| format!("{}@{domain}", issued.local_part)),
        local_part: issued.local_part.clone(),
        webhook_url: app.public_url.as_ref().map(|base| format!("{base}{webhook_path}")),
        webhook_path,
    })
}

/// A new webhook token for the primary inbox (the old one stops working; the address stays).
pub async fn rotate(app: &App, account_id: AccountId, meta: &Metadata) -> Result<InboundAddress, InboundEmailError> {
    let account = app.state_of::<Account>(account_id).await?;
    issue(app, account_id, &account, meta).await?;
    address(app, account_id, meta).await
}

/// How a message found its inbox.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The webhook's path token.
    Token(&'a str),
    /// The local part of an SMTP recipient (`<local>@<INBOUND_EMAIL_DOMAIN>`).
    LocalPart(&'a str),
}

/// What became of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailReceived {
    /// In conversation `conversation_id`: `new` when the message opened it, `resent` when the
    /// message was already there (the same Message-ID again: nothing recorded, `new` false).
    Taken {
        conversation_id: ConversationId,
        new: bool,
        resent: bool,
    },
    /// An auto-reply, a bounce or a list message: no conversation.
    Automatic(&'static str),
}

/// The inbox a message is for, if any.
pub async fn inbox_of(app: &App, route: Route<'_>) -> Result<(AccountId, InboxId), InboundEmailError> {
    let (key, by_token) = match route {
        Route::Token(token) => (token_sha256(token), true),
        Route::LocalPart(local) => (local.to_lowercase(), false),
    };
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let found = ConversationProjection::inbound_inbox(&mut conn, &key, by_token)
        .await
        .map_err(AppError::from)?;
    let (account, inbox) = found.ok_or(InboundEmailError::UnknownInbox)?;
    match (account.parse(), inbox.parse()) {
        (Ok(account), Ok(inbox)) => Ok((account, inbox)),
        _ => Err(InboundEmailError::UnknownInbox),
    }
}

/// Takes `raw` (an RFC 5322 message) for the inbox `route` names.
pub async fn receive(app: &App, route: Route<'_>, raw: &[u8]) -> Result<EmailReceived, InboundEmailError> {
    let (account_id, inbox_id) = inbox_of(app, route).await?;
    let email = parse::parse(raw)?;
    if let Some(reason) = email.automatic {
        tracing::info!(account = %account_id, reason, "automatic email not taken");
        return Ok(EmailReceived::Automatic(reason));
    }
    let account = app.state_of::<Account>(account_id).await?;
    if !account.inbound_email.contains_key(&inbox_id) {
        return Err(InboundEmailError::UnknownInbox);
    }
    let (conversation_id, customer_id, new) = match thread_of(app, account_id, &email.replied_to).await? {
        Some((conversation_id, customer_id)) => (conversation_id, customer_id, false),
        None => {
            let customer_id = customer_of(app, account_id, &email).await?;
            // One conversation per first message: a resend of it finds the same one.
            let conversation_id =
                ConversationId(super::derived_id(account_id, "email-conversation", &email.message_id));
            (conversation_id, customer_id, true)
        }
    };
    let place = Filing {
        account_id,
        inbox_id,
        conversation_id,
        customer_id,
        source: Source::Email,
        create: new,
    };
    let recorded = file(app, place, email, raw, None).await?;
    Ok(EmailReceived::Taken {
        conversation_id,
        new: new && recorded,
        resent: !recorded,
    })
}

/// Where a received email goes.
pub(super) struct Filing {
    pub account_id: AccountId,
    pub inbox_id: InboxId,
    pub conversation_id: ConversationId,
    pub customer_id: CustomerId,
    /// The channel of the conversation, when it is created.
    pub source: Source,
    /// Whether to create the conversation (unless it exists).
    pub create: bool,
}

/// Records `email` in the conversation `place` names (created first if asked): as the customer's
/// message, deduplicated by its Message-ID (and Gmail id), its original `raw` kept beside
/// ([`original`]) when it was new. True when the message was recorded now, false for a duplicate.
pub(super) async fn file(
    app: &App,
    place: Filing,
    email: parse::InboundEmail,
    raw: &[u8],
    gmail: Option<netia_events::conversation::GmailMessage>,
) -> Result<bool, InboundEmailError> {
    let Filing {
        account_id,
        inbox_id,
        conversation_id,
        customer_id,
        source,
        create,
    } = place;
    let meta = Metadata::new(netia_events::Actor::Customer { customer_id }).with_account(account_id);
    if create {
        let create = ConversationCommand::Create {
            conversation_id,
            account_id,
            customer_id,
            inbox_id,
            source,
            subject: email.subject.clone(),
            at: Utc::now(),
        };
        super::open_conversation(app, conversation_id, create, &meta).await?;
    }
    let command = ConversationCommand::ReceiveEmail {
        message_id: MessageId::new(),
        author: Author::Customer { customer_id },
        body: email.body,
        subject: email.subject,
        email_message_id: email.message_id.clone(),
        in_reply_to: email.replied_to.first().cloned(),
        gmail,
        at: Utc::now(),
    };
    let email_message_id = email.message_id;
    let executed = app.bus.execute::<Conversation>(conversation_id, command, &meta).await?;
    // The original goes beside the message it was taken as (a resend or a re-read changes
    // nothing), unless its customer was deleted. A crash between the two loses the original, not
    // the message.
    let customer = app.state_of::<Customer>(customer_id).await?;
    if !executed.events.is_empty() && !customer.deleted {
        sqlx::query(
            "INSERT INTO email_originals (account_id, email_message_id, conversation_id, customer_id, raw, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, email_message_id) DO NOTHING",
        )
        .bind(account_id.to_string())
        .bind(email_message_id)
        .bind(conversation_id.to_string())
        .bind(customer_id.to_string())
        .bind(raw.to_vec())
        .bind(netia_events::chain::format_time(Utc::now()))
        .execute(&app.db)
        .await
        .map_err(AppError::from)?;
    }
    Ok(!executed.events.is_empty())
}

/// The original (RFC 5322, as received) of email message `message_id` of conversation
/// `conversation_id` of account `account_id`.
pub async fn original(
    app: &App,
    account_id: AccountId,
    conversation_id: ConversationId,
    message_id: MessageId,
) -> Result<Vec<u8>, InboundEmailError> {
    let raw: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT o.raw FROM email_originals o JOIN conversation_messages m \
         ON m.account_id = o.account_id AND m.external_id = o.email_message_id AND m.conversation_id = o.conversation_id \
         WHERE m.message_id = $1 AND m.conversation_id = $2 AND m.account_id = $3 AND m.kind = 'email'",
    )
    .bind(message_id.to_string())
    .bind(conversation_id.to_string())
    .bind(account_id.to_string())
    .fetch_optional(&app.db)
    .await
    .map_err(AppError::from)?;
    raw.ok_or(InboundEmailError::App(AppError::NotFound("original email")))
}

/// Deletes the originals of a customer's emails (the customer was deleted).
pub async fn forget_originals(app: &App, customer_id: CustomerId) -> Result<u64, AppError> {
    let deleted = sqlx::query("DELETE FROM email_originals WHERE customer_id = $1")
        .bind(customer_id.to_string())
        .execute(&app.db)
        .await?;
    Ok(deleted.rows_affected())
}

/// The conversation (and its customer) of the first of `ids` that an email of the account
/// carried.
pub(super) async fn thread_of(
    app: &App,
    account_id: AccountId,
    ids: &[String],
) -> Result<Option<(ConversationId, CustomerId)>, InboundEmailError> {
    for id in ids.iter().take(20) {
        let mut conn = app.db.acquire().await.map_err(AppError::from)?;
        let found = ConversationProjection::by_email_message_id(&mut conn, &account_id.to_string(), id)
            .await
            .map_err(AppError::from)?;
        drop(conn);
        let Some(conversation_id) = found.and_then(|c| c.parse::<ConversationId>().ok()) else {
            continue;
        };
        let conversation = app.state_of::<Conversation>(conversation_id).await?;
        if let (Some(account), Some(customer)) = (conversation.account_id, conversation.customer_id)
            && account == account_id
            // A reply into an erased customer's conversation starts a new one (ADR 0023).
            && !app.state_of::<Customer>(customer).await?.erased
        {
            return Ok(Some((conversation_id, customer)));
        }
    }
    Ok(None)
}

/// The account's customer with the sender's address, created (unverified) when there is none.
pub(super) async fn customer_of(
    app: &App,
    account_id: AccountId,
    email: &parse::InboundEmail,
) -> Result<CustomerId, InboundEmailError> {
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let known = CustomerProjection::by_email(&mut conn, account_id, &email.from_address)
        .await
        .map_err(AppError::from)?;
    drop(conn);
    if let Some(id) = known.and_then(|c| c.id.parse::<CustomerId>().ok()) {
        return Ok(id);
    }
    let (customer_id, _) =
        super::channel_customer(app, account_id, "email-customer", None, &email.from_address).await?;
    let customer = app.state_of::<Customer>(customer_id).await?;
    if customer.account_id.is_none() {
        let create = CustomerCommand::Create {
            customer_id,
            account_id,
            identity: CustomerIdentity {
                email: Some(email.from_address.clone()),
                name: email.from_name.clone(),
                ..CustomerIdentity::default()
            },
            metadata: serde_json::Map::new(),
            verified: false,
        };
        let meta = Metadata::new(netia_events::Actor::Customer { customer_id }).with_account(account_id);
        match app.bus.execute::<Customer>(customer_id, create, &meta).await {
            Ok(_) | Err(CommandError::Domain(CustomerError::AlreadyExists)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(customer_id)
}
