//! Twilio SMS use cases: link a Twilio number (credentials checked with Twilio, auth token
//! sealed), unlink it, and take what Twilio posts — an incoming SMS (a conversation per account
//! and phone number, source `sms`, deduplicated by `MessageSid`) and the status callbacks of our
//! replies. Every request from Twilio is verified with `X-Twilio-Signature` against the URL it
//! was sent to ([`crate::channels::twilio::signature`]). The client and the outbound consumer are
//! in [`crate::channels::twilio`].

use chrono::Utc;
use netia_commands::{
    Account, AccountCommand, AccountError, Conversation, ConversationCommand, ConversationError, Customer,
    CustomerCommand, CustomerError, is_account_sid, is_e164,
};
use netia_events::conversation::Source;
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, ConversationId, MessageId, Metadata, UserId};
use netia_projections::ConversationProjection;
use serde::Serialize;

use super::{App, AppError};
use crate::channels::twilio::client::{TwilioCredentials, TwilioError};
use crate::channels::twilio::outbound::token_context;
use crate::channels::twilio::signature::{self, Unverified};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// The longest SMS body taken, in characters (Twilio concatenates up to 1,600).
const MAX_INBOUND_CHARS: usize = 1_600;

#[derive(Debug, thiserror::Error)]
pub enum TwilioUseError {
    /// A field of the link request is malformed.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
    /// Twilio refused the credentials (or the number is another Netia account's).
    #[error("{0}")]
    Refused(String),
    /// Not Twilio's request: no or a wrong signature, or an account or number not linked here.
    #[error("not a request from Twilio: {0}")]
    Unverified(&'static str),
    #[error(transparent)]
    Twilio(#[from] TwilioError),
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

impl From<Unverified> for TwilioUseError {
    fn from(e: Unverified) -> Self {
        Self::Unverified(match e {
            Unverified::Missing => "X-Twilio-Signature is missing",
            Unverified::Mismatch => "the signature does not match",
        })
    }
}

/// What an admin sends to link Twilio (`PUT /api/twilio/authorization`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwilioLink {
    /// `AC` and 32 hex digits.
    pub account_sid: String,
    /// The account's auth token (32 characters); stored sealed, never returned.
    pub auth_token: String,
    /// The Twilio number, E.164 (`+15005550006`).
    pub from_number: String,
}

/// The account's Twilio link as admins see it: never the token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TwilioStatus {
    pub linked: bool,
    pub account_sid: Option<String>,
    pub from_number: Option<String>,
    /// What to enter as the number's "A message comes in" webhook (HTTP POST); `null` without
    /// `NETIA_PUBLIC_URL`, whose value Twilio's signatures cover.
    pub webhook_url: Option<String>,
}

/// `/api/twilio/webhook` under `NETIA_PUBLIC_URL`.
pub fn webhook_url(app: &App) -> Option<String> {
    app.public_url.as_ref().map(|base| format!("{base}/api/twilio/webhook"))
}

pub async fn status(app: &App, account_id: AccountId) -> Result<TwilioStatus, TwilioUseError> {
    let account = app.state_of::<Account>(account_id).await?;
    let twilio = account.twilio.as_ref();
    Ok(TwilioStatus {
        linked: twilio.is_some(),
        account_sid: twilio.map(|t| t.account_sid.clone()),
        from_number: twilio.map(|t| t.from_number.clone()),
        webhook_url: webhook_url(app),
    })
}

/// Links the Twilio number of `link` to `account_id` once Twilio accepts its credentials.
pub async fn link(
    app: &App,
    account_id: AccountId,
    link: TwilioLink,
    linked_by: UserId,
    meta: &Metadata,
) -> Result<(), TwilioUseError> {
    let (sid, number, token) = (link.account_sid.trim(), link.from_number.trim(), link.auth_token.trim());
    if !is_account_sid(sid) {
        return Err(TwilioUseError::Invalid {
            field: "account_sid",
            reason: "must be a Twilio account SID (AC and 32 hex digits)",
        });
    }
    if !is_e164(number) {
        return Err(TwilioUseError::Invalid {
            field: "from_number",
            reason: "must be an E.164 number such as +15005550006",
        });
    }
    if !(16..=128).contains(&token.len()) || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(TwilioUseError::Invalid {
            field: "auth_token",
            reason: "must be the account's auth token (letters and digits)",
        });
    }
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let holder = ConversationProjection::by_twilio_number(&mut conn, sid, number)
        .await
        .map_err(AppError::from)?;
    drop(conn);
    if holder.is_some_and(|holder| holder != account_id.to_string()) {
        return Err(TwilioUseError::Refused(format!(
            "{number} is linked to another Netia account"
        )));
    }
    let credentials = TwilioCredentials {
        account_sid: sid.to_owned(),
        auth_token: token.to_owned(),
    };
    match app.twilio.check(&credentials).await {
        Ok(()) => {}
        Err(TwilioError::Refused {
            status: 401 | 403 | 404,
            ..
        }) => {
            return Err(TwilioUseError::Refused(
                "Twilio refused this account SID and auth token".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let sealed = app.sealer.seal(token.as_bytes(), &token_context(account_id))?;
    let command = AccountCommand::LinkTwilio {
        account_sid: sid.to_owned(),
        from_number: number.to_owned(),
        sealed_auth_token: sealed,
        linked_by,
    };
    app.bus.execute::<Account>(account_id, command, meta).await?;
    app.caught_up_with_log("conversation").await;
    Ok(())
}

pub async fn unlink(app: &App, account_id: AccountId, meta: &Metadata) -> Result<(), TwilioUseError> {
    app.bus
        .execute::<Account>(account_id, AccountCommand::UnlinkTwilio, meta)
        .await?;
    Ok(())
}

/// A request from Twilio: the URL it was sent to (`NETIA_PUBLIC_URL` + path and query), its form
/// parameters in order, its `X-Twilio-Signature`.
pub struct TwilioRequest<'a> {
    pub url: String,
    pub params: &'a [(String, String)],
    pub signature: Option<&'a str>,
}

impl TwilioRequest<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The account, its Twilio number and auth token, for a request verified as Twilio's.
async fn verified(app: &App, account_id: AccountId, request: &TwilioRequest<'_>) -> Result<Account, TwilioUseError> {
    let account = app.state_of::<Account>(account_id).await?;
    let Some(twilio) = &account.twilio else {
        return Err(TwilioUseError::Unverified("Twilio is not linked to this account"));
    };
    if request.param("AccountSid") != Some(twilio.account_sid.as_str()) {
        return Err(TwilioUseError::Unverified("another Twilio account"));
    }
    let token = app.sealer.open(&twilio.sealed_auth_token, &token_context(account_id))?;
    let token = String::from_utf8(token).map_err(|_| SealError::Unreadable)?;
    signature::verify(&token, &request.url, request.params, request.signature)?;
    Ok(account)
}

/// What became of an incoming SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsReceived {
    /// In conversation `conversation_id` (or already was: Twilio retried).
    Taken { conversation_id: ConversationId },
    /// Not a message we take (an empty body: a picture alone), acknowledged all the same.
    Ignored(&'static str),
}

/// Takes an incoming-message webhook: verifies it, finds or creates the customer and conversation
/// of the sender's number, and records the message.
pub async fn receive(app: &App, request: &TwilioRequest<'_>) -> Result<SmsReceived, TwilioUseError> {
    let (Some(sid), Some(to)) = (request.param("AccountSid"), request.param("To")) else {
        return Err(TwilioUseError::Unverified("AccountSid or To is missing"));
    };
    // Twilio's shapes only: nothing else is looked up (or reaches the database).
    if !is_account_sid(sid) || !is_e164(to) {
        return Err(TwilioUseError::Unverified("AccountSid or To is not Twilio's"));
    }
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let found = ConversationProjection::by_twilio_number(&mut conn, sid, to)
        .await
        .map_err(AppError::from)?;
    drop(conn);
    let Some(account_id) = found.and_then(|a| a.parse::<AccountId>().ok()) else {
        return Err(TwilioUseError::Unverified("no Netia account has linked this number"));
    };
    let account = verified(app, account_id, request).await?;
    if account.twilio.as_ref().map(|t| t.from_number.as_str()) != Some(to) {
        return Err(TwilioUseError::Unverified("no Netia account has linked this number"));
    }
    let (Some(message_sid), Some(from)) = (request.param("MessageSid"), request.param("From")) else {
        return Err(TwilioUseError::Invalid {
            field: "MessageSid",
            reason: "MessageSid and From are required",
        });
    };
    let body: String = request
        .param("Body")
        .unwrap_or_default()
        .chars()
        .take(MAX_INBOUND_CHARS)
        .collect();
    if body.trim().is_empty() {
        return Ok(SmsReceived::Ignored("no text (a picture alone)"));
    }
    let (customer_id, conversation) =
        super::channel_customer(app, account_id, "sms-customer", Some("sms-conversation"), from).await?;
    let conversation_id: ConversationId = conversation.ok_or_else(|| AppError::Log("no SMS conversation id".into()))?;
    let meta = Metadata::new(netia_events::Actor::Customer { customer_id }).with_account(account_id);
    let customer = app.state_of::<Customer>(customer_id).await?;
    if customer.account_id.is_none() {
        let create = CustomerCommand::Create {
            customer_id,
            account_id,
            identity: CustomerIdentity {
                phone: Some(from.to_owned()),
                ..CustomerIdentity::default()
            },
            metadata: serde_json::Map::new(),
            verified: false,
        };
        match app.bus.execute::<Customer>(customer_id, create, &meta).await {
            Ok(_) | Err(CommandError::Domain(CustomerError::AlreadyExists)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let conversation = app.state_of::<Conversation>(conversation_id).await?;
    if conversation.account_id.is_none() {
        let Some(inbox_id) = account.primary_inbox_id else {
            return Err(AppError::NotFound("account").into());
        };
        let create = ConversationCommand::Create {
            conversation_id,
            account_id,
            customer_id,
            inbox_id,
            source: Source::Sms,
            subject: None,
            at: Utc::now(),
        };
        super::open_conversation(app, conversation_id, create, &meta).await?;
    }
    let command = ConversationCommand::ReceiveSms {
        message_id: MessageId::new(),
        customer_id,
        body,
        message_sid: message_sid.to_owned(),
        from_number: from.to_owned(),
        at: Utc::now(),
    };
    app.bus.execute::<Conversation>(conversation_id, command, &meta).await?;
    Ok(SmsReceived::Taken { conversation_id })
}

/// Takes a status callback for reply `message_id` of `conversation_id` (both from the callback
/// URL we gave Twilio, which its signature covers).
pub async fn delivery_status(
    app: &App,
    conversation_id: ConversationId,
    request: &TwilioRequest<'_>,
) -> Result<(), TwilioUseError> {
    let conversation = app.state_of::<Conversation>(conversation_id).await?;
    let Some(account_id) = conversation.account_id else {
        return Err(TwilioUseError::Unverified("no such conversation"));
    };
    verified(app, account_id, request).await?;
    let (Some(sid), Some(status)) = (request.param("MessageSid"), request.param("MessageStatus")) else {
        return Err(TwilioUseError::Invalid {
            field: "MessageStatus",
            reason: "MessageSid and MessageStatus are required",
        });
    };
    let command = ConversationCommand::RecordSmsStatus {
        message_sid: sid.to_owned(),
        status: status.to_owned(),
    };
    let meta = Metadata::system("twilio").with_account(account_id);
    app.bus.execute::<Conversation>(conversation_id, command, &meta).await?;
    Ok(())
}
