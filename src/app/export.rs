//! Everything Netia holds about one customer, for the customer's right of access (GDPR art. 15):
//! the customer's read model row, and every event of the customer's stream and of each of its
//! conversations' streams, as the log stores them.

use chrono::{DateTime, Utc};
use netia_events::conversation::ConversationEvent;
use netia_events::customer::CustomerEvent;
use netia_events::{CustomerId, DomainEvent, RecordedEvent, StreamRef};
use netia_projections::{CustomerProjection, CustomerRow};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{App, AppError};
use crate::store::StreamBound;

/// The `format` of exports this code writes.
pub const FORMAT: &str = "netia-customer-export-1";

/// One customer's data: `GET /api/customers/{id}/export`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerExport {
    /// `netia-customer-export-1`.
    pub format: &'static str,
    pub exported_at: DateTime<Utc>,
    pub customer_id: String,
    /// The profile as agents see it (the customer read model's row).
    #[schema(value_type = Object)]
    pub customer: Option<CustomerRow>,
    /// The customer's stream, then each conversation's, in stream order.
    pub streams: Vec<ExportedStream>,
}

/// One stream of the log, whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedStream {
    /// `type:id`, e.g. `conversation:0193…`.
    pub stream: String,
    pub events: Vec<ExportedEvent>,
}

/// One event as the log stores it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedEvent {
    pub position: i64,
    pub version: i64,
    #[schema(value_type = uuid::Uuid)]
    pub event_id: uuid::Uuid,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub event_version: i32,
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl From<RecordedEvent> for ExportedEvent {
    fn from(e: RecordedEvent) -> Self {
        Self {
            position: e.global_position,
            version: e.version,
            event_id: e.event_id,
            recorded_at: e.recorded_at,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
        }
    }
}

/// Gathers the export of customer `id` (whose account the caller has checked).
///
/// Errors: the read models or the log cannot be read.
pub async fn export_customer(app: &App, id: CustomerId) -> Result<CustomerExport, AppError> {
    let mut conn = app.db.acquire().await?;
    let customer = CustomerProjection::get(&mut conn, id).await?;
    let conversations: Vec<String> = sqlx::query_scalar(
        "SELECT conversation_id FROM customer_conversations WHERE customer_id = $1 ORDER BY conversation_id",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    drop(conn);
    let mut streams = vec![StreamRef::new(CustomerEvent::STREAM_TYPE, id)];
    streams.extend(
        conversations
            .into_iter()
            .map(|c| StreamRef::new(ConversationEvent::STREAM_TYPE, c)),
    );
    let mut exported = Vec::with_capacity(streams.len());
    for stream in streams {
        let events = app
            .store
            .read_stream(&stream, StreamBound::All)
            .await
            .map_err(AppError::Store)?;
        exported.push(ExportedStream {
            stream: stream.to_string(),
            events: events.into_iter().map(ExportedEvent::from).collect(),
        });
    }
    Ok(CustomerExport {
        format: FORMAT,
        exported_at: Utc::now(),
        customer_id: id.to_string(),
        customer,
        streams: exported,
    })
}
