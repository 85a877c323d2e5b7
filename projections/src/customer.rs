//! The `customers` read model: profile, identifiers, last seen, number of conversations.

use async_trait::async_trait;
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent};
use netia_events::customer::CustomerEvent;
use netia_events::{CustomerId, DomainEvent, RecordedEvent};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Projection, ProjectionError};

/// One customer as agents see it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct CustomerRow {
    pub id: String,
    pub account_id: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// JSON object text.
    pub metadata: String,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub conversation_count: i64,
    /// The customer stream's version applied last (guards against applying an event twice).
    pub version: i64,
}

pub struct CustomerProjection;

const COLUMNS: &str = "id, account_id, external_id, email, name, phone, metadata, created_at, last_seen_at, \
                       conversation_count, version";

impl CustomerProjection {
    pub async fn get(conn: &mut AnyConnection, id: CustomerId) -> Result<Option<CustomerRow>, ProjectionError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(conn)
                .await?,
        )
    }

    /// Every customer, in id order (for comparisons and exports).
    pub async fn all(conn: &mut AnyConnection) -> Result<Vec<CustomerRow>, ProjectionError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers ORDER BY id"))
            .fetch_all(conn)
            .await?)
    }

    async fn customer_event(
        &self,
        conn: &mut AnyConnection,
        recorded: &RecordedEvent,
        event: CustomerEvent,
    ) -> Result<(), ProjectionError> {
        let id = recorded.stream_id.as_str();
        match event {
            CustomerEvent::CustomerCreated(e) => {
                let metadata = Value::Object(e.metadata).to_string();
                sqlx::query(
                    "INSERT INTO customers (id, account_id, external_id, email, name, phone, metadata, created_at, \
                     last_seen_at, conversation_count, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, \
                             (SELECT COUNT(*) FROM customer_conversations WHERE customer_id = $9), $10) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(e.account_id.to_string())
                .bind(e.identity.external_id)
                .bind(e.identity.email)
                .bind(e.identity.name)
                .bind(e.identity.phone)
                .bind(metadata)
                .bind(format_time(recorded.recorded_at))
                .bind(id)
                .bind(recorded.version)
                .execute(&mut *conn)
                .await?;
            }
            CustomerEvent::CustomerIdentified(e) => {
                sqlx::query(
                    "UPDATE customers SET external_id = COALESCE($1, external_id), email = COALESCE($2, email), \
                     name = COALESCE($3, name), phone = COALESCE($4, phone), version = $5 \
                     WHERE id = $6 AND version < $7",
                )
                .bind(e.identity.external_id)
                .bind(e.identity.email)
                .bind(e.identity.name)
                .bind(e.identity.phone)
                .bind(recorded.version)
                .bind(id)
                .bind(recorded.version)
                .execute(&mut *conn)
                .await?;
            }
            CustomerEvent::CustomerMetadataUpdated(e) => {
                let row = sqlx::query("SELECT metadata, version FROM customers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(()) };
                if row.try_get::<i64, _>("version")? >= recorded.version {
                    return Ok(());
                }
                let text: String = row.try_get("metadata")?;
                let mut metadata: Map<String, Value> =
                    serde_json::from_str(&text).map_err(|e| ProjectionError::Invalid(format!("metadata: {e}")))?;
                for (key, value) in e.changes {
                    if value.is_null() {
                        metadata.remove(&key);
                    } else {
                        metadata.insert(key, value);
                    }
                }
                sqlx::query("UPDATE customers SET metadata = $1, version = $2 WHERE id = $3")
                    .bind(Value::Object(metadata).to_string())
                    .bind(recorded.version)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn conversation_event(
        &self,
        conn: &mut AnyConnection,
        event: ConversationEvent,
    ) -> Result<(), ProjectionError> {
        use ConversationEvent::*;
        let seen = match event {
            ConversationCreated(e) => {
                let linked = sqlx::query(
                    "INSERT INTO customer_conversations (customer_id, conversation_id) VALUES ($1, $2) \
                     ON CONFLICT (customer_id, conversation_id) DO NOTHING",
                )
                .bind(e.customer_id.to_string())
                .bind(e.conversation_id.to_string())
                .execute(&mut *conn)
                .await?;
                if linked.rows_affected() == 1 {
                    sqlx::query("UPDATE customers SET conversation_count = conversation_count + 1 WHERE id = $1")
                        .bind(e.customer_id.to_string())
                        .execute(&mut *conn)
                        .await?;
                }
                return Ok(());
            }
            CustomerMessagePosted(e) => Some((e.customer_id, e.sent_at)),
            SmsMessageReceived(e) => Some((e.customer_id, e.sent_at)),
            EmailMessageReceived(e) => match e.author {
                Author::Customer { customer_id } => Some((customer_id, e.sent_at)),
                Author::Agent { .. } => None,
            },
            SlackMessageReceived(e) => match e.author {
                Author::Customer { customer_id } => Some((customer_id, e.sent_at)),
                Author::Agent { .. } => None,
            },
            _ => None,
        };
        if let Some((customer_id, at)) = seen {
            sqlx::query(
                "UPDATE customers SET last_seen_at = $1 WHERE id = $2 AND (last_seen_at IS NULL OR last_seen_at < $3)",
            )
            .bind(format_time(at))
            .bind(customer_id.to_string())
            .bind(format_time(at))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for CustomerProjection {
    fn name(&self) -> &'static str {
        "customer"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["customers", "customer_conversations"]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS customers (\
                id TEXT PRIMARY KEY, account_id TEXT NOT NULL, external_id TEXT, email TEXT, name TEXT, \
                phone TEXT, metadata TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT, \
                conversation_count BIGINT NOT NULL, version BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS customers_by_account ON customers (account_id, created_at)",
            "CREATE INDEX IF NOT EXISTS customers_by_external_id ON customers (account_id, external_id)",
            "CREATE INDEX IF NOT EXISTS customers_by_email ON customers (account_id, email)",
            "CREATE TABLE IF NOT EXISTS customer_conversations (\
                customer_id TEXT NOT NULL, conversation_id TEXT NOT NULL, \
                PRIMARY KEY (customer_id, conversation_id))",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.stream_type == CustomerEvent::STREAM_TYPE {
            self.customer_event(conn, event, CustomerEvent::decode(event)?).await
        } else if event.stream_type == ConversationEvent::STREAM_TYPE {
            self.conversation_event(conn, ConversationEvent::decode(event)?).await
        } else {
            Ok(())
        }
    }
}
