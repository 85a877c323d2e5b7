//! Conversations and messages for agents: the inbox with filters, counts and cursor paging, one
//! conversation (now or as of an instant), its history, updates, and messages. Writes are commands;
//! reads come from the read models, after waiting for the caller's own write.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use netia_commands::ConversationError;
use netia_events::chain::format_time;
use netia_events::conversation::Priority;
use netia_events::user::Role;
use netia_events::{ConversationId, DomainEvent, UserId};
use netia_projections::inbox::InboxOrder;
use netia_projections::{Assignee, ConversationProjection, InboxProjection, InboxQuery, InboxRow};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::views::{
    ConversationOrAsOf, ConversationView, CountsView, Data, ErrorBody, HistoryView, Page, PriorityName, SortName,
    SourceName, StatusName,
};
use super::{Agent, ApiError, AppState, parse_id};
use crate::app::conversations::{ChangeError, Changes, StatusChange};
use crate::store::StreamBound;
use netia_events::StreamRef;

/// How many conversations a search (`q`) may find by their earlier messages (the most recently
/// written ones first); the last message, subject and customer always count.
const MENTIONING_LIMIT: i64 = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/conversations")
            .route(web::get().to(list))
            .route(web::post().to(super::widget::create_conversation)),
    )
    .service(super::fixed("/conversations/count", "GET").route(web::get().to(count)))
    .service(super::fixed("/conversations/customer", "GET").route(web::get().to(super::widget::customer_conversations)))
    .service(
        web::resource("/conversations/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::put().to(update)),
    )
    .service(web::resource("/conversations/{id}/history").route(web::get().to(history)))
    .service(web::resource("/conversations/{id}/read").route(web::post().to(mark_read)))
    .service(
        web::resource("/conversations/{id}/messages")
            .route(web::get().to(super::messages::messages))
            .route(web::post().to(super::messages::post_message)),
    );
}

pub fn conversation_json(row: &InboxRow) -> ConversationView {
    ConversationView::from(row)
}

/// Whether conversation `id` belongs to the caller's account; anything else is "not found".
pub async fn owned(state: &AppState, agent: &Agent, id: ConversationId) -> Result<(), ApiError> {
    Ok(crate::app::conversations::ensure_in_account(state, agent.account_id, id).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct Filters {
    #[param(value_type = Option<StatusName>)]
    status: Option<String>,
    #[param(value_type = Option<PriorityName>)]
    priority: Option<String>,
    /// `me`, `unassigned` or a user id.
    assignee: Option<String>,
    #[param(min_length = 1, max_length = 64)]
    tag: Option<String>,
    #[param(value_type = Option<uuid::Uuid>)]
    inbox_id: Option<String>,
    #[param(value_type = Option<SourceName>)]
    source: Option<String>,
    /// `true`: only conversations with messages the caller has not read.
    unread: Option<bool>,
    /// Text search (case-insensitive) in the subject, every message and note, and the customer's
    /// name and email.
    #[param(min_length = 1, max_length = 200)]
    q: Option<String>,
    archived: Option<bool>,
    /// `last_activity` (default): most recently active first, for people; a conversation that
    /// gets a message while an API client pages moves ahead of its cursor and is skipped.
    /// `created_at`: oldest first by the immutable `(created_at, id)`, so a traversal returns
    /// every conversation that existed when it began exactly once, whatever moves — the order for
    /// syncing.
    #[param(value_type = Option<SortName>)]
    sort: Option<String>,
    /// Only conversations changed (any event: message, status, assignee, tags, …) at or after
    /// this RFC 3339 instant. Sync: page with `sort=created_at`, keep the largest `updated_at`
    /// seen, and next time pass it minus a minute (times are stamped when a node decides, a
    /// little before its commit; dedupe by id).
    updated_after: Option<DateTime<Utc>>,
    /// The `next` cursor of the previous page (made for the same `sort`).
    after: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::BadRequest(format!(
            "{field} must be one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

fn bounded_text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => Err(
            ApiError::BadRequest(format!("{field} must be 1 to {max} printable characters")),
        ),
        other => Ok(other),
    }
}

impl Filters {
    fn query(self, agent: &Agent) -> Result<InboxQuery, ApiError> {
        let assignee = match self.assignee.as_deref() {
            None => None,
            Some("me") => Some(Assignee::User(agent.user_id)),
            Some("unassigned") => Some(Assignee::Unassigned),
            Some(id) => Some(Assignee::User(parse_id(id, "assignee (me, unassigned or a user id)")?)),
        };
        let inbox_id = match self.inbox_id {
            Some(id) => Some(parse_id::<netia_events::InboxId>(&id, "inbox_id")?.to_string()),
            None => None,
        };
        let after = match self.after {
            None => None,
            Some(cursor) => Some(super::parse_cursor::<ConversationId>(&cursor)?),
        };
        let limit = self.limit.unwrap_or(50);
        if !(1..=netia_projections::inbox::MAX_PAGE).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be from 1 to {}",
                netia_projections::inbox::MAX_PAGE
            )));
        }
        let order = match self.sort.as_deref() {
            None | Some("last_activity") => InboxOrder::Activity,
            Some("created_at") => InboxOrder::Created,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "sort must be one of last_activity, created_at".into(),
                ));
            }
        };
        Ok(InboxQuery {
            account_id: Some(agent.account_id),
            order,
            updated_after: self.updated_after.map(format_time),
            status: one_of("status", self.status, &["open", "closed", "snoozed"])?,
            priority: one_of("priority", self.priority, &["normal", "priority"])?,
            assignee,
            tag: bounded_text("tag", self.tag, 64)?,
            inbox_id,
            customer_id: None,
            source: one_of(
                "source",
                self.source,
                &["chat", "email", "slack", "sms", "gmail", "api"],
            )?,
            unread_for: self.unread.unwrap_or(false).then_some(agent.user_id),
            text: bounded_text("q", self.q, 200)?,
            text_in_conversations: Vec::new(),
            include_archived: self.archived.unwrap_or(false),
            after,
            limit,
        })
    }
}

/// The inbox: the account's conversations, newest activity first, filtered, a page at a time.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(Filters), security(("bearer" = [])),
    responses((status = 200, body = Page<ConversationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    state: web::Data<AppState>,
    agent: Agent,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, ApiError> {
    let mut query = filters.into_inner().query(&agent)?;
    let mut conn = state.db.acquire().await?;
    if let Some(text) = &query.text {
        // Beyond the last message: any message or note (the conversation read model's).
        query.text_in_conversations =
            ConversationProjection::mentioning(&mut conn, &agent.account_id.to_string(), text, MENTIONING_LIMIT)
                .await?;
    }
    let rows = InboxProjection::list(&mut conn, &query).await?;
    let next = (rows.len() as i64 == query.limit)
        .then(|| {
            rows.last().map(|r| match query.order {
                InboxOrder::Activity => super::cursor(&r.last_activity_at, &r.conversation_id),
                InboxOrder::Created => super::cursor(&r.created_at, &r.conversation_id),
            })
        })
        .flatten();
    let data: Vec<ConversationView> = rows.iter().map(ConversationView::from).collect();
    Ok(HttpResponse::Ok().json(json!({"data": data, "next": next})))
}

#[utoipa::path(get, path = "/api/conversations/count", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = Data<CountsView>), (status = 401, body = ErrorBody)))]
pub(super) async fn count(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let base = InboxQuery {
        account_id: Some(agent.account_id),
        ..InboxQuery::default()
    };
    let open = |q: InboxQuery| InboxQuery {
        status: Some("open".into()),
        ..q
    };
    let queries = [
        ("open", open(base.clone())),
        (
            "closed",
            InboxQuery {
                status: Some("closed".into()),
                ..base.clone()
            },
        ),
        (
            "snoozed",
            InboxQuery {
                status: Some("snoozed".into()),
                ..base.clone()
            },
        ),
        (
            "priority",
            open(InboxQuery {
                priority: Some("priority".into()),
                ..base.clone()
            }),
        ),
        (
            "assigned_to_me",
            open(InboxQuery {
                assignee: Some(Assignee::User(agent.user_id)),
                ..base.clone()
            }),
        ),
        (
            "unassigned",
            open(InboxQuery {
                assignee: Some(Assignee::Unassigned),
                ..base.clone()
            }),
        ),
        (
            "unread",
            open(InboxQuery {
                unread_for: Some(agent.user_id),
                ..base.clone()
            }),
        ),
    ];
    let mut counts = serde_json::Map::new();
    for (name, query) in queries {
        counts.insert(name.into(), json!(InboxProjection::count(&mut conn, &query).await?));
    }
    Ok(HttpResponse::Ok().json(json!({ "data": counts })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AsOf {
    /// An RFC 3339 time: answer with the state at that instant.
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    as_of: Option<String>,
}

/// One conversation; with `as_of`, its state at that instant computed from the log.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(("id" = uuid::Uuid, Path, description = "Conversation id"), AsOf), security(("bearer" = [])),
    responses((status = 200, description = "The conversation, or with `as_of` its state then", body = Data<ConversationOrAsOf>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    query: web::Query<AsOf>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation id")?;
    owned(&state, &agent, id).await?;
    if let Some(as_of) = &query.as_of {
        let at = DateTime::parse_from_rfc3339(as_of)
            .map_err(|_| ApiError::BadRequest("as_of must be an RFC 3339 time".into()))?
            .with_timezone(&Utc);
        let replay = crate::audit::replay_conversation(state.store.as_ref(), id, Some(at))
            .await
            .map_err(|e| match e {
                crate::audit::AuditError::NotFound(_) | crate::audit::AuditError::NotYet(..) => {
                    ApiError::NotFound(e.to_string())
                }
                other => ApiError::internal(other),
            })?;
        return Ok(HttpResponse::Ok().json(json!({"data": {
            "id": id, "as_of": format_time(at), "state": replay.state, "events": replay.events,
        }})));
    }
    let mut conn = state.db.acquire().await?;
    let row = InboxProjection::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("conversation not found".into()))?;
    Ok(HttpResponse::Ok().json(json!({ "data": conversation_json(&row) })))
}

/// The conversation's events in order: who did what, when (from the log).
#[utoipa::path(get, path = "/api/conversations/{id}/history", tag = "conversations", params(("id" = uuid::Uuid, Path, description = "Conversation id")), security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<HistoryView>>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation id")?;
    owned(&state, &agent, id).await?;
    let stream = StreamRef::new(netia_events::conversation::ConversationEvent::STREAM_TYPE, id);
    let events = state
        .store
        .read_stream(&stream, StreamBound::All)
        .await
        .map_err(ApiError::internal)?;
    let entries = netia_projections::history(&events).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({ "data": entries })))
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Update {
    /// `open`, `closed` or `snoozed` (with `snooze_until`).
    #[schema(value_type = Option<StatusName>)]
    status: Option<String>,
    snooze_until: Option<DateTime<Utc>>,
    #[schema(value_type = Option<PriorityName>)]
    priority: Option<String>,
    /// A user id, or `null` to unassign.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<uuid::Uuid>)]
    assignee_id: Option<Option<UserId>>,
    /// The complete set of tags.
    #[schema(max_items = 50)]
    tags: Option<Vec<String>>,
}

pub(super) fn conversation_error(e: crate::command_bus::CommandError<ConversationError>) -> ApiError {
    ApiError::from_command(e, |e| matches!(e, ConversationError::NotFound))
}

/// Changes status, snooze, priority, assignee and tags in one atomic step (members and admins).
#[utoipa::path(method(patch, put), path = "/api/conversations/{id}", tag = "conversations", params(("id" = uuid::Uuid, Path, description = "Conversation id")), request_body = Update, security(("bearer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<ConversationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    body: web::Json<Update>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Member)?;
    let id: ConversationId = parse_id(&id, "conversation id")?;
    owned(&state, &agent, id).await?;
    let body = body.into_inner();
    let status = match (body.status.as_deref(), body.snooze_until) {
        (None, None) => None,
        (Some("open"), None) => Some(StatusChange::Open),
        (Some("closed"), None) => Some(StatusChange::Closed),
        (Some("snoozed") | None, Some(until)) => Some(StatusChange::Snoozed { until }),
        (Some("snoozed"), None) => return Err(ApiError::Invalid("status snoozed needs snooze_until".into())),
        (Some("open" | "closed"), Some(_)) => {
            return Err(ApiError::Invalid("snooze_until goes with status snoozed".into()));
        }
        (Some(_), _) => return Err(ApiError::Invalid("status must be open, closed or snoozed".into())),
    };
    let priority = match body.priority.as_deref() {
        None => None,
        Some("normal") => Some(Priority::Normal),
        Some("priority") => Some(Priority::Priority),
        Some(_) => return Err(ApiError::Invalid("priority must be normal or priority".into())),
    };
    let changes = Changes {
        status,
        priority,
        assignee: body.assignee_id,
        tags: body.tags,
    };
    let events = crate::app::conversations::change(&state, agent.account_id, id, changes, &agent.meta())
        .await
        .map_err(|e| match e {
            ChangeError::Refused(e) => conversation_error(e),
            ChangeError::App(e) => e.into(),
            e @ (ChangeError::TooManyTags | ChangeError::InactiveAssignee) => ApiError::Invalid(e.to_string()),
        })?;
    state.caught_up("inbox", &events).await;
    let mut conn = state.db.acquire().await?;
    let row = InboxProjection::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("conversation not found".into()))?;
    Ok(HttpResponse::Ok().json(json!({ "data": conversation_json(&row) })))
}

/// Marks the conversation read for the caller.
#[utoipa::path(post, path = "/api/conversations/{id}/read", tag = "conversations", params(("id" = uuid::Uuid, Path, description = "Conversation id")), security(("bearer" = [])),
    responses((status = 204, description = "Read"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn mark_read(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Viewer)?;
    let id: ConversationId = parse_id(&id, "conversation id")?;
    owned(&state, &agent, id).await?;
    let events = crate::app::conversations::mark_read(&state, id, agent.user_id, &agent.meta())
        .await
        .map_err(conversation_error)?;
    state.caught_up("inbox", &events).await;
    Ok(HttpResponse::NoContent().finish())
}
