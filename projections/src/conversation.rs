//! The `conversation` read model: each conversation's messages in order, with kind, author, private
//! flag, seen and delivery state.

use std::collections::HashMap;

use async_trait::async_trait;
use netia_events::account::AccountEvent;
use netia_events::chain::format_time;
use netia_events::conversation::{Attachment, Author, ConversationEvent, MessageFormat};
use netia_events::customer::CustomerEvent;
use netia_events::{ConversationId, DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, FromRow};

use crate::rows::{Cell, add_column_if_missing, insert_new_rows, insert_rows, select_in};
use crate::{Projection, ProjectionError};

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
    /// When the other side saw it (customer messages: when an agent first read the conversation
    /// after it). Read as [`SEEN_AT`]: stored in the row only by versions before read receipts had
    /// their own table; written as `None`.
    pub seen_at: Option<String>,
    /// `sent` until a channel reports otherwise.
    pub delivery_status: String,
    /// The name of an external agent (a Slack member who is no Netia user); `None` for everyone
    /// else (customers and agents are named by id).
    pub author_name: Option<String>,
    /// How `body` is meant to be read: `text` or `markdown` (message events from version 2; every
    /// earlier message is `text`).
    pub format: String,
    /// The files it carries, as the JSON array of the event's
    /// [`netia_events::conversation::Attachment`]s (`[]` for none).
    pub attachments: String,
}

impl MessageRow {
    /// The files this message carries (none when the stored JSON does not decode).
    pub fn attachment_list(&self) -> Vec<Attachment> {
        serde_json::from_str(&self.attachments).unwrap_or_default()
    }
}

pub struct ConversationProjection;

/// The columns a message row is stored with.
const COLUMNS: &str = "message_id, conversation_id, account_id, version, kind, customer_id, user_id, body, private, \
     client_message_id, external_id, sent_at, seen_at, delivery_status, author_name, format, attachments";

/// When a message of `conversation_messages` was seen, as SQL over the row: the time it was stored
/// with (read receipts recorded by versions that still rewrote message rows), else, for a
/// customer's message, the time of the conversation's first read receipt after it
/// (`conversation_reads`, found through its primary key). Agents' messages have none.
pub const SEEN_AT: &str = "COALESCE(conversation_messages.seen_at, CASE WHEN conversation_messages.customer_id \
     IS NOT NULL THEN (SELECT r.read_at FROM conversation_reads r WHERE r.conversation_id = \
     conversation_messages.conversation_id AND r.version > conversation_messages.version ORDER BY r.version \
     LIMIT 1) END)";

/// [`COLUMNS`] as a [`MessageRow`] is read: `seen_at` is [`SEEN_AT`] (made once).
fn selected() -> &'static str {
    static SELECTED: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| COLUMNS.replace(" seen_at,", &format!(" {SEEN_AT} AS seen_at,")));
    &SELECTED
}

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
            "SELECT {} FROM conversation_messages WHERE conversation_id = $1 AND version > $2{private} \
             ORDER BY version LIMIT $3",
            selected()
        ))
        .bind(id.to_string())
        .bind(after_version)
        .bind(limit.clamp(1, 1_000))
        .fetch_all(conn)
        .await?)
    }

    /// The conversations of `account_id` with a message or note containing `text` (case-insensitive),
    /// at most `limit`, most recently written first: what an inbox search (`q`) finds beyond the
    /// last message ([`crate::inbox::InboxQuery::text_in_conversations`]).
    pub async fn mentioning(
        conn: &mut AnyConnection,
        account_id: &str,
        text: &str,
        limit: i64,
    ) -> Result<Vec<String>, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT conversation_id FROM conversation_messages WHERE account_id = $1 AND LOWER(body) LIKE $2 \
             ESCAPE '\\' GROUP BY conversation_id ORDER BY MAX(sent_at) DESC LIMIT $3",
        )
        .bind(account_id)
        .bind(crate::rows::contains_pattern(text))
        .bind(limit.clamp(1, 1_000))
        .fetch_all(conn)
        .await?)
    }

    /// The account a conversation belongs to, once the read model has seen it created.
    pub async fn account_of(conn: &mut AnyConnection, id: ConversationId) -> Result<Option<String>, ProjectionError> {
        Ok(
            sqlx::query_scalar("SELECT account_id FROM conversation_accounts WHERE conversation_id = $1")
                .bind(id.to_string())
                .fetch_optional(conn)
                .await?,
        )
    }

    /// The Netia account that linked Twilio number `from_number` of Twilio account `account_sid`.
    pub async fn by_twilio_number(
        conn: &mut AnyConnection,
        account_sid: &str,
        from_number: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let sql = "SELECT account_id FROM conversation_twilio_numbers WHERE account_sid = $1 AND from_number = $2";
        lookup(conn, sql, account_sid, from_number).await
    }

    /// Every linked Gmail mailbox: (account, address).
    pub async fn gmail_mailboxes(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, ProjectionError> {
        let sql = "SELECT account_id, email_address FROM conversation_gmail_mailboxes ORDER BY account_id";
        Ok(sqlx::query_as(sql).fetch_all(conn).await?)
    }

    /// The Netia account that linked Gmail mailbox `email_address`.
    pub async fn by_gmail_mailbox(
        conn: &mut AnyConnection,
        email_address: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let sql = "SELECT account_id FROM conversation_gmail_mailboxes WHERE email_address = $1";
        Ok(sqlx::query_scalar(sql)
            .bind(email_address.to_owned())
            .fetch_optional(conn)
            .await?)
    }

    /// The conversation of account `account_id` that sent or received the email `email_message_id`
    /// (with its angle brackets).
    pub async fn by_email_message_id(
        conn: &mut AnyConnection,
        account_id: &str,
        email_message_id: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let sql = "SELECT conversation_id FROM conversation_email_ids WHERE account_id = $1 AND email_message_id = $2";
        lookup(conn, sql, account_id, email_message_id).await
    }

    /// The (account, inbox) whose inbound token hashes to `token_sha256`, or whose address has
    /// `local_part` (`by_token: false`).
    pub async fn inbound_inbox(
        conn: &mut AnyConnection,
        key: &str,
        by_token: bool,
    ) -> Result<Option<(String, String)>, ProjectionError> {
        let column = if by_token { "token_sha256" } else { "local_part" };
        Ok(sqlx::query_as(&format!(
            "SELECT account_id, inbox_id FROM conversation_inbound_addresses WHERE {column} = $1"
        ))
        .bind(key.to_owned())
        .fetch_optional(conn)
        .await?)
    }

    /// The conversation (and its account) mirrored in Slack thread `thread_ts` of `channel_id`.
    pub async fn by_slack_thread(
        conn: &mut AnyConnection,
        channel_id: &str,
        thread_ts: &str,
    ) -> Result<Option<(String, String)>, ProjectionError> {
        Ok(sqlx::query_as(
            "SELECT conversation_id, account_id FROM conversation_slack_threads WHERE channel_id = $1 AND thread_ts = $2",
        )
        .bind(channel_id.to_owned())
        .bind(thread_ts.to_owned())
        .fetch_optional(conn)
        .await?)
    }

    pub async fn message(conn: &mut AnyConnection, message_id: &str) -> Result<Option<MessageRow>, ProjectionError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {} FROM conversation_messages WHERE message_id = $1",
            selected()
        ))
        .bind(message_id.to_owned())
        .fetch_optional(conn)
        .await?)
    }

    /// The message of conversation `id` that carries the attachment stored under `key` (keys are
    /// chosen by Netia: letters, digits, `-` and `/`, so they hold no `LIKE` wildcard).
    pub async fn message_with_attachment(
        conn: &mut AnyConnection,
        id: ConversationId,
        key: &str,
    ) -> Result<Option<(MessageRow, Attachment)>, ProjectionError> {
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/') {
            return Ok(None);
        }
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {} FROM conversation_messages WHERE conversation_id = $1 AND attachments LIKE $2",
            selected()
        ))
        .bind(id.to_string())
        .bind(format!("%\"{key}\"%"))
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().find_map(|row| {
            let found = row.attachment_list().into_iter().find(|a| a.key == key)?;
            Some((row, found))
        }))
    }

    /// The message `author` sent with this idempotency key in this conversation (keys are scoped
    /// to their author: another author's message under the same key is not it).
    pub async fn message_by_client_id(
        conn: &mut AnyConnection,
        id: ConversationId,
        author: &Author,
        client_message_id: &str,
    ) -> Result<Option<MessageRow>, ProjectionError> {
        let (column, author_id) = match author {
            Author::Customer { customer_id } => ("customer_id", customer_id.to_string()),
            Author::Agent { user_id } => ("user_id", user_id.to_string()),
            // External agents write only through channels, which have no idempotency keys.
            Author::ExternalAgent { .. } => return Ok(None),
        };
        Ok(sqlx::query_as(&format!(
            "SELECT {} FROM conversation_messages \
             WHERE conversation_id = $1 AND client_message_id = $2 AND {column} = $3",
            selected()
        ))
        .bind(id.to_string())
        .bind(client_message_id.to_owned())
        .bind(author_id)
        .fetch_optional(conn)
        .await?)
    }
}

/// The one text column `sql` selects with parameters `a` and `b`, if a row matches.
async fn lookup(conn: &mut AnyConnection, sql: &str, a: &str, b: &str) -> Result<Option<String>, ProjectionError> {
    let found: Option<(String,)> = sqlx::query_as(sql)
        .bind(a.to_owned())
        .bind(b.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(found.map(|(value,)| value))
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
    format: MessageFormat,
    attachments: &'a [Attachment],
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
            format: MessageFormat::Text,
            attachments: &[],
        }
    }

    fn files(mut self, attachments: &'a [Attachment]) -> Self {
        self.attachments = attachments;
        self
    }

    fn format(mut self, format: MessageFormat) -> Self {
        self.format = format;
        self
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
        let (customer_id, user_id, author_name) = match self.author {
            Some(Author::Customer { customer_id }) => (Some(customer_id.to_string()), None, None),
            Some(Author::Agent { user_id }) => (None, Some(user_id.to_string()), None),
            Some(Author::ExternalAgent { name, .. }) => (None, None, Some(name)),
            None => (None, None, None),
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
            author_name,
            format: self.format.as_str().to_owned(),
            attachments: serde_json::to_string(self.attachments).unwrap_or_else(|_| "[]".to_owned()),
        }
    }
}

#[async_trait]
impl Projection for ConversationProjection {
    fn name(&self) -> &'static str {
        "conversation"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "conversation_accounts",
            "conversation_messages",
            "conversation_reads",
            "conversation_slack_threads",
            "conversation_twilio_numbers",
            "conversation_gmail_mailboxes",
            "conversation_email_ids",
            "conversation_inbound_addresses",
        ]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS conversation_accounts (conversation_id TEXT PRIMARY KEY, \
                account_id TEXT NOT NULL, customer_id TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS conversation_messages (\
                message_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, account_id TEXT NOT NULL, \
                version BIGINT NOT NULL, kind TEXT NOT NULL, customer_id TEXT, user_id TEXT, body TEXT NOT NULL, \
                private BIGINT NOT NULL, client_message_id TEXT, external_id TEXT, sent_at TEXT NOT NULL, \
                seen_at TEXT, delivery_status TEXT NOT NULL, author_name TEXT, format TEXT NOT NULL DEFAULT 'text', \
                attachments TEXT NOT NULL DEFAULT '[]')",
            "CREATE INDEX IF NOT EXISTS conversation_messages_in_order \
                ON conversation_messages (conversation_id, version)",
            // Every read receipt (`ConversationRead`): a customer's message was seen at the first
            // one after it (`SEEN_AT`). A receipt is one small row, where marking the messages it
            // covers rewrote every one of them.
            "CREATE TABLE IF NOT EXISTS conversation_reads (conversation_id TEXT NOT NULL, \
                version BIGINT NOT NULL, read_at TEXT NOT NULL, PRIMARY KEY (conversation_id, version))",
            "CREATE TABLE IF NOT EXISTS conversation_slack_threads (channel_id TEXT NOT NULL, \
                thread_ts TEXT NOT NULL, conversation_id TEXT NOT NULL, account_id TEXT NOT NULL, \
                PRIMARY KEY (channel_id, thread_ts))",
            // The Netia account of each linked Twilio number (Twilio's webhooks name the number).
            "CREATE TABLE IF NOT EXISTS conversation_twilio_numbers (account_sid TEXT NOT NULL, \
                from_number TEXT NOT NULL, account_id TEXT NOT NULL, PRIMARY KEY (account_sid, from_number))",
            // The Netia account of each linked Gmail mailbox (the sync visits each).
            "CREATE TABLE IF NOT EXISTS conversation_gmail_mailboxes (email_address TEXT PRIMARY KEY, \
                account_id TEXT NOT NULL)",
            // Every Message-ID of an email we sent or received, with its conversation: threading.
            "CREATE TABLE IF NOT EXISTS conversation_email_ids (account_id TEXT NOT NULL, \
                email_message_id TEXT NOT NULL, conversation_id TEXT NOT NULL, PRIMARY KEY (account_id, email_message_id))",
            // Each inbox's inbound address and webhook token (its SHA-256).
            "CREATE TABLE IF NOT EXISTS conversation_inbound_addresses (token_sha256 TEXT PRIMARY KEY, \
                local_part TEXT NOT NULL, account_id TEXT NOT NULL, inbox_id TEXT NOT NULL)",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        // Tables made before external agents: none of their messages had an author name.
        add_column_if_missing(conn, "conversation_messages", "author_name", "TEXT").await?;
        // Tables made before message events version 2: every message they hold was plain text.
        add_column_if_missing(conn, "conversation_messages", "format", "TEXT NOT NULL DEFAULT 'text'").await?;
        // Tables made before attachments: no message carried a file.
        add_column_if_missing(
            conn,
            "conversation_messages",
            "attachments",
            "TEXT NOT NULL DEFAULT '[]'",
        )
        .await?;
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event))
            .await
            .map_err(|(_, e)| e)
    }

    /// Reads the accounts of the conversations a batch touches once, collects its messages and
    /// read receipts in memory, then inserts both with multi-row statements (a receipt marks
    /// nothing in place: [`SEEN_AT`] finds it when a message is read).
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        use ConversationEvent::*;
        let first = events.first().map_or(0, |e| e.global_position);
        let ids = crate::rows::stream_ids(events, ConversationEvent::STREAM_TYPE);
        let select = "SELECT conversation_id, account_id FROM conversation_accounts WHERE conversation_id IN ({ids})";
        let loaded: Vec<(String, String)> = select_in(conn, select, &ids).await.map_err(|e| (first, e.into()))?;
        let mut accounts: HashMap<String, String> = loaded.into_iter().collect();
        let mut links: Vec<Vec<Cell>> = Vec::new();
        let mut messages: Vec<MessageRow> = Vec::new();
        let mut reads: Vec<Vec<Cell>> = Vec::new();
        let mut threads: Vec<Vec<Cell>> = Vec::new();
        let mut statuses: Vec<(String, String)> = Vec::new();
        let mut relinks: Vec<(&str, &[&str], String, Option<Vec<String>>)> = Vec::new();
        const NUMBERS: (&str, &[&str]) = ("conversation_twilio_numbers", &["account_sid", "from_number"]);
        const MAILBOXES: (&str, &[&str]) = ("conversation_gmail_mailboxes", &["email_address"]);
        let mut addresses: Vec<(String, netia_events::account::InboundEmailAddressIssued)> = Vec::new();
        let mut email_ids: Vec<Vec<Cell>> = Vec::new();
        // Customers erased in this batch (ADR 0023): their conversations' messages read as the
        // log now opens them, after this batch's own inserts.
        let mut erased: Vec<String> = Vec::new();
        for event in events {
            if event.stream_type == AccountEvent::STREAM_TYPE {
                match AccountEvent::decode(event).map_err(|e| (event.global_position, e.into()))? {
                    AccountEvent::TwilioLinked(e) => {
                        let linked = Some(vec![e.account_sid, e.from_number]);
                        relinks.push((NUMBERS.0, NUMBERS.1, event.stream_id.clone(), linked));
                    }
                    AccountEvent::TwilioUnlinked(_) => {
                        relinks.push((NUMBERS.0, NUMBERS.1, event.stream_id.clone(), None))
                    }
                    AccountEvent::GmailLinked(e) => {
                        let linked = Some(vec![e.email_address]);
                        relinks.push((MAILBOXES.0, MAILBOXES.1, event.stream_id.clone(), linked));
                    }
                    AccountEvent::GmailUnlinked(_) => {
                        relinks.push((MAILBOXES.0, MAILBOXES.1, event.stream_id.clone(), None));
                    }
                    AccountEvent::InboundEmailAddressIssued(e) => addresses.push((event.stream_id.clone(), e)),
                    _ => {}
                }
                continue;
            }
            if event.stream_type == CustomerEvent::STREAM_TYPE && event.event_type == "CustomerErased" {
                erased.push(event.stream_id.clone());
            }
            if event.stream_type != ConversationEvent::STREAM_TYPE {
                continue;
            }
            let decoded = ConversationEvent::decode_shared(event).map_err(|e| (event.global_position, e.into()))?;
            let decoded = &*decoded;
            match decoded {
                ConversationCreated(e) => {
                    if !accounts.contains_key(&event.stream_id) {
                        accounts.insert(event.stream_id.clone(), e.account_id.to_string());
                        links.push(vec![
                            event.stream_id.clone().into(),
                            e.account_id.to_string().into(),
                            e.customer_id.to_string().into(),
                        ]);
                    }
                }
                ConversationRead(_) => {
                    // An agent has read everything before this event: the customer's messages are seen.
                    reads.push(vec![
                        event.stream_id.clone().into(),
                        event.version.into(),
                        format_time(event.recorded_at).into(),
                    ]);
                }
                EmailMessageReceived(_) | EmailNotificationSent(_) => {
                    let id = match &decoded {
                        EmailMessageReceived(e) => e.email_message_id.clone(),
                        EmailNotificationSent(e) => e.email_message_id.clone(),
                        _ => unreachable!(),
                    };
                    if let Some(account) = accounts.get(&event.stream_id) {
                        email_ids.push(vec![account.clone().into(), id.into(), event.stream_id.clone().into()]);
                    }
                    if let (Some(m), Some(account)) = (new_message(decoded), accounts.get(&event.stream_id)) {
                        messages.push(m.into_row(event, account));
                    }
                }
                SmsStatusUpdated(e) => {
                    let id = e.message_id.to_string();
                    match messages.iter_mut().find(|m| m.message_id == id) {
                        Some(m) => m.delivery_status = e.status.clone(),
                        None => statuses.push((id, e.status.clone())),
                    }
                }
                SlackThreadStarted(e) => {
                    if let Some(account) = accounts.get(&event.stream_id) {
                        threads.push(vec![
                            e.channel_id.clone().into(),
                            e.thread_ts.clone().into(),
                            event.stream_id.clone().into(),
                            account.clone().into(),
                        ]);
                    }
                }
                _ => {
                    if let (Some(m), Some(account)) = (new_message(decoded), accounts.get(&event.stream_id)) {
                        messages.push(m.into_row(event, account));
                    }
                }
            }
        }
        let write = async {
            insert_rows(
                conn,
                "conversation_reads",
                &["conversation_id", "version", "read_at"],
                &reads,
                "ON CONFLICT (conversation_id, version) DO NOTHING",
            )
            .await?;
            insert_rows(
                conn,
                "conversation_accounts",
                &["conversation_id", "account_id", "customer_id"],
                &links,
                "ON CONFLICT (conversation_id) DO NOTHING",
            )
            .await?;
            insert_rows(
                conn,
                "conversation_slack_threads",
                &["channel_id", "thread_ts", "conversation_id", "account_id"],
                &threads,
                "ON CONFLICT (channel_id, thread_ts) DO NOTHING",
            )
            .await?;
            let rows: Vec<Vec<Cell>> = messages.into_iter().map(MessageRow::into_cells).collect();
            let columns: Vec<&str> = COLUMNS.split(", ").collect();
            // Each message once in the log: a plain insert unless one is there already.
            insert_new_rows(
                conn,
                "conversation_messages",
                &columns,
                &rows,
                "ON CONFLICT (message_id) DO NOTHING",
            )
            .await?;
            // Channel links, in log order: an account has one number and one mailbox; a number and
            // a mailbox, one account.
            for (table, columns, account, linked) in &relinks {
                relink(conn, table, columns, account, linked.as_deref()).await?;
            }
            insert_rows(
                conn,
                "conversation_email_ids",
                &["account_id", "email_message_id", "conversation_id"],
                &email_ids,
                "ON CONFLICT (account_id, email_message_id) DO NOTHING",
            )
            .await?;
            for (account, issued) in &addresses {
                sqlx::query("DELETE FROM conversation_inbound_addresses WHERE account_id = $1 AND inbox_id = $2")
                    .bind(account.clone())
                    .bind(issued.inbox_id.to_string())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO conversation_inbound_addresses (token_sha256, local_part, account_id, inbox_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (token_sha256) DO NOTHING",
                )
                .bind(issued.token_sha256.clone())
                .bind(issued.local_part.clone())
                .bind(account.clone())
                .bind(issued.inbox_id.to_string())
                .execute(&mut *conn)
                .await?;
            }
            // Delivery reports of messages stored before this batch (a few per batch at most).
            for (message_id, status) in &statuses {
                sqlx::query("UPDATE conversation_messages SET delivery_status = $1 WHERE message_id = $2")
                    .bind(status.clone())
                    .bind(message_id.clone())
                    .execute(&mut *conn)
                    .await?;
            }
            for customer in &erased {
                sqlx::query(
                    "UPDATE conversation_messages SET body = $1, attachments = '[]', client_message_id = \
                     CASE WHEN client_message_id IS NULL THEN NULL ELSE $2 END WHERE conversation_id IN \
                     (SELECT conversation_id FROM conversation_accounts WHERE customer_id = $3)",
                )
                .bind(netia_events::personal::ERASED)
                .bind(netia_events::personal::ERASED)
                .bind(customer.clone())
                .execute(&mut *conn)
                .await?;
            }
            Ok::<(), sqlx::Error>(())
        };
        write.await.map_err(|e| (first, e.into()))
    }
}

impl MessageRow {
    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.message_id.into(),
            self.conversation_id.into(),
            self.account_id.into(),
            self.version.into(),
            self.kind.into(),
            self.customer_id.into(),
            self.user_id.into(),
            self.body.into(),
            self.private.into(),
            self.client_message_id.into(),
            self.external_id.into(),
            self.sent_at.into(),
            self.seen_at.into(),
            self.delivery_status.into(),
            self.author_name.into(),
            self.format.into(),
            self.attachments.into(),
        ]
    }
}

/// The message a conversation event adds, as the read model stores it (`None` for other events).
pub fn message_row(event: &RecordedEvent, account_id: &str) -> Result<Option<MessageRow>, netia_events::EventError> {
    if event.stream_type != ConversationEvent::STREAM_TYPE {
        return Ok(None);
    }
    Ok(message_row_of(&ConversationEvent::decode(event)?, event, account_id))
}

/// [`message_row`] for an event already decoded.
pub fn message_row_of(decoded: &ConversationEvent, event: &RecordedEvent, account_id: &str) -> Option<MessageRow> {
    new_message(decoded).map(|m| m.into_row(event, account_id))
}

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
                .format(e.format)
                .files(&e.attachments)
        }
        AgentMessagePosted(e) => {
            let author = Author::Agent { user_id: e.user_id };
            NewMessage::new(e.message_id, "agent", Some(author), &e.body, e.sent_at)
                .client(e.client_message_id.as_ref())
                .format(e.format)
                .files(&e.attachments)
        }
        PrivateNoteAdded(e) => {
            let author = Author::Agent { user_id: e.user_id };
            NewMessage::new(e.message_id, "note", Some(author), &e.body, e.sent_at)
                .client(e.client_message_id.as_ref())
                .format(e.format)
                .files(&e.attachments)
                .private()
        }
        BotMessagePosted(e) => NewMessage::new(e.message_id, "bot", None, &e.body, e.sent_at)
            .format(e.format)
            .files(&e.attachments),
        EmailMessageReceived(e) => NewMessage::new(e.message_id, "email", Some(e.author.clone()), &e.body, e.sent_at)
            .external(&e.email_message_id),
        SlackMessageReceived(e) => NewMessage::new(e.message_id, "slack", Some(e.author.clone()), &e.body, e.sent_at)
            .external(&e.slack_event_id),
        SmsMessageReceived(e) => {
            let author = Author::Customer {
                customer_id: e.customer_id,
            };
            NewMessage::new(e.message_id, "sms", Some(author), &e.body, e.sent_at).external(&e.message_sid)
        }
        _ => return None,
    })
}

/// Links `account` in `table` to the key `linked` (values of `columns`), or unlinks it (`None`):
/// the account's previous row goes, and so does the key's previous account.
async fn relink(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    account: &str,
    linked: Option<&[String]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
        .bind(account.to_owned())
        .execute(&mut *conn)
        .await?;
    let Some(values) = linked else { return Ok(()) };
    let matches: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let delete_sql = format!("DELETE FROM {table} WHERE {}", matches.join(" AND "));
    let mut statement = sqlx::query(&delete_sql);
    for value in values {
        statement = statement.bind(value.clone());
    }
    statement.execute(&mut *conn).await?;
    let placeholders: Vec<String> = (1..=columns.len() + 1).map(|i| format!("${i}")).collect();
    let insert_sql = format!(
        "INSERT INTO {table} ({}, account_id) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut statement = sqlx::query(&insert_sql);
    for value in values {
        statement = statement.bind(value.clone());
    }
    statement.bind(account.to_owned()).execute(&mut *conn).await?;
    Ok(())
}
