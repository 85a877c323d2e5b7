//! The widget's public endpoints: settings, creating the customer (which yields the customer token
//! the socket and these endpoints take), its conversations, and its metadata.

use actix_web::{HttpRequest, HttpResponse, web};
use netia_commands::{Account, Customer, CustomerCommand};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, Actor, CustomerId, InboxId, Metadata};
use netia_projections::{InboxProjection, InboxQuery};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::conversations::conversation_json;
use super::customers::customer_error;
use super::views::{ConversationView, Data, EmailView, ErrorBody, MetadataView, NewCustomerView, PublicWidgetSettings};
use super::{ApiError, AppState, CustomerCaller, parse_id};
use crate::app::conversations::OpenError;

/// Refuses (403) a browser call from an origin the account has not allowed. Calls without an
/// `Origin` header (servers, curl) and from Netia's own pages (origin host = request host) pass;
/// an empty allow-list allows every origin.
pub fn check_origin(req: &HttpRequest, account: &Account) -> Result<(), ApiError> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    crate::app::accounts::origin_allowed(header("Origin"), header("Host"), account)
        .map_err(|e| ApiError::Forbidden(e.to_string()))
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
            locale: s.locale.clone(),
            reply_time: s.reply_time.clone(),
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
    /// hex(HMAC-SHA256(account identity secret, external_id)), computed by the site's server:
    /// proves the external id and vouches for the email (identity verification).
    #[schema(min_length = 64, max_length = 64)]
    user_hash: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

/// The widget's customer, with the token it uses from now on: a new one (201), or, for an external
/// id proven by `user_hash`, the customer that already holds it (200). A `user_hash` that does not
/// match is refused (422), as is an external id or email without one when the account requires
/// identity verification.
#[utoipa::path(post, path = "/api/customers", tag = "widget", request_body = NewCustomer,
    responses((status = 201, body = Data<NewCustomerView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 200, body = Data<NewCustomerView>), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_customer(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewCustomer>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account_id: AccountId = parse_id(&body.account_id, "account_id")?;
    check_origin(&req, &account(&state, account_id).await?)?;
    let identity = CustomerIdentity {
        external_id: body.external_id,
        email: body.email,
        name: body.name,
        phone: body.phone,
    };
    let request = super::caller::RequestId::of(&req);
    let meta_for = |customer_id| {
        Metadata::new(Actor::Customer { customer_id })
            .with_account(account_id)
            .with_correlation(request)
    };
    let joined = crate::app::customers::join_from_widget(
        &state,
        CustomerId::new(),
        account_id,
        identity,
        body.metadata,
        body.user_hash.as_deref(),
        meta_for,
    )
    .await
    .map_err(super::customers::use_case_error)?;
    let customer_id = joined.customer_id;
    // Agents looking for the new customer find it at once.
    state.caught_up("customer", &joined.events).await;
    let (customer, _) = state.bus.load::<Customer>(customer_id).await.map_err(customer_error)?;
    let token = state.auth.customer_token(customer_id, account_id).await?;
    let mut response = if joined.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(Data {
        data: NewCustomerView {
            id: customer_id.to_string(),
            account_id: account_id.to_string(),
            external_id: customer.identity.external_id,
            email: customer.identity.email,
            name: customer.identity.name,
            phone: customer.identity.phone,
            metadata: customer.metadata,
            verified: customer.verified,
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
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<MetadataView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
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
    let meta = caller.meta();
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailUpdate {
    /// Where the customer wants replies (RFC 5321 address, at most 320 characters).
    #[schema(max_length = 320)]
    email: String,
}

/// The customer leaves an email address for replies (the widget's "we are away" form). Customer
/// token. Unverified; refused (409) when the site already set a verified email for this customer.
#[utoipa::path(put, path = "/api/customers/{id}/email", tag = "widget", params(("id" = uuid::Uuid, Path, description = "Customer id")), request_body = EmailUpdate,
    security(("customer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<EmailView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn update_email(
    state: web::Data<AppState>,
    caller: CustomerCaller,
    id: web::Path<String>,
    body: web::Json<EmailUpdate>,
) -> Result<HttpResponse, ApiError> {
    let id: CustomerId = parse_id(&id, "customer id")?;
    if id != caller.customer_id {
        return Err(ApiError::NotFound("customer not found".into()));
    }
    let email = body.into_inner().email;
    let (customer, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    if customer.email_verified && customer.identity.email.as_deref() != Some(email.trim()) {
        return Err(ApiError::Conflict(
            "this customer's email was set by the site and cannot be changed here".into(),
        ));
    }
    let identity = CustomerIdentity {
        email: Some(email),
        ..Default::default()
    };
    let meta = caller.meta();
    let events = crate::app::customers::identify_customer(&state, id, identity, false, &meta)
        .await
        .map_err(super::customers::use_case_error)?;
    state.caught_up("customer", &events).await;
    let (customer, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    Ok(HttpResponse::Ok().json(Data {
        data: EmailView {
            id: id.to_string(),
            email: customer.identity.email,
        },
    }))
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
    let inbox = match &body.inbox_id {
        Some(id) => Some(parse_id::<InboxId>(id, "inbox_id")?),
        None => None,
    };
    let meta = Metadata::new(Actor::Customer { customer_id })
        .with_account(account_id)
        .with_correlation(super::caller::RequestId::of(&req));
    let (id, events) = crate::app::conversations::open(&state, &account, customer_id, inbox, &meta)
        .await
        .map_err(|e| match e {
            OpenError::ForeignInbox => ApiError::Invalid(e.to_string()),
            OpenError::NoAccount => ApiError::NotFound(e.to_string()),
            OpenError::Refused(e) => ApiError::from_command(e, |_| false),
        })?;
    // The inbox answers this call; the customer's conversation count is read next by agents.
    state.caught_up("inbox", &events).await;
    state.caught_up("customer", &events).await;
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
    responses((status = 200, body = Data<Vec<ConversationView>>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
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
