//! Erasing a customer (GDPR art. 17) by crypto-shredding (ADR 0023): their data key is destroyed,
//! so every personal field of their events — identity, metadata, what they and the agents wrote in
//! their conversations, addresses — reads as `[erased]` in replay, read models, rebuilds, exports
//! and the bus, while the log and its hash chain stay as they were. Then the copies kept outside
//! the log are cleared: email originals, attachment files, webhook bodies, parked and job errors.

use chrono::{DateTime, Utc};
use netia_commands::{Customer, CustomerCommand, CustomerError};
use netia_events::{CustomerId, Metadata, StreamRef, UserId};
use serde::Serialize;
use utoipa::ToSchema;

use super::{App, AppError};
use crate::command_bus::CommandError;
use crate::store::{ShreddingStore, StreamBound};

/// What an erasure did: `POST /api/customers/{id}/erase`, `netia gdpr erase`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Erasure {
    pub customer_id: String,
    /// When the customer was erased (the first time, for a repeat).
    pub erased_at: DateTime<Utc>,
    /// False when the customer had been erased before (nothing more was done to the log).
    pub newly_erased: bool,
    /// Their conversations, whose messages now read as `[erased]`.
    pub conversations: usize,
    /// Events of their streams (customer and conversations) whose personal fields no longer open.
    pub events: usize,
    /// Attachment files (and thumbnails) deleted.
    pub files_deleted: usize,
    /// Email originals deleted.
    pub email_originals_deleted: u64,
    /// Webhook delivery bodies and parked or job errors replaced.
    pub side_copies_cleared: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// This deployment stores personal data in the clear (no `NETIA_SECRET_KEY`).
    #[error("{0}")]
    NotSealed(String),
    #[error(transparent)]
    Customer(#[from] CommandError<CustomerError>),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("deleting the customer's files: {0}")]
    Files(String),
}

/// Erases `customer_id` (who must exist; a deleted customer may be erased too; a repeat clears
/// the side copies again and reports `newly_erased: false`). The key goes first: if anything
/// after it fails, the data is already unreadable and the same call finishes the rest.
///
/// Errors: [`ErasureError::NotSealed`] without `NETIA_SECRET_KEY`; the customer does not exist
/// (`Customer(Domain(NotFound))`); the database or the attachment store failed.
pub async fn erase_customer(
    app: &App,
    customer_id: CustomerId,
    erased_by: Option<UserId>,
    meta: &Metadata,
) -> Result<Erasure, ErasureError> {
    if !app.store.seals_personal_data() {
        return Err(ErasureError::NotSealed(
            "personal data is stored in the clear on this deployment (NETIA_SECRET_KEY is not set), so it cannot \
             be erased: set NETIA_SECRET_KEY and run `netia gdpr seal-existing` (docs/adr/0023)"
                .into(),
        ));
    }
    let (customer, _) = app.bus.load::<Customer>(customer_id).await?;
    if customer.account_id.is_none() {
        return Err(CommandError::Domain(CustomerError::NotFound).into());
    }
    let conversations = conversations_of(app, customer_id).await?;
    let mut streams = vec![StreamRef::new("customer", customer_id)];
    streams.extend(conversations.iter().map(|(c, _)| StreamRef::new("conversation", c)));
    // As stored: anything still in the clear would survive the key (written before sealing).
    let mut event_ids = Vec::new();
    let mut in_clear = 0;
    for stream in &streams {
        let events = app
            .store
            .stored()
            .read_stream(stream, StreamBound::All)
            .await
            .map_err(AppError::Store)?;
        in_clear += events.iter().map(ShreddingStore::fields_in_clear).sum::<usize>();
        event_ids.extend(events.iter().map(|e| e.event_id.to_string()));
    }
    if in_clear > 0 {
        return Err(ErasureError::NotSealed(format!(
            "{in_clear} personal field(s) of this customer's events are stored in the clear (written before \
             sealing was on), and erasing the key would not remove them: run `netia gdpr seal-existing` once \
             (nodes stopped), then erase"
        )));
    }
    app.store
        .erase_subject(&customer_id.to_string())
        .await
        .map_err(AppError::Store)?;
    let now = Utc::now();
    let executed = app
        .bus
        .execute::<Customer>(
            customer_id,
            CustomerCommand::Erase {
                erased_by,
                erased_at: now,
            },
            meta,
        )
        .await?;
    let newly_erased = !executed.events.is_empty();
    // The external id (read before the erasure) is free for a new customer.
    super::customers::release_external_id(&app.bus, &customer, customer_id, meta).await;
    crate::auth::Auth::new(app.db.clone(), 0, 0)
        .revoke_customer_tokens(customer_id)
        .await
        .map_err(|e| AppError::Log(e.to_string()))?;
    let email_originals_deleted = super::inbound_email::forget_originals(app, customer_id).await?;
    // The erasure's own event.
    event_ids.extend(executed.events.iter().map(|e| e.event_id.to_string()));
    let side_copies_cleared = clear_side_copies(app, &event_ids, &conversations).await?;
    let mut files_deleted = 0;
    if let Some(files) = &app.attachments {
        for (conversation, account) in &conversations {
            files_deleted += files
                .delete_conversation(account, conversation)
                .await
                .map_err(|e| ErasureError::Files(e.to_string()))?;
        }
    }
    for projection in ["customer", "inbox", "conversation"] {
        app.caught_up(projection, &executed.events).await;
    }
    if app.store.backend() == crate::store::Backend::Sqlite {
        // Old page images stay in the write-ahead log until it is checkpointed: empty it (deleted
        // content is overwritten in the database file itself: `secure_delete`).
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&app.db).await {
            tracing::warn!(error = %e, "could not checkpoint the write-ahead log after an erasure");
        }
    }
    let erased_at = erased_at_of(app, customer_id).await?.unwrap_or(now);
    Ok(Erasure {
        customer_id: customer_id.to_string(),
        erased_at,
        newly_erased,
        conversations: conversations.len(),
        events: event_ids.len(),
        files_deleted,
        email_originals_deleted,
        side_copies_cleared,
    })
}

/// The customer's conversations and their accounts (the conversation read model's links).
async fn conversations_of(app: &App, customer_id: CustomerId) -> Result<Vec<(String, String)>, AppError> {
    Ok(
        sqlx::query_as("SELECT conversation_id, account_id FROM conversation_accounts WHERE customer_id = $1")
            .bind(customer_id.to_string())
            .fetch_all(&app.db)
            .await?,
    )
}

/// When the log says the customer was erased.
async fn erased_at_of(app: &App, customer_id: CustomerId) -> Result<Option<DateTime<Utc>>, AppError> {
    let events = app
        .store
        .read_stream(&StreamRef::new("customer", customer_id), StreamBound::All)
        .await
        .map_err(AppError::Store)?;
    Ok(events.iter().find(|e| e.event_type == "CustomerErased").and_then(|e| {
        e.payload
            .get("erased_at")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
    }))
}

/// What a webhook delivery's body becomes.
const ERASED_BODY: &str = r#"{"erased":true}"#;

/// Replaces the copies of the events' content kept beside the log: webhook delivery bodies and
/// errors, parked deliveries' errors, scheduled jobs' errors for the conversations.
async fn clear_side_copies(
    app: &App,
    event_ids: &[String],
    conversations: &[(String, String)],
) -> Result<u64, AppError> {
    let mut cleared = 0;
    for chunk in event_ids.chunks(500) {
        let list = (2..chunk.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        for sql in [
            format!("UPDATE webhook_deliveries SET body = $1, error = NULL WHERE event_id IN ({list})"),
            format!("UPDATE consumer_parked SET error = $1 WHERE event_id IN ({list})"),
        ] {
            let value = if sql.contains("webhook") {
                ERASED_BODY
            } else {
                netia_events::personal::ERASED
            };
            let mut query = sqlx::query(&sql).bind(value);
            for id in chunk {
                query = query.bind(id.clone());
            }
            cleared += query.execute(&app.db).await?.rows_affected();
        }
    }
    for (conversation, _) in conversations {
        cleared += sqlx::query(
            "UPDATE scheduled_jobs SET error = $1 WHERE error IS NOT NULL AND payload LIKE '%' || $2 || '%'",
        )
        .bind(netia_events::personal::ERASED)
        .bind(conversation.clone())
        .execute(&app.db)
        .await?
        .rows_affected();
    }
    Ok(cleared)
}
