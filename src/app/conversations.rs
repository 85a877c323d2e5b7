//! Conversations: who may touch one, opening one, posting a message, changing it, reading it —
//! for the widget, the dashboard, the API, the socket, and next the channels.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use netia_commands::user::UserStatus;
use netia_commands::{Account, Conversation, ConversationCommand, ConversationError, User};
use netia_events::conversation::{Attachment, Author, MessageFormat, Priority, Source};
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, Metadata, RecordedEvent, UserId};
use netia_projections::{ConversationProjection, MessageRow};

use super::{App, AppError, READ_YOUR_WRITES};
use crate::command_bus::CommandError;

/// Whether conversation `id` belongs to `account`; anything else is [`AppError::NotFound`] (another
/// account's conversation is not told apart from a missing one).
pub async fn ensure_in_account(app: &App, account: AccountId, id: ConversationId) -> Result<(), AppError> {
    let mut conn = app.db.acquire().await?;
    let owner = match ConversationProjection::account_of(&mut conn, id).await? {
        Some(owner) => Some(owner),
        // Not projected yet (just created): the log decides.
        None => app
            .state_of::<Conversation>(id)
            .await?
            .account_id
            .map(|a| a.to_string()),
    };
    if owner == Some(account.to_string()) {
        Ok(())
    } else {
        Err(AppError::NotFound("conversation"))
    }
}

/// A message to post: plain text up to 20,000 characters; `private` makes an agent's message a
/// note; `client_message_id` (1 to 200 printable characters) makes the post idempotent for its
/// author.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub body: String,
    /// How `body` is meant to be read.
    pub format: MessageFormat,
    pub private: bool,
    pub client_message_id: Option<String>,
    /// Files already in the attachment store ([`crate::app::attachments`]).
    pub attachments: Vec<Attachment>,
}

/// A message saved by [`post_message`]: as readers see it, whether this call created it (or found
/// it saved under the author's same `client_message_id`), and the events appended.
#[derive(Debug)]
pub struct Posted {
    pub message: MessageRow,
    pub created: bool,
    pub events: Vec<RecordedEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The conversation refused it (empty or too long, wrong customer, …) or was not found.
    #[error(transparent)]
    Refused(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    App(#[from] AppError),
}

/// How a caller wants the saved message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// From the conversation read model, after it has the message (a REST caller's next read
    /// sees it).
    ReadModel,
    /// A new message from its event at once (the socket, whose broadcast comes from the log
    /// anyway); a repeat still from the read model.
    Event,
}

/// Posts `message` in conversation `id` as `author`.
pub async fn post_message(
    app: &App,
    id: ConversationId,
    author: Author,
    message: NewMessage,
    meta: &Metadata,
    read_back: ReadBack,
) -> Result<Posted, PostError> {
    let message_id = MessageId::new();
    let client_message_id = message.client_message_id.clone();
    let command = ConversationCommand::PostMessage {
        message_id,
        author: author.clone(),
        body: message.body,
        format: message.format,
        private: message.private,
        client_message_id: message.client_message_id,
        attachments: message.attachments,
        at: Utc::now(),
    };
    let executed = app.bus.execute::<Conversation>(id, command, meta).await?;
    let created = !executed.events.is_empty();
    if created && read_back == ReadBack::Event {
        let account = meta.account_id.map(|a| a.to_string()).unwrap_or_default();
        let row = executed
            .events
            .iter()
            .find_map(|e| netia_projections::message_row(e, &account).ok().flatten());
        if let Some(row) = row {
            return Ok(Posted {
                message: row,
                created,
                events: executed.events,
            });
        }
    }
    if created {
        app.caught_up("conversation", &executed.events).await;
    }
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES;
    let saved = loop {
        let mut conn = app.db.acquire().await.map_err(AppError::from)?;
        let found = match (&client_message_id, created) {
            // A repeat: the first post may still be on its way to the read model.
            (Some(key), false) => ConversationProjection::message_by_client_id(&mut conn, id, &author, key)
                .await
                .map_err(AppError::from)?,
            _ => ConversationProjection::message(&mut conn, &message_id.to_string())
                .await
                .map_err(AppError::from)?,
        };
        match found {
            Some(found) => break found,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            None => {
                return Err(AppError::NotReadableYet(
                    "the message is saved but not readable yet; list the messages shortly",
                )
                .into());
            }
        }
    };
    Ok(Posted {
        message: saved,
        created,
        events: executed.events,
    })
}

/// A status change asked of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Open,
    Closed,
    Snoozed { until: DateTime<Utc> },
}

/// What an agent changes in one step; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub status: Option<StatusChange>,
    pub priority: Option<Priority>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<UserId>>,
    /// The complete set of tags wanted (at most [`MAX_TAGS`]).
    pub tags: Option<Vec<String>>,
}

/// Most tags a conversation carries.
pub const MAX_TAGS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("at most {MAX_TAGS} tags")]
    TooManyTags,
    #[error("assignee_id is not an active user of this account")]
    InactiveAssignee,
    #[error(transparent)]
    Refused(#[from] CommandError<ConversationError>),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Applies `changes` to conversation `id` of `account` atomically (all or nothing): status or
/// snooze, priority, assignee (an enabled user of the account), tags. Returns the events appended
/// (none if nothing changed).
pub async fn change(
    app: &App,
    account: AccountId,
    id: ConversationId,
    changes: Changes,
    meta: &Metadata,
) -> Result<Vec<RecordedEvent>, ChangeError> {
    let now = Utc::now();
    let mut commands = Vec::new();
    match changes.status {
        None => {}
        Some(StatusChange::Open) => commands.push(ConversationCommand::Reopen { at: now }),
        Some(StatusChange::Closed) => commands.push(ConversationCommand::Close { at: now }),
        Some(StatusChange::Snoozed { until }) => commands.push(ConversationCommand::Snooze { until, at: now }),
    }
    if let Some(priority) = changes.priority {
        commands.push(ConversationCommand::SetPriority { priority });
    }
    if let Some(assignee) = changes.assignee {
        if let Some(user) = assignee {
            let user = app.state_of::<User>(user).await?;
            if user.status != UserStatus::Registered || user.account_id != Some(account) || user.disabled {
                return Err(ChangeError::InactiveAssignee);
            }
        }
        commands.push(ConversationCommand::Assign { assignee });
    }
    if let Some(tags) = changes.tags {
        if tags.len() > MAX_TAGS {
            return Err(ChangeError::TooManyTags);
        }
        let wanted: BTreeSet<String> = tags.into_iter().map(|t| t.trim().to_owned()).collect();
        let current = app.state_of::<Conversation>(id).await?;
        for tag in current.tags.difference(&wanted) {
            commands.push(ConversationCommand::Untag { tag: tag.clone() });
        }
        for tag in wanted.difference(&current.tags) {
            commands.push(ConversationCommand::Tag { tag: tag.clone() });
        }
    }
    Ok(app.bus.execute_all::<Conversation>(id, &commands, meta).await?.events)
}

/// Marks conversation `id` read by agent `user` up to its last message; the events appended.
pub async fn mark_read(
    app: &App,
    id: ConversationId,
    user: UserId,
    meta: &Metadata,
) -> Result<Vec<RecordedEvent>, CommandError<ConversationError>> {
    let command = ConversationCommand::MarkRead { user_id: user };
    Ok(app.bus.execute::<Conversation>(id, command, meta).await?.events)
}

/// Records that the conversation's customer has seen everything so far (the widget's
/// `messages:seen`); a no-op if nothing new was posted since.
pub async fn seen_by_customer(
    app: &App,
    id: ConversationId,
    customer: CustomerId,
    meta: &Metadata,
) -> Result<Vec<RecordedEvent>, CommandError<ConversationError>> {
    let command = ConversationCommand::MarkSeenByCustomer {
        customer_id: customer,
        at: Utc::now(),
    };
    Ok(app.bus.execute::<Conversation>(id, command, meta).await?.events)
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("inbox_id is not an inbox of this account")]
    ForeignInbox,
    /// The account has no primary inbox (it was never registered).
    #[error("account not found")]
    NoAccount,
    #[error(transparent)]
    Refused(#[from] CommandError<ConversationError>),
}

/// Opens a new chat conversation for `customer` of `account` in inbox `inbox` — one of the
/// account's — or, when none is named, the account's primary inbox: a conversation always belongs
/// to an inbox. Returns its id and the events appended.
pub async fn open(
    app: &App,
    account: &Account,
    customer: CustomerId,
    inbox: Option<InboxId>,
    meta: &Metadata,
) -> Result<(ConversationId, Vec<RecordedEvent>), OpenError> {
    let (Some(account_id), Some(primary)) = (account.id, account.primary_inbox_id) else {
        return Err(OpenError::NoAccount);
    };
    let inbox_id = match inbox {
        None => primary,
        Some(inbox) if inbox == primary => inbox,
        Some(_) => return Err(OpenError::ForeignInbox),
    };
    let id = ConversationId::new();
    let command = ConversationCommand::Create {
        conversation_id: id,
        account_id,
        customer_id: customer,
        inbox_id,
        source: Source::Chat,
        subject: None,
        at: Utc::now(),
    };
    let executed = app.bus.execute::<Conversation>(id, command, meta).await?;
    Ok((id, executed.events))
}
