//! The `customers` read model: profile, identifiers, last seen, number of conversations.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use netia_events::chain::format_time;
use netia_events::conversation::{Author, ConversationEvent};
use netia_events::customer::CustomerEvent;
use netia_events::{AccountId, CustomerId, DomainEvent, RecordedEvent};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, FromRow};

use crate::rows::{Cell, add_column_if_missing, insert_rows, replace_on, select_in};
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
    /// 1 when the account vouches for the external id (identity verification), else 0.
    pub verified: i64,
}

pub struct CustomerProjection;

const COLUMNS: &str = "id, account_id, external_id, email, name, phone, metadata, created_at, last_seen_at, conversation_count, version, verified";

impl CustomerProjection {
    pub async fn get(conn: &mut AnyConnection, id: CustomerId) -> Result<Option<CustomerRow>, ProjectionError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(conn)
                .await?,
        )
    }

    /// An account's customers, newest first, optionally matching `text` (name, email, phone or
    /// external id, case-insensitive), after the `(created_at, id)` cursor.
    pub async fn list(
        conn: &mut AnyConnection,
        account: AccountId,
        text: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<CustomerRow>, ProjectionError> {
        let mut sql = format!("SELECT {COLUMNS} FROM customers WHERE account_id = $1");
        let pattern = text.map(crate::rows::contains_pattern);
        if pattern.is_some() {
            sql.push_str(
                " AND (LOWER(COALESCE(name, '')) LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $2 ESCAPE '\\' \
                 OR LOWER(COALESCE(phone, '')) LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(external_id, '')) LIKE $2 ESCAPE '\\')",
            );
        } else {
            sql.push_str(" AND $2 = $2");
        }
        if after.is_some() {
            sql.push_str(" AND (created_at < $3 OR (created_at = $3 AND id < $4))");
        } else {
            sql.push_str(" AND $3 = $3 AND $4 = $4");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $5");
        let (at, id) = after.unwrap_or(("", ""));
        Ok(sqlx::query_as(&sql)
            .bind(account.to_string())
            .bind(pattern.unwrap_or_default())
            .bind(at.to_owned())
            .bind(id.to_owned())
            .bind(limit.clamp(1, 200))
            .fetch_all(conn)
            .await?)
    }

    /// The account's customer with this external id (the newest, if several).
    pub async fn by_external_id(
        conn: &mut AnyConnection,
        account: AccountId,
        external_id: &str,
    ) -> Result<Option<CustomerRow>, ProjectionError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM customers WHERE account_id = $1 AND external_id = $2 ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(account.to_string())
        .bind(external_id.to_owned())
        .fetch_optional(conn)
        .await?)
    }

    /// The account's oldest customer with this email address (compared case-insensitively).
    pub async fn by_email(
        conn: &mut AnyConnection,
        account: AccountId,
        email: &str,
    ) -> Result<Option<CustomerRow>, ProjectionError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM customers WHERE account_id = $1 AND LOWER(email) = $2 ORDER BY created_at LIMIT 1"
        ))
        .bind(account.to_string())
        .bind(email.to_lowercase())
        .fetch_optional(conn)
        .await?)
    }

    /// Every customer, in id order (for comparisons and exports).
    pub async fn all(conn: &mut AnyConnection) -> Result<Vec<CustomerRow>, ProjectionError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers ORDER BY id"))
            .fetch_all(conn)
            .await?)
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

    fn query_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX IF NOT EXISTS customers_by_account ON customers (account_id, created_at)",
            "CREATE INDEX IF NOT EXISTS customers_by_external_id ON customers (account_id, external_id)",
            "CREATE INDEX IF NOT EXISTS customers_by_email ON customers (account_id, email)",
        ]
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS customers (\
                id TEXT PRIMARY KEY, account_id TEXT NOT NULL, external_id TEXT, email TEXT, name TEXT, \
                phone TEXT, metadata TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT, \
                conversation_count BIGINT NOT NULL, version BIGINT NOT NULL, verified BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS customer_conversations (\
                customer_id TEXT NOT NULL, conversation_id TEXT NOT NULL, \
                PRIMARY KEY (customer_id, conversation_id))",
        ] {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        // Tables made before identity verification: their customers were all unverified (0).
        add_column_if_missing(conn, "customers", "verified", "BIGINT NOT NULL DEFAULT 0").await?;
        Ok(())
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event))
            .await
            .map_err(|(_, e)| e)
    }

    /// Loads the customers and conversation links a batch touches, applies its events in memory
    /// (customer events each once, guarded by the customer stream's version), then writes the
    /// changed customers and the new links with multi-row statements.
    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        let first = events.first().map_or(0, |e| e.global_position);
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            let fail = |e: netia_events::EventError| (event.global_position, ProjectionError::from(e));
            if event.stream_type == CustomerEvent::STREAM_TYPE {
                decoded.push((event, Decoded::Customer(CustomerEvent::decode(event).map_err(fail)?)));
            } else if event.stream_type == ConversationEvent::STREAM_TYPE {
                decoded.push((
                    event,
                    Decoded::Conversation(ConversationEvent::decode_shared(event).map_err(fail)?),
                ));
            }
        }
        let mut batch = Batch::load(conn, &decoded).await.map_err(|e| (first, e.into()))?;
        for (event, decoded) in decoded {
            batch.apply(event, decoded).map_err(|e| (event.global_position, e))?;
        }
        batch.write(conn).await.map_err(|e| (first, e.into()))
    }
}

enum Decoded {
    Customer(CustomerEvent),
    /// Shared with the batch's other readers ([`DomainEvent::decode_shared`]).
    Conversation(std::sync::Arc<ConversationEvent>),
}

/// The customer an event of a conversation concerns, and when the customer was seen in it.
fn seen_in(event: &ConversationEvent) -> Option<(CustomerId, Option<DateTime<Utc>>)> {
    use ConversationEvent::*;
    match event {
        ConversationCreated(e) => Some((e.customer_id, None)),
        CustomerMessagePosted(e) => Some((e.customer_id, Some(e.sent_at))),
        SmsMessageReceived(e) => Some((e.customer_id, Some(e.sent_at))),
        EmailMessageReceived(e) => match e.author {
            Author::Customer { customer_id } => Some((customer_id, Some(e.sent_at))),
            Author::Agent { .. } | Author::ExternalAgent { .. } => None,
        },
        SlackMessageReceived(e) => match e.author {
            Author::Customer { customer_id } => Some((customer_id, Some(e.sent_at))),
            Author::Agent { .. } | Author::ExternalAgent { .. } => None,
        },
        _ => None,
    }
}

/// What a batch changes, kept in memory until it is written.
#[derive(Default)]
struct Batch {
    customers: HashMap<String, CustomerRow>,
    dirty: HashSet<String>,
    /// Customers deleted by the batch (their rows go).
    deleted: HashSet<String>,
    /// Links present before the batch, of the conversations it creates.
    linked: HashSet<(String, String)>,
    /// Links the batch adds, in order.
    new_links: Vec<(String, String)>,
    /// Per customer without a row yet: conversations linked before the batch or in it, counted when
    /// the customer is created.
    unowned_links: HashMap<String, i64>,
}

impl Batch {
    async fn load(conn: &mut AnyConnection, decoded: &[(&RecordedEvent, Decoded)]) -> Result<Self, sqlx::Error> {
        let mut customer_ids = BTreeSet::new();
        let mut created_conversations = BTreeSet::new();
        for (event, decoded) in decoded {
            match decoded {
                Decoded::Customer(_) => {
                    customer_ids.insert(event.stream_id.clone());
                }
                Decoded::Conversation(e) => {
                    if let Some((customer, _)) = seen_in(e) {
                        customer_ids.insert(customer.to_string());
                    }
                    if let ConversationEvent::ConversationCreated(_) = &**e {
                        created_conversations.insert(event.stream_id.clone());
                    }
                }
            }
        }
        let customer_ids: Vec<String> = customer_ids.into_iter().collect();
        let select = format!("SELECT {COLUMNS} FROM customers WHERE id IN ({{ids}})");
        let customers: Vec<CustomerRow> = select_in(conn, &select, &customer_ids).await?;
        let customers: HashMap<String, CustomerRow> = customers.into_iter().map(|c| (c.id.clone(), c)).collect();
        let created: Vec<String> = created_conversations.into_iter().collect();
        let linked: Vec<(String, String)> = select_in(
            conn,
            "SELECT customer_id, conversation_id FROM customer_conversations WHERE conversation_id IN ({ids})",
            &created,
        )
        .await?;
        let absent: Vec<String> = customer_ids
            .into_iter()
            .filter(|id| !customers.contains_key(id))
            .collect();
        let unowned_links: Vec<(String, i64)> = select_in(
            conn,
            "SELECT customer_id, COUNT(*) AS n FROM customer_conversations WHERE customer_id IN ({ids}) \
             GROUP BY customer_id",
            &absent,
        )
        .await?;
        Ok(Self {
            customers,
            linked: linked.into_iter().collect(),
            unowned_links: unowned_links.into_iter().collect(),
            ..Self::default()
        })
    }

    fn apply(&mut self, recorded: &RecordedEvent, decoded: Decoded) -> Result<(), ProjectionError> {
        let event = match decoded {
            Decoded::Customer(event) => return self.customer_event(recorded, event),
            Decoded::Conversation(event) => event,
        };
        let Some((customer, seen_at)) = seen_in(&event) else {
            return Ok(());
        };
        let customer = customer.to_string();
        if let ConversationEvent::ConversationCreated(_) = *event {
            let link = (customer.clone(), recorded.stream_id.clone());
            if self.linked.insert(link.clone()) {
                self.new_links.push(link);
                match self.customers.get_mut(&customer) {
                    Some(row) => {
                        row.conversation_count += 1;
                        self.dirty.insert(customer);
                    }
                    None => *self.unowned_links.entry(customer).or_default() += 1,
                }
            }
            return Ok(());
        }
        if let (Some(at), Some(row)) = (seen_at, self.customers.get_mut(&customer)) {
            let at = format_time(at);
            if row.last_seen_at.as_ref().is_none_or(|last| *last < at) {
                row.last_seen_at = Some(at);
                self.dirty.insert(customer);
            }
        }
        Ok(())
    }

    fn customer_event(&mut self, recorded: &RecordedEvent, event: CustomerEvent) -> Result<(), ProjectionError> {
        let id = recorded.stream_id.clone();
        if let CustomerEvent::CustomerCreated(e) = event {
            if !self.customers.contains_key(&id) {
                let row_has_external_id = e.identity.external_id.is_some();
                let row = CustomerRow {
                    id: id.clone(),
                    account_id: e.account_id.to_string(),
                    external_id: e.identity.external_id,
                    email: e.identity.email,
                    name: e.identity.name,
                    phone: e.identity.phone,
                    metadata: Value::Object(e.metadata).to_string(),
                    created_at: format_time(recorded.recorded_at),
                    last_seen_at: None,
                    conversation_count: self.unowned_links.remove(&id).unwrap_or(0),
                    version: recorded.version,
                    verified: i64::from(e.verified && row_has_external_id),
                };
                self.customers.insert(id.clone(), row);
                self.dirty.insert(id);
            }
            return Ok(());
        }
        let Some(row) = self.customers.get_mut(&id) else {
            return Ok(());
        };
        if row.version >= recorded.version {
            return Ok(());
        }
        match event {
            CustomerEvent::CustomerCreated(_) => {}
            // Being connected is being seen.
            CustomerEvent::CustomerCameOnline(_) | CustomerEvent::CustomerWentOffline(_) => {
                let at = format_time(recorded.recorded_at);
                if row.last_seen_at.as_ref().is_none_or(|last| *last < at) {
                    row.last_seen_at = Some(at);
                }
            }
            CustomerEvent::CustomerDeleted(_) | CustomerEvent::CustomerErased(_) => {
                self.customers.remove(&id);
                self.dirty.remove(&id);
                self.deleted.insert(id);
                return Ok(());
            }
            CustomerEvent::CustomerIdentified(e) => {
                let identity = e.identity;
                if identity.external_id.is_some() {
                    row.verified = i64::from(e.verified);
                }
                row.external_id = identity.external_id.or(row.external_id.take());
                row.email = identity.email.or(row.email.take());
                row.name = identity.name.or(row.name.take());
                row.phone = identity.phone.or(row.phone.take());
            }
            CustomerEvent::CustomerMetadataUpdated(e) => {
                let mut metadata: Map<String, Value> = serde_json::from_str(&row.metadata)
                    .map_err(|e| ProjectionError::Invalid(format!("metadata: {e}")))?;
                for (key, value) in e.changes {
                    if value.is_null() {
                        metadata.remove(&key);
                    } else {
                        metadata.insert(key, value);
                    }
                }
                row.metadata = Value::Object(metadata).to_string();
            }
        }
        row.version = recorded.version;
        self.dirty.insert(id);
        Ok(())
    }

    async fn write(mut self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let deleted: Vec<String> = self.deleted.iter().cloned().collect();
        for chunk in deleted.chunks(500) {
            let sql = format!(
                "DELETE FROM customers WHERE id IN ({})",
                crate::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            q.execute(&mut *conn).await?;
        }
        let rows: Vec<Vec<Cell>> = self
            .dirty
            .iter()
            .filter_map(|id| self.customers.remove(id))
            .map(|c| {
                vec![
                    c.id.into(),
                    c.account_id.into(),
                    c.external_id.into(),
                    c.email.into(),
                    c.name.into(),
                    c.phone.into(),
                    c.metadata.into(),
                    c.created_at.into(),
                    c.last_seen_at.into(),
                    c.conversation_count.into(),
                    c.version.into(),
                    c.verified.into(),
                ]
            })
            .collect();
        let columns: Vec<&str> = COLUMNS.split(", ").collect();
        insert_rows(conn, "customers", &columns, &rows, &replace_on("id", &columns)).await?;
        let links: Vec<Vec<Cell>> = self
            .new_links
            .into_iter()
            .map(|(customer, conversation)| vec![customer.into(), conversation.into()])
            .collect();
        insert_rows(
            conn,
            "customer_conversations",
            &["customer_id", "conversation_id"],
            &links,
            "ON CONFLICT (customer_id, conversation_id) DO NOTHING",
        )
        .await
    }
}
