//! The `conversation` read model: each conversation's messages in order, with kind, author, private
//! flag, seen and delivery state.

use async_trait::async_trait;
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent};
use netia_events::{ConversationId, DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, FromRow};

use crate::{Projection, ProjectionError, placeholders};

/// One message as the conversation view shows it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct MessageRow {
    pub message_id: String,
    pub conversation_id: String,
    pub account_id: String,
    /// Position in the conversation's stream: the display order.
    pub version: i64,
    /// `customer`, `agent`, `note`, `bot`, `email`, `slack` or `sms`.
    pub kind: String,
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub body: String,
    /// 1 for agents-only notes.
    pub private: i64,
    pub client_message_id: Option<String>,
    /// The channel's id (e-mail Message-ID, Slack event id, Twilio MessageSid).
    pub external_id: Option<String>,
    pub sent_at: String,
    /// When the other side saw it (customer messages: when an agent read the conversation).
    pub seen_at: Option<String>,
    /// `sent` until a channel reports otherwise.
    pub delivery_status: String,
}

pub struct ConversationProjection;

const COLUMNS: &str = "message_id, conversation_id, account_id, version, kind, customer_id, user_id, body, private, \
     client_message_id, external_id, sent_at, seen_at, delivery_status";

impl ConversationProjection {
    /// Messages in order after `after_version`, at most `limit`; notes only when `include_private`.
    pub async fn messages(
        conn: &mut AnyConnection,
        id: ConversationId,
        include_private: bool,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, ProjectionError> {
        let private = if include_private { "" } else { " AND private = 0" };
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM conversation_messages WHERE conversation_id = $1 AND version > $2{private} \
             ORDER BY version LIMIT $3"
        ))
        .bind(id.to_string())
        .bind(after_version)
        .bind(limit.clamp(1, 1_000))
        .fetch_all(conn)
        .await?)
    }
}

struct NewMessage<'a> {
    message_id: String,
    kind: &'static str,
    author: Option<Author>,
    body: &'a str,
    private: bool,
    client_message_id: Option<&'a str>,
    external_id: Option<&'a str>,
    sent_at: chrono::DateTime<chrono::Utc>,
}

impl<'a> NewMessage<'a> {
    fn new(
        message_id: impl ToString,
        kind: &'static str,
        author: Option<Author>,
        body: &'a str,
        sent_at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            message_id: message_id.to_string(),
            kind,
            author,
            body,
            private: false,
            client_message_id: None,
            external_id: None,
            sent_at,
        }
    }

    fn client(mut self, key: Option<&'a String>) -> Self {
        self.client_message_id = key.map(String::as_str);
        self
    }

    fn external(mut self, id: &'a str) -> Self {
        self.external_id = Some(id);
        self
    }

    fn private(mut self) -> Self {
        self.private = true;
        self
    }

    fn into_row(self, event: &RecordedEvent, account_id: &str) -> MessageRow {
        let (customer_id, user_id) = match self.author {
            Some(Author::Customer { customer_id }) => (Some(customer_id.to_string()), None),
            Some(Author::Agent { user_id }) => (None, Some(user_id.to_string())),
            None => (None, None),
        };
        MessageRow {
            message_id: self.message_id,
            conversation_id: event.stream_id.clone(),
            account_id: account_id.to_owned(),
            version: event.version,
            kind: self.kind.to_owned(),
            customer_id,
            user_id,
            body: self.body.to_owned(),
            private: i64::from(self.private),
            client_message_id: self.client_message_id.map(str::to_owned),
            external_id: self.external_id.map(str::to_owned),
            sent_at: format_time(self.sent_at),
            seen_at: None,
            delivery_status: "sent".to_owned(),
        }
    }
}

async fn insert(conn: &mut AnyConnection, event: &RecordedEvent, m: NewMessage<'_>) -> Result<(), ProjectionError> {
    let (customer_id, user_id) = match m.author {
        Some(Author::Customer { customer_id }) => (Some(customer_id.to_string()), None),
        Some(Author::Agent { user_id }) => (None, Some(user_id.to_string())),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO conversation_messages (message_id, conversation_id, account_id, version, kind, customer_id, \
         user_id, body, private, client_message_id, external_id, sent_at, seen_at, delivery_status) \
         SELECT $1, $2, account_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, 'sent' \
         FROM conversation_accounts WHERE conversation_id = $12 \
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(m.message_id)
    .bind(event.stream_id.clone())
    .bind(event.version)
    .bind(m.kind)
    .bind(customer_id)
    .bind(user_id)
    .bind(m.body.to_owned())
    .bind(i64::from(m.private))
    .bind(m.client_message_id.map(str::to_owned))
    .bind(m.external_id.map(str::to_owned))
    .bind(format_time(m.sent_at))
    .bind(event.stream_id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for ConversationProjection {
    fn name(&self) -> &'static str {
        "conversation"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["conversation_accounts", "conversation_messages"]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS conversation_accounts (conversation_id TEXT PRIMARY KEY, \
                account_id TEXT NOT NULL, customer_id TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS conversation_messages (\
                message_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, account_id TEXT NOT NULL, \
                version BIGINT NOT NULL, kind TEXT NOT NULL, customer_id TEXT, user_id TEXT, body TEXT NOT NULL, \
                private BIGINT NOT NULL, client_message_id TEXT, external_id TEXT, sent_at TEXT NOT NULL, \
                seen_at TEXT, delivery_status TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS conversation_messages_in_order \
                ON conversation_messages (conversation_id, version)",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        use ConversationEvent::*;
        if event.stream_type != ConversationEvent::STREAM_TYPE {
            return Ok(());
        }
        let decoded = ConversationEvent::decode(event)?;
        match &decoded {
            ConversationCreated(e) => {
                let link = (
                    event.stream_id.clone(),
                    e.account_id.to_string(),
                    e.customer_id.to_string(),
                );
                insert_accounts(conn, &[link]).await
            }
            ConversationRead(_) => mark_seen(conn, event).await,
            _ => match new_message(&decoded) {
                Some(m) => insert(conn, event, m).await,
                None => Ok(()),
            },
        }
    }

    /// Reads the accounts of the conversations a batch touches once, and inserts its messages with
    /// multi-row statements; the result equals applying the events one by one.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        use ConversationEvent::*;
        let first = events.first().map_or(0, |e| e.global_position);
        let ids: Vec<String> = events
            .iter()
            .filter(|e| e.stream_type == ConversationEvent::STREAM_TYPE)
            .map(|e| e.stream_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut accounts: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT conversation_id, account_id FROM conversation_accounts WHERE conversation_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            accounts.extend(q.fetch_all(&mut *conn).await.map_err(|e| (first, e.into()))?);
        }
        let mut links = Vec::new();
        let mut pending: Vec<MessageRow> = Vec::new();
        for event in events {
            if event.stream_type != ConversationEvent::STREAM_TYPE {
                continue;
            }
            let fail = |e: ProjectionError| (event.global_position, e);
            let decoded = ConversationEvent::decode(event).map_err(|e| fail(e.into()))?;
            match &decoded {
                ConversationCreated(e) => {
                    if !accounts.contains_key(&event.stream_id) {
                        accounts.insert(event.stream_id.clone(), e.account_id.to_string());
                        links.push((
                            event.stream_id.clone(),
                            e.account_id.to_string(),
                            e.customer_id.to_string(),
                        ));
                    }
                }
                ConversationRead(_) => {
                    // Seen receipts cover earlier messages, including this batch's.
                    flush(conn, &mut links, &mut pending).await.map_err(fail)?;
                    mark_seen(conn, event).await.map_err(fail)?;
                }
                _ => {
                    if let (Some(m), Some(account)) = (new_message(&decoded), accounts.get(&event.stream_id)) {
                        pending.push(m.into_row(event, account));
                    }
                }
            }
        }
        flush(conn, &mut links, &mut pending).await.map_err(|e| (first, e))
    }
}

/// Ids per `IN (…)` list and rows per multi-row insert.
const CHUNK: usize = 500;

/// The message an event adds, if any.
fn new_message(decoded: &ConversationEvent) -> Option<NewMessage<'_>> {
    use ConversationEvent::*;
    Some(match decoded {
        CustomerMessagePosted(e) => {
            let author = Author::Customer {
                customer_id: e.customer_id,
            };
            NewMessage::new(e.message_id, "customer", Some(author), &e.body, e.sent_at)
                .client(e.client_message_id.as_ref())
        }
        AgentMessagePosted(e) => {
            let author = Author::Agent { user_id: e.user_id };
            NewMessage::new(e.message_id, "agent", Some(author), &e.body, e.sent_at)
                .client(e.client_message_id.as_ref())
        }
        PrivateNoteAdded(e) => {
            let author = Author::Agent { user_id: e.user_id };
            NewMessage::new(e.message_id, "note", Some(author), &e.body, e.sent_at)
                .client(e.client_message_id.as_ref())
                .private()
        }
        BotMessagePosted(e) => NewMessage::new(e.message_id, "bot", None, &e.body, e.sent_at),
        EmailMessageReceived(e) => {
            NewMessage::new(e.message_id, "email", Some(e.author), &e.body, e.sent_at).external(&e.email_message_id)
        }
        SlackMessageReceived(e) => {
            NewMessage::new(e.message_id, "slack", Some(e.author), &e.body, e.sent_at).external(&e.slack_event_id)
        }
        SmsMessageReceived(e) => {
            let author = Author::Customer {
                customer_id: e.customer_id,
            };
            NewMessage::new(e.message_id, "sms", Some(author), &e.body, e.sent_at).external(&e.message_sid)
        }
        _ => return None,
    })
}

/// An agent has read everything before this event: the customer's messages are seen.
async fn mark_seen(conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE conversation_messages SET seen_at = $1 WHERE conversation_id = $2 AND version < $3 \
         AND customer_id IS NOT NULL AND seen_at IS NULL",
    )
    .bind(format_time(event.recorded_at))
    .bind(event.stream_id.clone())
    .bind(event.version)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_accounts(conn: &mut AnyConnection, links: &[(String, String, String)]) -> Result<(), ProjectionError> {
    for chunk in links.chunks(CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(3 * i + 1, 3)))
            .collect();
        let sql = format!(
            "INSERT INTO conversation_accounts (conversation_id, account_id, customer_id) VALUES {} \
             ON CONFLICT (conversation_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (conversation, account, customer) in chunk {
            q = q
                .bind(conversation.clone())
                .bind(account.clone())
                .bind(customer.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes the batch's pending conversation links and messages.
async fn flush(
    conn: &mut AnyConnection,
    links: &mut Vec<(String, String, String)>,
    pending: &mut Vec<MessageRow>,
) -> Result<(), ProjectionError> {
    insert_accounts(conn, links).await?;
    links.clear();
    for chunk in pending.chunks(CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(14 * i + 1, 14)))
            .collect();
        let sql = format!(
            "INSERT INTO conversation_messages ({COLUMNS}) VALUES {} ON CONFLICT (message_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = q
                .bind(m.message_id.clone())
                .bind(m.conversation_id.clone())
                .bind(m.account_id.clone())
                .bind(m.version)
                .bind(m.kind.clone())
                .bind(m.customer_id.clone())
                .bind(m.user_id.clone())
                .bind(m.body.clone())
                .bind(m.private)
                .bind(m.client_message_id.clone())
                .bind(m.external_id.clone())
                .bind(m.sent_at.clone())
                .bind(m.seen_at.clone())
                .bind(m.delivery_status.clone());
        }
        q.execute(&mut *conn).await?;
    }
    pending.clear();
    Ok(())
}
