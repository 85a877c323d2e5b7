//! The inbox applied a batch at a time: load the rows the batch touches, apply its events in memory
//! with the same rules and version guards as the event-by-event path, write the rows back with
//! multi-row statements. A rebuild then costs a few statements per batch instead of per event.

use std::collections::{BTreeSet, HashMap};

use netia_events::chain::format_time;
use netia_events::conversation::{ConversationEvent, Priority};
use netia_events::{DomainEvent, RecordedEvent};
use sqlx::{AnyConnection, FromRow};

use crate::inbox::{InboxProjection, PREVIEW_CHARS};
use crate::rows::{Cell, insert_rows, replace_on, select_in};
use crate::{ProjectionError, placeholders};

/// Ids per `DELETE … IN (…)` statement.
const CHUNK: usize = 500;

#[derive(Debug, Clone, FromRow)]
struct Row {
    conversation_id: String,
    account_id: String,
    customer_id: String,
    inbox_id: Option<String>,
    source: String,
    subject: Option<String>,
    status: String,
    snoozed_until: Option<String>,
    priority: String,
    assignee_id: Option<String>,
    archived: i64,
    created_at: String,
    last_message_preview: Option<String>,
    last_message_at: Option<String>,
    last_activity_at: String,
    message_count: i64,
    last_customer_message_version: i64,
    version: i64,
}

const COLUMNS: [&str; 18] = [
    "conversation_id",
    "account_id",
    "customer_id",
    "inbox_id",
    "source",
    "subject",
    "status",
    "snoozed_until",
    "priority",
    "assignee_id",
    "archived",
    "created_at",
    "last_message_preview",
    "last_message_at",
    "last_activity_at",
    "message_count",
    "last_customer_message_version",
    "version",
];

struct Loaded {
    row: Row,
    tags: BTreeSet<String>,
    dirty: bool,
    tags_dirty: bool,
}

pub(crate) async fn apply_batch(
    conn: &mut AnyConnection,
    events: &[RecordedEvent],
) -> Result<(), (i64, ProjectionError)> {
    let first = events.first().map_or(0, |e| e.global_position);
    let at_first = |e: ProjectionError| (first, e);
    let ids = crate::rows::stream_ids(events, ConversationEvent::STREAM_TYPE);
    let select_rows = format!(
        "SELECT {} FROM inbox WHERE conversation_id IN ({{ids}})",
        COLUMNS.join(", ")
    );
    let loaded: Vec<Row> = select_in(conn, &select_rows, &ids)
        .await
        .map_err(|e| at_first(e.into()))?;
    let mut rows: HashMap<String, Loaded> = loaded
        .into_iter()
        .map(|row| {
            let loaded = Loaded {
                row,
                tags: BTreeSet::new(),
                dirty: false,
                tags_dirty: false,
            };
            (loaded.row.conversation_id.clone(), loaded)
        })
        .collect();
    let select_tags = "SELECT conversation_id, tag FROM inbox_tags WHERE conversation_id IN ({ids})";
    let tags: Vec<(String, String)> = select_in(conn, select_tags, &ids)
        .await
        .map_err(|e| at_first(e.into()))?;
    for (id, tag) in tags {
        if let Some(loaded) = rows.get_mut(&id) {
            loaded.tags.insert(tag);
        }
    }

    let mut updated: HashMap<String, String> = HashMap::new();
    let mut reads: Reads = HashMap::new();
    for event in events {
        let fail = |e: ProjectionError| (event.global_position, e);
        if event.stream_type == ConversationEvent::STREAM_TYPE {
            let at = format_time(event.recorded_at);
            match updated.get_mut(&event.stream_id) {
                Some(latest) if *latest >= at => {}
                Some(latest) => *latest = at,
                None => {
                    updated.insert(event.stream_id.clone(), at);
                }
            }
        }
        if event.stream_type != ConversationEvent::STREAM_TYPE {
            // Customer summaries and other streams: the event-by-event path.
            crate::Projection::apply(&InboxProjection, conn, event)
                .await
                .map_err(fail)?;
            if event.event_type == "CustomerErased" {
                // The rows this batch holds in memory are written after it: erase them too.
                let erased = || Some(netia_events::personal::ERASED.to_owned());
                for loaded in rows.values_mut().filter(|l| l.row.customer_id == event.stream_id) {
                    loaded.row.subject = loaded.row.subject.as_ref().and_then(|_| erased());
                    loaded.row.last_message_preview = loaded.row.last_message_preview.as_ref().and_then(|_| erased());
                }
            }
            continue;
        }
        let decoded = ConversationEvent::decode_shared(event).map_err(|e| fail(e.into()))?;
        apply_one(conn, &mut rows, &mut reads, event, &decoded)
            .await
            .map_err(fail)?;
    }

    write(conn, rows).await.map_err(|e| at_first(e.into()))?;
    write_reads(conn, reads).await.map_err(|e| at_first(e.into()))?;
    crate::inbox::record_updates(conn, updated)
        .await
        .map_err(|e| at_first(e.into()))
}

async fn write(conn: &mut AnyConnection, rows: HashMap<String, Loaded>) -> Result<(), sqlx::Error> {
    let mut upserts: Vec<Vec<Cell>> = Vec::new();
    let mut retagged: Vec<String> = Vec::new();
    let mut tags: Vec<Vec<Cell>> = Vec::new();
    for (
        id,
        Loaded {
            row: r,
            tags: set,
            dirty,
            tags_dirty,
        },
    ) in rows
    {
        if tags_dirty {
            tags.extend(set.into_iter().map(|tag| vec![id.clone().into(), tag.into()]));
            retagged.push(id);
        }
        if dirty {
            upserts.push(vec![
                r.conversation_id.into(),
                r.account_id.into(),
                r.customer_id.into(),
                r.inbox_id.into(),
                r.source.into(),
                r.subject.into(),
                r.status.into(),
                r.snoozed_until.into(),
                r.priority.into(),
                r.assignee_id.into(),
                r.archived.into(),
                r.created_at.into(),
                r.last_message_preview.into(),
                r.last_message_at.into(),
                r.last_activity_at.into(),
                r.message_count.into(),
                r.last_customer_message_version.into(),
                r.version.into(),
            ]);
        }
    }
    insert_rows(
        conn,
        "inbox",
        &COLUMNS,
        &upserts,
        &replace_on("conversation_id", &COLUMNS),
    )
    .await?;
    for chunk in retagged.chunks(CHUNK) {
        let delete = format!(
            "DELETE FROM inbox_tags WHERE conversation_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut d = sqlx::query(&delete);
        for id in chunk {
            d = d.bind(id.clone());
        }
        d.execute(&mut *conn).await?;
    }
    insert_rows(conn, "inbox_tags", &["conversation_id", "tag"], &tags, "").await?;
    Ok(())
}

/// Each `(conversation, user)`'s read version, the batch's last (what one statement per read
/// receipt left behind, in a statement per batch: a row may appear once in it).
type Reads = HashMap<(String, String), i64>;

async fn write_reads(conn: &mut AnyConnection, reads: Reads) -> Result<(), sqlx::Error> {
    let rows: Vec<Vec<Cell>> = reads
        .into_iter()
        .map(|((conversation, user), version)| vec![conversation.into(), user.into(), version.into()])
        .collect();
    insert_rows(
        conn,
        "inbox_reads",
        &["conversation_id", "user_id", "read_version"],
        &rows,
        "ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_version = excluded.read_version",
    )
    .await
}

async fn apply_one(
    conn: &mut AnyConnection,
    rows: &mut HashMap<String, Loaded>,
    reads: &mut Reads,
    event: &RecordedEvent,
    decoded: &ConversationEvent,
) -> Result<(), ProjectionError> {
    use ConversationEvent::*;
    let id = &event.stream_id;
    if let ConversationCreated(e) = &decoded {
        if !rows.contains_key(id) {
            let at = format_time(e.created_at);
            let source = serde_json::to_value(e.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "chat".to_owned());
            rows.insert(
                id.clone(),
                Loaded {
                    row: Row {
                        conversation_id: id.clone(),
                        account_id: e.account_id.to_string(),
                        customer_id: e.customer_id.to_string(),
                        inbox_id: crate::inbox::inbox_of(conn, &e.account_id.to_string(), e.inbox_id).await?,
                        source,
                        subject: e.subject.clone(),
                        status: "open".into(),
                        snoozed_until: None,
                        priority: "normal".into(),
                        assignee_id: None,
                        archived: 0,
                        created_at: at.clone(),
                        last_message_preview: None,
                        last_message_at: None,
                        last_activity_at: at,
                        message_count: 0,
                        last_customer_message_version: 0,
                        version: event.version,
                    },
                    tags: BTreeSet::new(),
                    dirty: true,
                    tags_dirty: false,
                },
            );
        }
        return Ok(());
    }
    let Some(loaded) = rows.get_mut(id) else { return Ok(()) };
    if loaded.row.version >= event.version {
        return Ok(()); // applied already
    }
    loaded.dirty = true;
    let row = &mut loaded.row;
    row.version = event.version;
    let message = crate::inbox::message_of(decoded);
    if let Some((body, at, from_customer)) = message {
        let at = format_time(at);
        row.last_activity_at = at.clone();
        row.last_message_preview = Some(body.chars().take(PREVIEW_CHARS).collect());
        row.last_message_at = Some(at);
        row.message_count += 1;
        if from_customer {
            row.last_customer_message_version = event.version;
        }
        return Ok(());
    }
    match decoded {
        ConversationClosed(_) => {
            row.status = "closed".into();
            row.snoozed_until = None;
        }
        ConversationReopened(_) | ConversationWoken(_) => {
            row.status = "open".into();
            row.snoozed_until = None;
            row.archived = 0;
        }
        ConversationSnoozed(e) => {
            row.status = "snoozed".into();
            row.archived = 0;
            row.snoozed_until = Some(format_time(e.until));
        }
        PrioritySet(e) => {
            row.priority = match e.priority {
                Priority::Priority => "priority",
                Priority::Normal => "normal",
            }
            .into();
        }
        AgentAssigned(e) => row.assignee_id = e.assignee.map(|u| u.to_string()),
        ConversationArchived(_) => row.archived = 1,
        ConversationTagged(e) => {
            loaded.tags.insert(e.tag.clone());
            loaded.tags_dirty = true;
        }
        ConversationUntagged(e) => {
            loaded.tags.remove(&e.tag);
            loaded.tags_dirty = true;
        }
        ConversationRead(e) => {
            reads.insert((id.clone(), e.user_id.to_string()), event.version);
        }
        _ => {}
    }
    Ok(())
}
