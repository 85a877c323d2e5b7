//! A conversation's messages: the page a reader (agent, or the conversation's customer) catches
//! up with, and an agent's reply or note.

use actix_web::{HttpResponse, web};
use netia_commands::Conversation;
use netia_events::conversation::{Author, MessageFormat};
use netia_events::user::Role;
use netia_events::{ConversationId, Metadata};
use netia_projections::ConversationProjection;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::caller::Reader;
use super::conversations::{conversation_error, owned};
use super::views::{Data, ErrorBody, MessageView};
use super::{Agent, ApiError, AppState, parse_id};
use crate::app::conversations::{PostError, Posted, ReadBack};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct MessagePage {
    /// Messages after this version (the `version` of the last one seen).
    after_version: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The conversation's messages in order: for agents with notes; for its customer (customer token)
/// without them — how the widget catches up after a reconnect.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "messages", params(("id" = uuid::Uuid, Path, description = "Conversation id"), MessagePage), security(("bearer" = []), ("customer" = [])),
    responses((status = 200, body = Data<Vec<MessageView>>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn messages(
    state: web::Data<AppState>,
    reader: Reader,
    id: web::Path<String>,
    page: web::Query<MessagePage>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation id")?;
    let agents_view = match &reader {
        Reader::Agent(agent) => {
            owned(&state, agent, id).await?;
            true
        }
        Reader::Customer(customer) => {
            let conversation = state.load::<Conversation>(id).await?;
            if conversation.customer_id != Some(customer.customer_id)
                || conversation.account_id != Some(customer.account_id)
            {
                return Err(ApiError::NotFound("conversation not found".into()));
            }
            false
        }
    };
    let limit = page.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 1000".into()));
    }
    state.caught_up_with_log("conversation").await;
    let mut conn = state.db.acquire().await?;
    let rows = ConversationProjection::messages(
        &mut conn,
        id,
        agents_view,
        page.after_version.unwrap_or(0).max(0),
        limit,
    )
    .await?;
    let data: Vec<MessageView> = rows.iter().map(MessageView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The message, up to 20,000 characters.
    #[schema(min_length = 1, max_length = 20000)]
    pub body: String,
    /// How `body` is meant to be read: `text` (the default) or `markdown` (CommonMark).
    #[serde(default)]
    pub format: BodyFormat,
    /// A note only agents see.
    #[serde(default)]
    pub private: bool,
    /// The client's idempotency key (1 to 200 printable characters).
    #[schema(min_length = 1, max_length = 200)]
    pub client_message_id: Option<String>,
}

/// How a posted body is meant to be read (see [`MessageFormat`]).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Text,
    Markdown,
}

/// Posts `body` as `author` and answers with the saved message: 201 the first time, 200 with the
/// same message when `client_message_id` was already used by the same author.
pub async fn post_as(
    state: &AppState,
    id: ConversationId,
    author: Author,
    message: NewMessage,
    meta: &Metadata,
) -> Result<HttpResponse, ApiError> {
    let message = crate::app::conversations::NewMessage {
        body: message.body,
        format: match message.format {
            BodyFormat::Text => MessageFormat::Text,
            BodyFormat::Markdown => MessageFormat::Markdown,
        },
        private: message.private,
        client_message_id: message.client_message_id,
        attachments: Vec::new(),
    };
    let posted = crate::app::conversations::post_message(state, id, author, message, meta, ReadBack::ReadModel)
        .await
        .map_err(post_error)?;
    Ok(saved(&posted))
}

/// The answer to a post: 201 with the message, or 200 with the one saved before under the same
/// `client_message_id`.
pub(super) fn saved(posted: &Posted) -> HttpResponse {
    let body = json!({ "data": MessageView::from(&posted.message) });
    if posted.created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

pub(super) fn post_error(e: PostError) -> ApiError {
    match e {
        PostError::Refused(e) => conversation_error(e),
        PostError::App(e) => e.into(),
    }
}

/// Posts an agent reply, or a private note. Repeating a `client_message_id` answers 200 with the
/// message saved the first time and saves nothing.
#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "messages", params(("id" = uuid::Uuid, Path, description = "Conversation id")), request_body = NewMessage, security(("bearer" = [])),
    responses((status = 413, body = ErrorBody), (status = 201, body = Data<MessageView>), (status = 200, description = "Already saved with this client_message_id", body = Data<MessageView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn post_message(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    body: web::Json<NewMessage>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Member)?;
    let id: ConversationId = parse_id(&id, "conversation id")?;
    owned(&state, &agent, id).await?;
    let author = Author::Agent { user_id: agent.user_id };
    post_as(&state, id, author, body.into_inner(), &agent.meta()).await
}
