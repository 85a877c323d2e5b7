//! The `inbox` read model: one row per conversation with everything the agent inbox filters and
//! shows, plus tags, per-agent read state and a customer summary in side tables.

use async_trait::async_trait;
use netia_events::account::AccountEvent;
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent, Priority};
use netia_events::customer::CustomerEvent;
use netia_events::{AccountId, ConversationId, DomainEvent, RecordedEvent, UserId};
use sqlx::{AnyConnection, FromRow};

use crate::{Projection, ProjectionError};

/// Characters of the last message kept for the list.
pub const PREVIEW_CHARS: usize = 140;
/// Most rows one query returns.
pub const MAX_PAGE: i64 = 200;

/// One conversation in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct InboxRow {
    pub conversation_id: String,
    pub account_id: String,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub inbox_id: Option<String>,
    pub source: String,
    pub subject: Option<String>,
    /// `open`, `closed` or `snoozed`.
    pub status: String,
    pub snoozed_until: Option<String>,
    /// `normal` or `priority`.
    pub priority: String,
    pub assignee_id: Option<String>,
    /// 1 when archived.
    pub archived: i64,
    pub created_at: String,
    pub last_message_preview: Option<String>,
    pub last_message_at: Option<String>,
    pub last_activity_at: String,
    pub message_count: i64,
    /// Comma-separated, sorted.
    pub tags: Option<String>,
    pub version: i64,
    /// When anything about the conversation last changed (the time of its latest event); rows
    /// last changed before this was recorded fall back to `last_activity_at`.
    pub updated_at: String,
}

/// The order of a page, and what its cursor holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InboxOrder {
    /// Most recently active first, by `(last_activity_at, conversation_id)` descending. A
    /// conversation that becomes active during a traversal moves ahead of the cursor and is not
    /// met again (nor, if it was behind the cursor, at all): this order is for people looking at
    /// the inbox, not for complete traversals.
    #[default]
    Activity,
    /// Oldest first, by the immutable `(created_at, conversation_id)`: a traversal meets every
    /// conversation that existed when it began exactly once, whatever changes meanwhile.
    Created,
}

/// Which agent's "assigned" filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Unassigned,
    User(UserId),
}

/// The filters of SPEC §2, and a cursor: the `(last_activity_at, conversation_id)` of the last row
/// of the previous page.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub account_id: Option<AccountId>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub assignee: Option<Assignee>,
    pub tag: Option<String>,
    pub inbox_id: Option<String>,
    pub customer_id: Option<String>,
    pub source: Option<String>,
    /// Only conversations with customer messages this agent has not read.
    pub unread_for: Option<UserId>,
    /// Case-insensitive search in subject, last message and customer name/email.
    pub text: Option<String>,
    /// With `text`: conversations found to contain it elsewhere (in any message, by
    /// [`crate::conversation::ConversationProjection::mentioning`]), which match as well.
    pub text_in_conversations: Vec<String>,
    pub include_archived: bool,
    /// Only conversations changed at or after this instant (formatted by `format_time`).
    pub updated_after: Option<String>,
    pub order: InboxOrder,
    /// The cursor: the sort time and id of the previous page's last row.
    pub after: Option<(String, String)>,
    pub limit: i64,
}

pub struct InboxProjection;

/// Tags are filled in per row after the query (string aggregation differs between the databases).
const SELECT: &str = "SELECT i.conversation_id, i.account_id, i.customer_id, c.name AS customer_name, \
     c.email AS customer_email, i.inbox_id, i.source, i.subject, i.status, i.snoozed_until, i.priority, \
     i.assignee_id, i.archived, i.created_at, i.last_message_preview, i.last_message_at, i.last_activity_at, \
     i.message_count, CAST(NULL AS TEXT) AS tags, i.version, \
     COALESCE((SELECT u.updated_at FROM inbox_updates u WHERE u.conversation_id = i.conversation_id), \
     i.last_activity_at) AS updated_at \
     FROM inbox i LEFT JOIN inbox_customers c ON c.customer_id = i.customer_id";

/// Records that conversations changed: `(conversation_id, time)` pairs, the latest time kept.
pub(crate) async fn record_updates(
    conn: &mut AnyConnection,
    updates: std::collections::HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<Vec<crate::rows::Cell>> = updates.into_iter().map(|(id, at)| vec![id.into(), at.into()]).collect();
    crate::rows::insert_rows(
        conn,
        "inbox_updates",
        &["conversation_id", "updated_at"],
        &rows,
        "ON CONFLICT (conversation_id) DO UPDATE SET updated_at = excluded.updated_at \
         WHERE inbox_updates.updated_at < excluded.updated_at",
    )
    .await
}

impl InboxProjection {
    /// A page of the inbox in `query.order` (most recently active first by default).
    pub async fn list(conn: &mut AnyConnection, query: &InboxQuery) -> Result<Vec<InboxRow>, ProjectionError> {
        let mut sql = Sql::new(SELECT);
        sql.push(" WHERE 1 = 1");
        Self::filters(&mut sql, query);
        let (column, beyond, direction) = match query.order {
            InboxOrder::Activity => ("i.last_activity_at", "<", "DESC"),
            InboxOrder::Created => ("i.created_at", ">", "ASC"),
        };
        if let Some((at, id)) = &query.after {
            sql.push(&format!(" AND ({column} {beyond} ")).text(at);
            sql.push(&format!(" OR ({column} = ")).text(at);
            sql.push(&format!(" AND i.conversation_id {beyond} "))
                .text(id)
                .push("))");
        }
        sql.push(&format!(
            " ORDER BY {column} {direction}, i.conversation_id {direction} LIMIT "
        ));
        sql.int(query.limit.clamp(1, MAX_PAGE));
        let mut q = sqlx::query_as::<_, InboxRow>(&sql.text);
        for param in &sql.params {
            q = match param {
                Param::Text(v) => q.bind(v.clone()),
                Param::Int(v) => q.bind(*v),
            };
        }
        let mut rows = q.fetch_all(&mut *conn).await?;
        // The page's tags in one query.
        let ids: Vec<String> = rows.iter().map(|r| r.conversation_id.clone()).collect();
        let tags: Vec<(String, String)> = crate::rows::select_in(
            conn,
            "SELECT conversation_id, tag FROM inbox_tags WHERE conversation_id IN ({ids}) ORDER BY tag",
            &ids,
        )
        .await?;
        let mut by_conversation: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (id, tag) in tags {
            by_conversation.entry(id).or_default().push(tag);
        }
        for row in &mut rows {
            row.tags = by_conversation.remove(&row.conversation_id).map(|tags| tags.join(","));
        }
        Ok(rows)
    }

    /// How many conversations match.
    /// One conversation's row, with its tags.
    pub async fn get(conn: &mut AnyConnection, id: ConversationId) -> Result<Option<InboxRow>, ProjectionError> {
        let sql = format!("{SELECT} WHERE i.conversation_id = $1");
        let Some(mut row) = sqlx::query_as::<_, InboxRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let tags: Vec<String> =
            sqlx::query_scalar("SELECT tag FROM inbox_tags WHERE conversation_id = $1 ORDER BY tag")
                .bind(&row.conversation_id)
                .fetch_all(&mut *conn)
                .await?;
        row.tags = (!tags.is_empty()).then(|| tags.join(","));
        Ok(Some(row))
    }

    pub async fn count(conn: &mut AnyConnection, query: &InboxQuery) -> Result<i64, ProjectionError> {
        let mut sql = Sql::new(
            "SELECT COUNT(*) FROM inbox i LEFT JOIN inbox_customers c ON c.customer_id = i.customer_id WHERE 1 = 1",
        );
        Self::filters(&mut sql, query);
        let mut q = sqlx::query_scalar::<_, i64>(&sql.text);
        for param in &sql.params {
            q = match param {
                Param::Text(v) => q.bind(v.clone()),
                Param::Int(v) => q.bind(*v),
            };
        }
        Ok(q.fetch_one(conn).await?)
    }

    fn filters(sql: &mut Sql, q: &InboxQuery) {
        if let Some(account) = q.account_id {
            sql.push(" AND i.account_id = ").text(&account.to_string());
        }
        if !q.include_archived {
            sql.push(" AND i.archived = 0");
        }
        if let Some(status) = &q.status {
            sql.push(" AND i.status = ").text(status);
        }
        if let Some(priority) = &q.priority {
            sql.push(" AND i.priority = ").text(priority);
        }
        match &q.assignee {
            Some(Assignee::Unassigned) => {
                sql.push(" AND i.assignee_id IS NULL");
            }
            Some(Assignee::User(user)) => {
                sql.push(" AND i.assignee_id = ").text(&user.to_string());
            }
            None => {}
        }
        if let Some(tag) = &q.tag {
            sql.push(
                " AND EXISTS (SELECT 1 FROM inbox_tags t WHERE t.conversation_id = i.conversation_id AND t.tag = ",
            )
            .text(tag)
            .push(")");
        }
        if let Some(customer) = &q.customer_id {
            sql.push(" AND i.customer_id = ").text(customer);
        }
        if let Some(inbox) = &q.inbox_id {
            sql.push(" AND i.inbox_id = ").text(inbox);
        }
        if let Some(source) = &q.source {
            sql.push(" AND i.source = ").text(source);
        }
        if let Some(after) = &q.updated_after {
            sql.push(
                " AND COALESCE((SELECT u.updated_at FROM inbox_updates u WHERE u.conversation_id = i.conversation_id), \
                 i.last_activity_at) >= ",
            )
            .text(after);
        }
        if let Some(user) = q.unread_for {
            sql.push(
                " AND i.last_customer_message_version > COALESCE((SELECT r.read_version FROM inbox_reads r \
                 WHERE r.conversation_id = i.conversation_id AND r.user_id = ",
            )
            .text(&user.to_string())
            .push("), 0)");
        }
        if let Some(text) = &q.text {
            let pattern = crate::rows::contains_pattern(text);
            sql.push(" AND (");
            for (i, column) in ["i.subject", "i.last_message_preview", "c.name", "c.email"]
                .iter()
                .enumerate()
            {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push(&format!("LOWER(COALESCE({column}, '')) LIKE "))
                    .text(&pattern)
                    .push(" ESCAPE '\\'");
            }
            for id in &q.text_in_conversations {
                sql.push(" OR i.conversation_id = ").text(id);
            }
            sql.push(")");
        }
    }

    /// Moves the row to `version` if it is behind it; false means the event was applied already.
    async fn advance(
        conn: &mut AnyConnection,
        event: &RecordedEvent,
        activity: Option<&str>,
    ) -> Result<bool, ProjectionError> {
        let done = sqlx::query(
            "UPDATE inbox SET version = $1, last_activity_at = COALESCE($2, last_activity_at) \
             WHERE conversation_id = $3 AND version < $4",
        )
        .bind(event.version)
        .bind(activity.map(str::to_owned))
        .bind(&event.stream_id)
        .bind(event.version)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set(
        conn: &mut AnyConnection,
        id: &str,
        assignments: &str,
        values: Vec<Option<String>>,
    ) -> Result<(), ProjectionError> {
        let sql = format!(
            "UPDATE inbox SET {assignments} WHERE conversation_id = ${}",
            values.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for v in values {
            q = q.bind(v);
        }
        q.bind(id.to_owned()).execute(conn).await?;
        Ok(())
    }

    async fn conversation(&self, conn: &mut AnyConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        let updated =
            std::collections::HashMap::from([(recorded.stream_id.clone(), format_time(recorded.recorded_at))]);
        self.conversation_row(conn, recorded).await?;
        record_updates(conn, updated).await?;
        Ok(())
    }

    async fn conversation_row(
        &self,
        conn: &mut AnyConnection,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        use ConversationEvent::*;
        let event = ConversationEvent::decode(recorded)?;
        let id = recorded.stream_id.as_str();
        if let ConversationCreated(e) = &event {
            let at = format_time(e.created_at);
            sqlx::query(
                "INSERT INTO inbox (conversation_id, account_id, customer_id, inbox_id, source, subject, status, \
                 snoozed_until, priority, assignee_id, archived, created_at, last_message_preview, last_message_at, \
                 last_activity_at, message_count, last_customer_message_version, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'open', NULL, 'normal', NULL, 0, $7, NULL, NULL, $8, 0, 0, $9) \
                 ON CONFLICT (conversation_id) DO NOTHING",
            )
            .bind(id)
            .bind(e.account_id.to_string())
            .bind(e.customer_id.to_string())
            .bind(inbox_of(conn, &e.account_id.to_string(), e.inbox_id).await?)
            .bind(source_name(&serde_json::to_value(e.source).unwrap_or_default()))
            .bind(e.subject.clone())
            .bind(at.clone())
            .bind(at)
            .bind(recorded.version)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        let message = message_of(&event);
        let activity = message.as_ref().map(|(_, at, _)| format_time(*at));
        if !Self::advance(conn, recorded, activity.as_deref()).await? {
            return Ok(());
        }
        if let Some((body, at, from_customer)) = message {
            let preview: String = body.chars().take(PREVIEW_CHARS).collect();
            sqlx::query(
                "UPDATE inbox SET last_message_preview = $1, last_message_at = $2, message_count = message_count + 1, \
                 last_customer_message_version = CASE WHEN $3 = 1 THEN $4 ELSE last_customer_message_version END \
                 WHERE conversation_id = $5",
            )
            .bind(preview)
            .bind(format_time(at))
            .bind(i64::from(from_customer))
            .bind(recorded.version)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        match event {
            ConversationClosed(_) => Self::set(conn, id, "status = 'closed', snoozed_until = NULL", vec![]).await,
            ConversationReopened(_) | ConversationWoken(_) => {
                Self::set(conn, id, "status = 'open', snoozed_until = NULL, archived = 0", vec![]).await
            }
            ConversationSnoozed(e) => {
                Self::set(
                    conn,
                    id,
                    "status = 'snoozed', archived = 0, snoozed_until = $1",
                    vec![Some(format_time(e.until))],
                )
                .await
            }
            PrioritySet(e) => {
                let p = match e.priority {
                    Priority::Priority => "priority",
                    Priority::Normal => "normal",
                };
                Self::set(conn, id, "priority = $1", vec![Some(p.to_owned())]).await
            }
            AgentAssigned(e) => Self::set(conn, id, "assignee_id = $1", vec![e.assignee.map(|u| u.to_string())]).await,
            ConversationArchived(_) => Self::set(conn, id, "archived = 1", vec![]).await,
            ConversationTagged(e) => {
                sqlx::query("INSERT INTO inbox_tags (conversation_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(e.tag)
                    .execute(conn)
                    .await?;
                Ok(())
            }
            ConversationUntagged(e) => {
                sqlx::query("DELETE FROM inbox_tags WHERE conversation_id = $1 AND tag = $2")
                    .bind(id)
                    .bind(e.tag)
                    .execute(conn)
                    .await?;
                Ok(())
            }
            ConversationRead(e) => {
                sqlx::query(
                    "INSERT INTO inbox_reads (conversation_id, user_id, read_version) VALUES ($1, $2, $3) \
                     ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_version = excluded.read_version",
                )
                .bind(id)
                .bind(e.user_id.to_string())
                .bind(recorded.version)
                .execute(conn)
                .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn customer(&self, conn: &mut AnyConnection, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        let (name, email) = match CustomerEvent::decode(recorded)? {
            CustomerEvent::CustomerCreated(e) => (e.identity.name, e.identity.email),
            CustomerEvent::CustomerIdentified(e) => (e.identity.name, e.identity.email),
            CustomerEvent::CustomerMetadataUpdated(_)
            | CustomerEvent::CustomerCameOnline(_)
            | CustomerEvent::CustomerWentOffline(_) => return Ok(()),
            CustomerEvent::CustomerErased(_) => {
                // As deleted, and what their conversations said reads as the log now opens it.
                sqlx::query(
                    "UPDATE inbox SET subject = CASE WHEN subject IS NULL THEN NULL ELSE $1 END, \
                     last_message_preview = CASE WHEN last_message_preview IS NULL THEN NULL ELSE $2 END \
                     WHERE customer_id = $3",
                )
                .bind(netia_events::personal::ERASED)
                .bind(netia_events::personal::ERASED)
                .bind(&recorded.stream_id)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE inbox_customers SET name = NULL, email = NULL, version = $1 WHERE customer_id = $2",
                )
                .bind(recorded.version)
                .bind(&recorded.stream_id)
                .execute(conn)
                .await?;
                return Ok(());
            }
            CustomerEvent::CustomerDeleted(_) => {
                // The conversations stay; the profile shown with them goes.
                sqlx::query(
                    "UPDATE inbox_customers SET name = NULL, email = NULL, version = $1 \
                     WHERE customer_id = $2 AND version < $3",
                )
                .bind(recorded.version)
                .bind(&recorded.stream_id)
                .bind(recorded.version)
                .execute(conn)
                .await?;
                return Ok(());
            }
        };
        sqlx::query(
            "INSERT INTO inbox_customers (customer_id, name, email, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (customer_id) DO UPDATE SET name = COALESCE(excluded.name, inbox_customers.name), \
             email = COALESCE(excluded.email, inbox_customers.email), version = excluded.version \
             WHERE inbox_customers.version < excluded.version",
        )
        .bind(&recorded.stream_id)
        .bind(name)
        .bind(email)
        .bind(recorded.version)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The inbox of a new conversation: the one it names, else (conversations created before every
/// conversation had to name one) its account's primary inbox.
pub(crate) async fn inbox_of(
    conn: &mut AnyConnection,
    account_id: &str,
    named: Option<netia_events::InboxId>,
) -> Result<Option<String>, sqlx::Error> {
    if let Some(inbox) = named {
        return Ok(Some(inbox.to_string()));
    }
    sqlx::query_scalar("SELECT primary_inbox_id FROM inbox_primary WHERE account_id = $1")
        .bind(account_id.to_owned())
        .fetch_optional(conn)
        .await
}

/// For a message event: its body, when it was sent, and whether it came from the customer's side.
pub(crate) fn message_of(
    event: &ConversationEvent,
) -> Option<(std::borrow::Cow<'_, str>, chrono::DateTime<chrono::Utc>, bool)> {
    use ConversationEvent::*;
    let from_customer = |author: &Author| matches!(author, Author::Customer { .. });
    match event {
        CustomerMessagePosted(e) => Some((preview_text(&e.body, &e.attachments), e.sent_at, true)),
        AgentMessagePosted(e) => Some((preview_text(&e.body, &e.attachments), e.sent_at, false)),
        PrivateNoteAdded(e) => Some((preview_text(&e.body, &e.attachments), e.sent_at, false)),
        BotMessagePosted(e) => Some((preview_text(&e.body, &e.attachments), e.sent_at, false)),
        EmailMessageReceived(e) => Some((e.body.as_str().into(), e.sent_at, from_customer(&e.author))),
        SlackMessageReceived(e) => Some((e.body.as_str().into(), e.sent_at, from_customer(&e.author))),
        SmsMessageReceived(e) => Some((e.body.as_str().into(), e.sent_at, true)),
        _ => None,
    }
}

/// A message's text for the inbox: its body, or for a file sent without a caption, the file's name.
fn preview_text<'a>(body: &'a str, files: &[netia_events::conversation::Attachment]) -> std::borrow::Cow<'a, str> {
    match files.first() {
        Some(file) if body.trim().is_empty() => format!("Attachment: {}", file.file_name).into(),
        _ => body.into(),
    }
}

/// SQL text with `$n` placeholders (sqlx's `Any` query builder writes `?`, which PostgreSQL rejects).
struct Sql {
    text: String,
    params: Vec<Param>,
}

enum Param {
    Text(String),
    Int(i64),
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.params.push(Param::Text(value.to_owned()));
        self.text.push_str(&format!("${}", self.params.len()));
        self
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.params.push(Param::Int(value));
        self.text.push_str(&format!("${}", self.params.len()));
        self
    }
}

fn source_name(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or("chat").to_owned()
}

#[async_trait]
impl Projection for InboxProjection {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "inbox",
            "inbox_tags",
            "inbox_reads",
            "inbox_customers",
            "inbox_updates",
            "inbox_primary",
        ]
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX IF NOT EXISTS inbox_by_activity ON inbox (account_id, archived, last_activity_at, conversation_id)",
            "CREATE INDEX IF NOT EXISTS inbox_by_status ON inbox (account_id, status, last_activity_at, conversation_id)",
            "CREATE INDEX IF NOT EXISTS inbox_by_assignee ON inbox (account_id, assignee_id, last_activity_at, conversation_id)",
            "CREATE INDEX IF NOT EXISTS inbox_by_priority ON inbox (account_id, priority, last_activity_at, conversation_id)",
            "CREATE INDEX IF NOT EXISTS inbox_by_inbox ON inbox (account_id, inbox_id, last_activity_at)",
            "CREATE INDEX IF NOT EXISTS inbox_by_source ON inbox (account_id, source, last_activity_at)",
            "CREATE INDEX IF NOT EXISTS inbox_by_creation ON inbox (account_id, created_at, conversation_id)",
            "CREATE INDEX IF NOT EXISTS inbox_tags_by_tag ON inbox_tags (tag, conversation_id)",
        ]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS inbox (\
                conversation_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, customer_id TEXT NOT NULL, \
                inbox_id TEXT, source TEXT NOT NULL, subject TEXT, status TEXT NOT NULL, snoozed_until TEXT, \
                priority TEXT NOT NULL, assignee_id TEXT, archived BIGINT NOT NULL, created_at TEXT NOT NULL, \
                last_message_preview TEXT, last_message_at TEXT, last_activity_at TEXT NOT NULL, \
                message_count BIGINT NOT NULL, last_customer_message_version BIGINT NOT NULL, version BIGINT NOT NULL)",
            // Applying a CustomerErased reads through it (the other indexes are query_indexes).
            "CREATE INDEX IF NOT EXISTS inbox_by_customer ON inbox (customer_id)",
            // A side table rather than a column, so that a deployment's existing inbox table needs
            // no rebuild: rows without an entry changed last before it existed.
            "CREATE TABLE IF NOT EXISTS inbox_updates (conversation_id TEXT PRIMARY KEY, updated_at TEXT NOT NULL)",
            // Each account's primary inbox: where conversations that named none belong.
            "CREATE TABLE IF NOT EXISTS inbox_primary (account_id TEXT PRIMARY KEY, primary_inbox_id TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS inbox_tags (conversation_id TEXT NOT NULL, tag TEXT NOT NULL, \
                PRIMARY KEY (conversation_id, tag))",
            "CREATE TABLE IF NOT EXISTS inbox_reads (conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, \
                read_version BIGINT NOT NULL, PRIMARY KEY (conversation_id, user_id))",
            "CREATE TABLE IF NOT EXISTS inbox_customers (customer_id TEXT PRIMARY KEY, name TEXT, email TEXT, \
                version BIGINT NOT NULL)",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        crate::inbox_batch::apply_batch(conn, events).await
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.stream_type == ConversationEvent::STREAM_TYPE {
            self.conversation(conn, event).await
        } else if event.stream_type == CustomerEvent::STREAM_TYPE {
            self.customer(conn, event).await
        } else if event.stream_type == AccountEvent::STREAM_TYPE {
            if let AccountEvent::AccountRegistered(e) = AccountEvent::decode(event)? {
                sqlx::query(
                    "INSERT INTO inbox_primary (account_id, primary_inbox_id) VALUES ($1, $2) \
                     ON CONFLICT (account_id) DO NOTHING",
                )
                .bind(e.account_id.to_string())
                .bind(e.primary_inbox_id.to_string())
                .execute(conn)
                .await?;
            }
            Ok(())
        } else {
            Ok(())
        }
    }
}
