//! Conversation state and its decisions (SPEC §2).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use netia_events::chain::truncate_to_micros;
use netia_events::conversation::*;
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ConversationCommand, ConversationError};
use crate::validate::{MAX_BODY_CHARS, MAX_KEY_CHARS, is_clean_text, is_label};

/// Closed conversations idle this long are archived by the hourly job.
pub const ARCHIVE_AFTER_DAYS: i64 = 14;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[default]
    Open,
    Closed,
    Snoozed {
        until: DateTime<Utc>,
    },
}

/// What a conversation must remember to decide: status, ownership and every idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Option<ConversationId>,
    pub account_id: Option<AccountId>,
    pub customer_id: Option<CustomerId>,
    pub status: Status,
    pub closed_at: Option<DateTime<Utc>>,
    pub archived: bool,
    pub priority: Option<Priority>,
    pub assignee: Option<UserId>,
    pub tags: BTreeSet<String>,
    /// Set by an agent's public reply: from then on the bot stays silent.
    pub handed_to_human: bool,
    pub last_message_id: Option<MessageId>,
    pub read_up_to: BTreeMap<UserId, MessageId>,
    /// Idempotency keys, each scoped to its author (see [`author_key`]): one author's key never
    /// hides another author's message.
    pub client_message_ids: BTreeSet<String>,
    /// The `sent_at` of the latest message: a later message is never dated before it, so stored
    /// order and time order agree within the conversation.
    #[serde(default)]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// Channel ids already recorded, as `email:<id>`, `slack:<id>`, `sms:<sid>`.
    pub external_ids: BTreeSet<String>,
    pub bot_triggers: BTreeSet<Uuid>,
    /// The customer's latest message, from any channel.
    pub last_customer_message: Option<MessageId>,
    /// The last message the customer is known to have seen.
    pub seen_by_customer: Option<MessageId>,
    /// Messages already emailed to the customer, and the last notification's Message-ID.
    pub emailed: BTreeSet<MessageId>,
    pub last_email_id: Option<String>,
    /// Every Message-ID of the conversation's email thread, oldest first (notifications sent and
    /// emails received): the next email's `References` (RFC 5322 §3.6.4).
    #[serde(default)]
    pub email_thread: Vec<String>,
    /// The inbox it arrived in.
    #[serde(default)]
    pub inbox_id: Option<InboxId>,
    /// The Slack thread (channel, parent `ts`) it is mirrored in.
    #[serde(default)]
    pub slack_thread: Option<(String, String)>,
    /// Where the conversation started (`None` in states saved before it was kept).
    #[serde(default)]
    pub source: Option<Source>,
    /// The customer's messages already emailed to agents.
    #[serde(default)]
    pub agents_notified: BTreeSet<MessageId>,
    /// Its subject (an email's), if it has one.
    #[serde(default)]
    pub subject: Option<String>,
    /// The Gmail thread of a Gmail conversation: where its replies are sent.
    #[serde(default)]
    pub gmail_thread_id: Option<String>,
    /// The number the customer last wrote from by SMS: where SMS replies go.
    #[serde(default)]
    pub sms_number: Option<String>,
    /// Each sent SMS part (`SM…`) with its reply and last known status.
    #[serde(default)]
    pub sms_sent: BTreeMap<String, (MessageId, String)>,
}

/// The scope of an idempotency key: `customer:<id>:<key>` or `agent:<id>:<key>`.
pub fn author_key(author: &Author, key: &str) -> String {
    match author {
        Author::Customer { customer_id } => format!("customer:{customer_id}:{key}"),
        Author::Agent { user_id } => format!("agent:{user_id}:{key}"),
        Author::ExternalAgent { channel_user_id, .. } => format!("external:{channel_user_id}:{key}"),
    }
}

pub(super) type Decision = Result<Vec<ConversationEvent>, ConversationError>;

impl Conversation {
    fn is_reopenable(&self) -> bool {
        matches!(self.status, Status::Closed | Status::Snoozed { .. }) || self.archived
    }

    /// A message from the customer's side reopens a closed, snoozed or archived conversation.
    fn reopen_for_customer(&self, at: DateTime<Utc>) -> Vec<ConversationEvent> {
        if self.is_reopenable() {
            vec![ConversationEvent::ConversationReopened(ConversationReopened {
                reason: ReopenReason::CustomerMessage,
                reopened_at: at,
            })]
        } else {
            Vec::new()
        }
    }

    fn check_customer(&self, customer_id: CustomerId) -> Result<(), ConversationError> {
        if self.customer_id == Some(customer_id) {
            Ok(())
        } else {
            Err(ConversationError::WrongCustomer)
        }
    }

    /// When a message decided at `at` is dated: to the microsecond, which is all PostgreSQL's
    /// `timestamptz`, the SQLite read models and the API keep (`netia_events::chain::format_time`),
    /// and at least a microsecond after the previous message (clocks of concurrent writers and
    /// retried commands can be behind the last append). Compared at the nanosecond, two messages
    /// decided within one microsecond read back with the same `sent_at`.
    fn message_time(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let at = truncate_to_micros(at);
        match self.last_sent_at.map(truncate_to_micros) {
            Some(last) if at <= last => last + Duration::microseconds(1),
            _ => at,
        }
    }

    /// Whether the bot may post now: not once a person has the conversation (replied, took it
    /// over, was assigned, or closed it), decided from the state at the moment of the reply —
    /// not from the state when the model was asked, which may be seconds older.
    fn bot_may_answer(&self) -> Result<(), ConversationError> {
        if self.handed_to_human || self.assignee.is_some() || self.status == Status::Closed {
            Err(ConversationError::HandedToHuman)
        } else {
            Ok(())
        }
    }

    fn seen_external(&self, kind: &str, id: &str) -> Result<bool, ConversationError> {
        check_key(id)?;
        Ok(self.external_ids.contains(&format!("{kind}:{id}")))
    }

    fn post_message(
        &self,
        message_id: MessageId,
        author: &Author,
        (body, format, attachments): (&str, MessageFormat, &[Attachment]),
        private: bool,
        client_message_id: &Option<String>,
        at: DateTime<Utc>,
    ) -> Decision {
        check_attachments(attachments)?;
        match check_body(body) {
            // A file needs no caption.
            Err(ConversationError::EmptyBody) if !attachments.is_empty() => {}
            checked => checked?,
        }
        if let Some(key) = client_message_id {
            check_key(key)?;
            if self.client_message_ids.contains(&author_key(author, key)) {
                return Ok(Vec::new());
            }
        }
        let at = self.message_time(at);
        let client_message_id = client_message_id.clone();
        let body = body.to_owned();
        let attachments = attachments.to_vec();
        match *author {
            Author::Customer { customer_id } => {
                if private {
                    return Err(ConversationError::PrivateNoteByCustomer);
                }
                self.check_customer(customer_id)?;
                let mut events = self.reopen_for_customer(at);
                events.push(ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
                    message_id,
                    customer_id,
                    body,
                    client_message_id,
                    format,
                    attachments,
                    sent_at: at,
                }));
                Ok(events)
            }
            Author::Agent { user_id } if private => Ok(vec![ConversationEvent::PrivateNoteAdded(PrivateNoteAdded {
                message_id,
                user_id,
                body,
                client_message_id,
                format,
                attachments,
                sent_at: at,
            })]),
            Author::Agent { user_id } => Ok(vec![ConversationEvent::AgentMessagePosted(AgentMessagePosted {
                message_id,
                user_id,
                body,
                client_message_id,
                format,
                attachments,
                sent_at: at,
            })]),
            Author::ExternalAgent { .. } => Err(ConversationError::ExternalAgentOutsideChannel),
        }
    }

    fn channel_message(&self, author: &Author, at: DateTime<Utc>, event: ConversationEvent) -> Decision {
        let mut events = match author {
            Author::Customer { customer_id } => {
                self.check_customer(*customer_id)?;
                self.reopen_for_customer(at)
            }
            Author::Agent { .. } => Vec::new(),
            Author::ExternalAgent { name, channel_user_id } => {
                check_external_agent(name, channel_user_id)?;
                Vec::new()
            }
        };
        events.push(event);
        Ok(events)
    }

    fn decide_existing(&self, command: &ConversationCommand) -> Decision {
        use ConversationCommand::*;
        match command {
            Create { .. } => Err(ConversationError::AlreadyExists),
            StartSlackThread { .. } | RecordSlackPostFailure { .. } => self.decide_slack(command),
            RecordSmsSent { .. } | RecordSmsStatus { .. } | RecordSmsFailure { .. } => self.decide_sms(command),
            RecordAgentNotification {
                message_ids,
                user_ids,
                at,
            } => {
                if message_ids.iter().all(|m| self.agents_notified.contains(m)) {
                    return Ok(Vec::new());
                }
                Ok(vec![ConversationEvent::AgentsNotified(AgentsNotified {
                    message_ids: message_ids.clone(),
                    user_ids: user_ids.clone(),
                    at: *at,
                })])
            }
            RecordEmailFailure {
                trigger_event_id,
                message_id,
                error,
            } => {
                let failed = ConversationEvent::EmailSendFailed(EmailSendFailed {
                    trigger_event_id: *trigger_event_id,
                    message_id: *message_id,
                    error: error.chars().take(500).collect(),
                });
                Ok(self.once(&format!("email-failed:{trigger_event_id}"), failed))
            }
            MarkSeenByCustomer { customer_id, at } => {
                if Some(*customer_id) != self.customer_id {
                    return Err(ConversationError::NotFound);
                }
                match self.last_message_id {
                    Some(last) if self.seen_by_customer != Some(last) => {
                        Ok(vec![ConversationEvent::SeenByCustomer(SeenByCustomer {
                            customer_id: *customer_id,
                            up_to: last,
                            at: *at,
                        })])
                    }
                    _ => Ok(Vec::new()),
                }
            }
            RecordEmailNotification {
                message_ids,
                to,
                email_message_id,
                in_reply_to,
                gmail,
                at,
            } => {
                if message_ids.iter().all(|m| self.emailed.contains(m)) {
                    return Ok(Vec::new());
                }
                Ok(vec![ConversationEvent::EmailNotificationSent(EmailNotificationSent {
                    message_ids: message_ids.clone(),
                    to: to.clone(),
                    email_message_id: email_message_id.clone(),
                    in_reply_to: in_reply_to.clone(),
                    gmail: gmail.clone(),
                    at: *at,
                })])
            }
            HandToHuman { reason, at } => {
                if self.handed_to_human {
                    return Ok(Vec::new());
                }
                Ok(vec![ConversationEvent::HandedToHuman(HandedToHuman {
                    reason: *reason,
                    at: *at,
                })])
            }
            PostMessage {
                message_id,
                author,
                body,
                format,
                private,
                client_message_id,
                attachments,
                at,
            } => self.post_message(
                *message_id,
                author,
                (body, *format, attachments),
                *private,
                client_message_id,
                *at,
            ),
            PostBotReply {
                message_id,
                body,
                trigger_event_id,
                reply_to,
                fallback,
                at,
            } => {
                check_body(body)?;
                if self.bot_triggers.contains(trigger_event_id) {
                    return Ok(Vec::new());
                }
                self.bot_may_answer()?;
                if reply_to.is_some() && *reply_to != self.last_customer_message {
                    return Ok(Vec::new()); // superseded by a newer customer message
                }
                Ok(vec![ConversationEvent::BotMessagePosted(BotMessagePosted {
                    message_id: *message_id,
                    body: body.clone(),
                    // Language models write Markdown.
                    format: MessageFormat::Markdown,
                    attachments: Vec::new(),
                    trigger_event_id: *trigger_event_id,
                    fallback: *fallback,
                    sent_at: self.message_time(*at),
                })])
            }
            ReceiveEmail {
                message_id,
                author,
                body,
                subject,
                email_message_id,
                in_reply_to,
                gmail,
                at,
            } => {
                check_body(body)?;
                check_subject(subject)?;
                if self.seen_external("email", email_message_id)? {
                    return Ok(Vec::new());
                }
                if let Some(gmail) = gmail {
                    check_key(&gmail.thread_id)?;
                    if self.seen_external("gmail", &gmail.id)? {
                        return Ok(Vec::new());
                    }
                }
                let event = ConversationEvent::EmailMessageReceived(EmailMessageReceived {
                    message_id: *message_id,
                    author: author.clone(),
                    body: body.clone(),
                    subject: subject.clone(),
                    email_message_id: email_message_id.clone(),
                    in_reply_to: in_reply_to.clone(),
                    gmail: gmail.clone(),
                    sent_at: self.message_time(*at),
                });
                self.channel_message(author, *at, event)
            }
            ReceiveSlackMessage {
                message_id,
                author,
                body,
                slack_event_id,
                slack_ts,
                at,
            } => {
                check_body(body)?;
                if self.seen_external("slack", slack_event_id)? {
                    return Ok(Vec::new());
                }
                let event = ConversationEvent::SlackMessageReceived(SlackMessageReceived {
                    message_id: *message_id,
                    author: author.clone(),
                    body: body.clone(),
                    slack_event_id: slack_event_id.clone(),
                    slack_ts: slack_ts.clone(),
                    sent_at: self.message_time(*at),
                });
                self.channel_message(author, *at, event)
            }
            ReceiveSms {
                message_id,
                customer_id,
                body,
                message_sid,
                from_number,
                at,
            } => {
                check_body(body)?;
                if self.seen_external("sms", message_sid)? {
                    return Ok(Vec::new());
                }
                let event = ConversationEvent::SmsMessageReceived(SmsMessageReceived {
                    message_id: *message_id,
                    customer_id: *customer_id,
                    body: body.clone(),
                    message_sid: message_sid.clone(),
                    from_number: from_number.clone(),
                    sent_at: self.message_time(*at),
                });
                self.channel_message(
                    &Author::Customer {
                        customer_id: *customer_id,
                    },
                    *at,
                    event,
                )
            }
            Close { at } => Ok(match self.status {
                Status::Closed => Vec::new(),
                _ => vec![ConversationEvent::ConversationClosed(ConversationClosed {
                    closed_at: *at,
                })],
            }),
            Reopen { at } => Ok(if self.is_reopenable() {
                vec![ConversationEvent::ConversationReopened(ConversationReopened {
                    reason: ReopenReason::Agent,
                    reopened_at: *at,
                })]
            } else {
                Vec::new()
            }),
            Snooze { until, at } => {
                if until <= at {
                    return Err(ConversationError::SnoozeInPast);
                }
                Ok(match self.status {
                    Status::Snoozed { until: current } if current == *until => Vec::new(),
                    _ => vec![ConversationEvent::ConversationSnoozed(ConversationSnoozed {
                        until: *until,
                    })],
                })
            }
            Wake { at } => Ok(match self.status {
                Status::Snoozed { until } if until <= *at => {
                    vec![ConversationEvent::ConversationWoken(ConversationWoken {
                        woken_at: *at,
                    })]
                }
                _ => Vec::new(),
            }),
            SetPriority { priority } => Ok(if self.priority.unwrap_or(Priority::Normal) == *priority {
                Vec::new()
            } else {
                vec![ConversationEvent::PrioritySet(PrioritySet { priority: *priority })]
            }),
            Assign { assignee } => Ok(if self.assignee == *assignee {
                Vec::new()
            } else {
                vec![ConversationEvent::AgentAssigned(AgentAssigned { assignee: *assignee })]
            }),
            Tag { tag } => {
                check_tag(tag)?;
                Ok(if self.tags.contains(tag) {
                    Vec::new()
                } else {
                    vec![ConversationEvent::ConversationTagged(ConversationTagged {
                        tag: tag.clone(),
                    })]
                })
            }
            Untag { tag } => Ok(if self.tags.contains(tag) {
                vec![ConversationEvent::ConversationUntagged(ConversationUntagged {
                    tag: tag.clone(),
                })]
            } else {
                Vec::new()
            }),
            MarkRead { user_id } => Ok(match self.last_message_id {
                Some(last) if self.read_up_to.get(user_id) != Some(&last) => {
                    vec![ConversationEvent::ConversationRead(ConversationRead {
                        user_id: *user_id,
                        last_message_id: last,
                    })]
                }
                _ => Vec::new(),
            }),
            Archive { at } => {
                if self.archived {
                    return Ok(Vec::new());
                }
                let (Status::Closed, Some(closed_at)) = (self.status, self.closed_at) else {
                    return Err(ConversationError::NotClosed);
                };
                if *at - closed_at < Duration::days(ARCHIVE_AFTER_DAYS) {
                    return Err(ConversationError::ClosedTooRecently {
                        days: ARCHIVE_AFTER_DAYS,
                    });
                }
                Ok(vec![ConversationEvent::ConversationArchived(ConversationArchived {
                    archived_at: *at,
                })])
            }
        }
    }

    /// Applies one event to the state.
    pub fn evolve(&mut self, event: &ConversationEvent) {
        use ConversationEvent::*;
        match event {
            ConversationCreated(e) => {
                self.id = Some(e.conversation_id);
                self.account_id = Some(e.account_id);
                self.customer_id = Some(e.customer_id);
                self.inbox_id = e.inbox_id;
                self.status = Status::Open;
                self.source = Some(e.source);
                self.subject = e.subject.clone();
            }
            CustomerMessagePosted(e) => {
                let author = Author::Customer {
                    customer_id: e.customer_id,
                };
                self.record_message(e.message_id, e.sent_at, Some(&author), e.client_message_id.as_ref());
                self.last_customer_message = Some(e.message_id);
            }
            HandedToHuman(_) => self.handed_to_human = true,
            SeenByCustomer(e) => self.seen_by_customer = Some(e.up_to),
            SlackThreadStarted(e) => {
                self.slack_thread
                    .get_or_insert_with(|| (e.channel_id.clone(), e.thread_ts.clone()));
            }
            SlackPostFailed(e) => {
                self.external_ids.insert(format!("slack-failed:{}", e.trigger_event_id));
            }
            SmsSent(_) | SmsStatusUpdated(_) | SmsSendFailed(_) => self.evolve_sms(event),
            EmailSendFailed(e) => {
                self.external_ids.insert(format!("email-failed:{}", e.trigger_event_id));
            }
            AgentsNotified(e) => self.agents_notified.extend(e.message_ids.iter().copied()),
            EmailNotificationSent(e) => {
                self.emailed.extend(e.message_ids.iter().copied());
                if let Some(gmail) = &e.gmail {
                    self.external_ids.insert(format!("gmail:{}", gmail.id));
                    self.gmail_thread_id = Some(gmail.thread_id.clone());
                }
                self.last_email_id = Some(e.email_message_id.clone());
                self.email_thread.push(e.email_message_id.clone());
            }
            AgentMessagePosted(e) => {
                let author = Author::Agent { user_id: e.user_id };
                self.record_message(e.message_id, e.sent_at, Some(&author), e.client_message_id.as_ref());
                self.handed_to_human = true;
            }
            // Notes are messages for agents: they count for read state, not for handing over.
            PrivateNoteAdded(e) => {
                let author = Author::Agent { user_id: e.user_id };
                self.record_message(e.message_id, e.sent_at, Some(&author), e.client_message_id.as_ref());
            }
            BotMessagePosted(e) => {
                self.record_message(e.message_id, e.sent_at, None, None);
                self.bot_triggers.insert(e.trigger_event_id);
            }
            EmailMessageReceived(e) => {
                self.record_message(e.message_id, e.sent_at, None, None);
                if self.subject.is_none() {
                    self.subject = e.subject.clone();
                }
                self.external_ids.insert(format!("email:{}", e.email_message_id));
                if let Some(gmail) = &e.gmail {
                    self.external_ids.insert(format!("gmail:{}", gmail.id));
                    self.gmail_thread_id = Some(gmail.thread_id.clone());
                }
                self.last_email_id = Some(e.email_message_id.clone());
                self.email_thread.push(e.email_message_id.clone());
                if e.author.is_customer() {
                    self.last_customer_message = Some(e.message_id);
                } else {
                    self.handed_to_human = true;
                }
            }
            SlackMessageReceived(e) => {
                self.record_message(e.message_id, e.sent_at, None, None);
                self.external_ids.insert(format!("slack:{}", e.slack_event_id));
                if e.author.is_customer() {
                    self.last_customer_message = Some(e.message_id);
                } else {
                    self.handed_to_human = true;
                }
            }
            SmsMessageReceived(e) => {
                self.record_message(e.message_id, e.sent_at, None, None);
                self.external_ids.insert(format!("sms:{}", e.message_sid));
                self.sms_number = Some(e.from_number.clone());
                self.last_customer_message = Some(e.message_id);
            }
            ConversationClosed(e) => {
                self.status = Status::Closed;
                self.closed_at = Some(e.closed_at);
            }
            ConversationReopened(_) | ConversationWoken(_) => {
                self.status = Status::Open;
                self.closed_at = None;
                self.archived = false;
            }
            ConversationSnoozed(e) => {
                self.status = Status::Snoozed { until: e.until };
                self.closed_at = None;
                self.archived = false;
            }
            PrioritySet(e) => self.priority = Some(e.priority),
            AgentAssigned(e) => self.assignee = e.assignee,
            ConversationTagged(e) => {
                self.tags.insert(e.tag.clone());
            }
            ConversationUntagged(e) => {
                self.tags.remove(&e.tag);
            }
            ConversationRead(e) => {
                self.read_up_to.insert(e.user_id, e.last_message_id);
            }
            ConversationArchived(_) => self.archived = true,
        }
    }

    fn record_message(
        &mut self,
        message_id: MessageId,
        sent_at: DateTime<Utc>,
        author: Option<&Author>,
        client_message_id: Option<&String>,
    ) {
        self.last_message_id = Some(message_id);
        self.last_sent_at = Some(self.last_sent_at.map_or(sent_at, |last| last.max(sent_at)));
        if let (Some(author), Some(key)) = (author, client_message_id) {
            self.client_message_ids.insert(author_key(author, key));
        }
    }
}

impl crate::Decide for Conversation {
    fn subject(&self) -> Option<String> {
        self.customer_id.map(|c| c.to_string())
    }

    fn decide(&self, command: &ConversationCommand) -> Decision {
        match (self.id, command) {
            (
                None,
                ConversationCommand::Create {
                    conversation_id,
                    account_id,
                    customer_id,
                    inbox_id,
                    source,
                    subject,
                    at,
                },
            ) => {
                check_subject(subject)?;
                Ok(vec![ConversationEvent::ConversationCreated(ConversationCreated {
                    conversation_id: *conversation_id,
                    account_id: *account_id,
                    customer_id: *customer_id,
                    inbox_id: Some(*inbox_id),
                    source: *source,
                    subject: subject.clone(),
                    created_at: *at,
                })])
            }
            (None, _) => Err(ConversationError::NotFound),
            (Some(_), command) => self.decide_existing(command),
        }
    }
}

crate::aggregate!(
    Conversation,
    "conversation",
    ConversationCommand,
    ConversationEvent,
    ConversationError
);

fn check_body(body: &str) -> Result<(), ConversationError> {
    if body.trim().is_empty() {
        return Err(ConversationError::EmptyBody);
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ConversationError::BodyTooLong { max: MAX_BODY_CHARS });
    }
    if !is_clean_text(body) {
        return Err(ConversationError::InvalidBody);
    }
    Ok(())
}

/// Most files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

fn check_attachments(attachments: &[Attachment]) -> Result<(), ConversationError> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ConversationError::TooManyAttachments { max: MAX_ATTACHMENTS });
    }
    let valid = |a: &Attachment| {
        is_label(&a.key, MAX_KEY_CHARS)
            && is_label(&a.file_name, 255)
            && is_label(&a.content_type, 255)
            && a.size > 0
            && a.sha256.len() == 64
            && a.sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if attachments.iter().all(valid) {
        Ok(())
    } else {
        Err(ConversationError::InvalidAttachment)
    }
}

fn check_key(key: &str) -> Result<(), ConversationError> {
    if is_label(key, MAX_KEY_CHARS) {
        Ok(())
    } else {
        Err(ConversationError::InvalidKey { max: MAX_KEY_CHARS })
    }
}

fn check_external_agent(name: &str, channel_user_id: &str) -> Result<(), ConversationError> {
    if is_label(name, EXTERNAL_NAME_MAX) && name.trim() == name && is_label(channel_user_id, MAX_KEY_CHARS) {
        Ok(())
    } else {
        Err(ConversationError::InvalidExternalAgent { max: EXTERNAL_NAME_MAX })
    }
}

fn check_tag(tag: &str) -> Result<(), ConversationError> {
    if is_label(tag, 64) && tag.trim() == tag {
        Ok(())
    } else {
        Err(ConversationError::InvalidTag)
    }
}

fn check_subject(subject: &Option<String>) -> Result<(), ConversationError> {
    match subject {
        Some(s) if s.chars().count() > 255 || s.chars().any(char::is_control) => Err(ConversationError::InvalidSubject),
        _ => Ok(()),
    }
}
