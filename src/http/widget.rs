//! The widget's public endpoints: settings, creating the customer (which yields the customer token
//! the socket and these endpoints take), its conversations, and its metadata.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use netia_commands::{Account, Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::Source;
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, InboxId, Metadata};
use netia_projections::{InboxProjection, InboxQuery};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::conversations::conversation_json;
use super::customers::customer_error;
use super::views::{ConversationView, Data, ErrorBody, MetadataView, NewCustomerView, PublicWidgetSettings};
use super::{ApiError, AppState, CustomerCaller, parse_id};

/// Refuses (403) a browser call from an origin the account has not allowed. Calls without an
/// `Origin` header (servers, curl) and from Netia's own pages (origin host = request host) pass;
/// an empty allow-list allows every origin.
pub fn check_origin(req: &HttpRequest, account: &Account) -> Result<(), ApiError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    origin_allowed(header("Origin"), header("Host"), account)
}

/// Whether a request with these `Origin` and `Host` headers may act for `account` (no origin: not
/// a browser; the account's allow-list, if any, or Netia's own pages).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, account: &Account) -> Result<(), ApiError> {
    let allowed = &account.widget_settings.allowed_origins;
    let Some(origin) = origin else {
        return Ok(());
    };
    let own = origin.split_once("://").is_some_and(|(_, h)| Some(h) == host);
    if allowed.is_empty() || own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the account does not allow the widget on {origin}"
        )))
    }
}

async fn account(state: &AppState, id: AccountId) -> Result<Account, ApiError> {
    let account = state.load::<Account>(id).await?;
    if account.id.is_none() {
        return Err(ApiError::NotFound("account not found".into()));
    }
    Ok(account)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SettingsQuery {
    #[param(value_type = uuid::Uuid)]
    account_id: String,
    #[param(value_type = Option<uuid::Uuid>)]
    inbox_id: Option<String>,
}

/// What the widget shows (public; the account's origin allow-list applies to browsers).
#[utoipa::path(get, path = "/api/widget_settings", tag = "widget", params(SettingsQuery),
    responses((status = 200, body = Data<PublicWidgetSettings>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn settings(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SettingsQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id: AccountId = parse_id(&query.account_id, "account_id")?;
    if let Some(inbox) = &query.inbox_id {
        parse_id::<InboxId>(inbox, "inbox_id")?;
    }
    let account = account(&state, account_id).await?;
    check_origin(&req, &account)?;
    let s = &account.widget_settings;
    Ok(HttpResponse::Ok().json(Data {
        data: PublicWidgetSettings {
            account_id: account_id.to_string(),
            account_name: account.name.clone(),
            title: s.title.clone(),
            subtitle: s.subtitle.clone(),
            primary_color: s.primary_color.clone(),
            greeting: s.greeting.clone(),
            new_message_placeholder: s.new_message_placeholder.clone(),
            show_agent_availability: s.show_agent_availability,
            is_branding_hidden: s.is_branding_hidden,
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    #[schema(value_type = uuid::Uuid)]
    account_id: String,
    external_id: Option<String>,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

/// A new customer for the widget, with the token it uses from now on.
#[utoipa::path(post, path = "/api/customers", tag = "widget", request_body = NewCustomer,
    responses((status = 201, body = Data<NewCustomerView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_customer(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewCustomer>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account_id: AccountId = parse_id(&body.account_id, "account_id")?;
    check_origin(&req, &account(&state, account_id).await?)?;
    let customer_id = CustomerId::new();
    let identity = CustomerIdentity {
        external_id: body.external_id,
        email: body.email,
        name: body.name,
        phone: body.phone,
    };
    let meta = Metadata::new(Actor::Customer { customer_id }).with_account(account_id);
    let events =
        crate::app::customers::create_customer(&state.bus, customer_id, account_id, identity, body.metadata, &meta)
            .await
            .map_err(super::customers::use_case_error)?;
    // Agents looking for the new customer find it at once.
    state.caught_up("customer", &events).await;
    let (customer, _) = state.bus.load::<Customer>(customer_id).await.map_err(customer_error)?;
    let token = state.auth.customer_token(customer_id, account_id).await?;
    Ok(HttpResponse::Created().json(Data {
        data: NewCustomerView {
            id: customer_id.to_string(),
            account_id: account_id.to_string(),
            external_id: customer.identity.external_id,
            email: customer.identity.email,
            name: customer.identity.name,
            phone: customer.identity.phone,
            metadata: customer.metadata,
            token: token.token,
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdate {
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

/// Merges keys into the customer's metadata (`null` removes a key). Customer token.
#[utoipa::path(put, path = "/api/customers/{id}/metadata", tag = "widget", params(("id" = uuid::Uuid, Path, description = "Customer id")), request_body = MetadataUpdate,
    security(("customer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<MetadataView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn update_metadata(
    state: web::Data<AppState>,
    caller: CustomerCaller,
    id: web::Path<String>,
    body: web::Json<MetadataUpdate>,
) -> Result<HttpResponse, ApiError> {
    let id: CustomerId = parse_id(&id, "customer id")?;
    if id != caller.customer_id {
        return Err(ApiError::NotFound("customer not found".into()));
    }
    let meta = Metadata::new(Actor::Customer { customer_id: id }).with_account(caller.account_id);
    let command = CustomerCommand::UpdateMetadata {
        changes: body.into_inner().metadata,
    };
    state
        .bus
        .execute::<Customer>(id, command, &meta)
        .await
        .map_err(customer_error)?;
    let (customer, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    Ok(HttpResponse::Ok().json(Data {
        data: MetadataView {
            id: id.to_string(),
            metadata: customer.metadata,
        },
    }))
}

/// The inbox a new conversation goes to: `given` if it is one of the account's inboxes (422
/// otherwise), else the account's primary inbox. A conversation always belongs to an inbox.
fn conversation_inbox(account: &Account, given: Option<&str>) -> Result<InboxId, ApiError> {
    let primary = account
        .primary_inbox_id
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the account has no primary inbox")))?;
    match given {
        None => Ok(primary),
        Some(id) => {
            let id = parse_id::<InboxId>(id, "inbox_id")?;
            if id == primary {
                Ok(id)
            } else {
                Err(ApiError::Invalid("inbox_id is not an inbox of this account".into()))
            }
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    #[schema(value_type = uuid::Uuid)]
    account_id: String,
    #[schema(value_type = uuid::Uuid)]
    customer_id: String,
    /// One of the account's inboxes; the account's primary inbox when absent.
    #[schema(value_type = Option<uuid::Uuid>)]
    inbox_id: Option<String>,
}

/// The widget opens a conversation for its own customer (customer token).
#[utoipa::path(post, path = "/api/conversations", tag = "widget", request_body = NewConversation, security(("customer" = [])),
    responses((status = 413, body = ErrorBody), (status = 201, body = Data<ConversationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_conversation(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: CustomerCaller,
    body: web::Json<NewConversation>,
) -> Result<HttpResponse, ApiError> {
    let account_id: AccountId = parse_id(&body.account_id, "account_id")?;
    let customer_id: CustomerId = parse_id(&body.customer_id, "customer_id")?;
    if account_id != caller.account_id || customer_id != caller.customer_id {
        return Err(ApiError::Forbidden(
            "a customer token opens conversations only for its own customer and account".into(),
        ));
    }
    let account = account(&state, account_id).await?;
    check_origin(&req, &account)?;
    let inbox_id = conversation_inbox(&account, body.inbox_id.as_deref())?;
    let id = ConversationId::new();
    let meta = Metadata::new(Actor::Customer { customer_id }).with_account(account_id);
    let command = ConversationCommand::Create {
        conversation_id: id,
        account_id,
        customer_id,
        inbox_id,
        source: Source::Chat,
        subject: None,
        at: Utc::now(),
    };
    let executed = state
        .bus
        .execute::<Conversation>(id, command, &meta)
        .await
        .map_err(|e| ApiError::from_command(e, |_| false))?;
    // The inbox answers this call; the customer's conversation count is read next by agents.
    state.caught_up("inbox", &executed.events).await;
    state.caught_up("customer", &executed.events).await;
    let mut conn = state.db.acquire().await?;
    let row = InboxProjection::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::Unavailable("the conversation is saved but not readable yet".into()))?;
    Ok(HttpResponse::Created().json(Data {
        data: conversation_json(&row),
    }))
}

/// The caller's (customer token) conversations, newest activity first.
#[utoipa::path(get, path = "/api/conversations/customer", tag = "widget", security(("customer" = [])),
    responses((status = 200, body = Data<Vec<ConversationView>>), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn customer_conversations(
    state: web::Data<AppState>,
    caller: CustomerCaller,
) -> Result<HttpResponse, ApiError> {
    let query = InboxQuery {
        account_id: Some(caller.account_id),
        customer_id: Some(caller.customer_id.to_string()),
        include_archived: true,
        limit: netia_projections::inbox::MAX_PAGE,
        ..InboxQuery::default()
    };
    let mut conn = state.db.acquire().await?;
    let rows = InboxProjection::list(&mut conn, &query).await?;
    let data: Vec<_> = rows.iter().map(conversation_json).collect();
    Ok(HttpResponse::Ok().json(Data { data }))
}
