//! Customers for agents: list and search, one customer, identity updates; and `identify`, which
//! finds an account's customer by the host site's external id.

use actix_web::{HttpResponse, web};
use netia_commands::{Customer, CustomerCommand, CustomerError};
use netia_events::customer::CustomerIdentity;
use netia_events::user::Role;
use netia_events::{AccountId, CustomerId};
use netia_projections::CustomerProjection;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::views::{CustomerView, Data, ErrorBody, IdentifiedView, Page};
use super::{Agent, ApiError, AppState, parse_id};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/customers")
            .route(web::get().to(list))
            .route(web::post().to(super::widget::create_customer)),
    )
    .service(super::fixed("/customers/identify", "GET").route(web::get().to(identify)))
    .service(
        web::resource("/customers/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .route(
        "/customers/{id}/metadata",
        web::put().to(super::widget::update_metadata),
    )
    .route("/customers/{id}/email", web::put().to(super::widget::update_email))
    .route("/customers/{id}/export", web::get().to(export))
    .route("/customers/{id}/erase", web::post().to(erase));
}

pub fn customer_error(e: crate::command_bus::CommandError<CustomerError>) -> ApiError {
    ApiError::from_command(e, |e| matches!(e, CustomerError::NotFound))
}

/// A customer use case's failure: a taken external id is a 409 naming its holder.
pub fn use_case_error(e: crate::app::customers::CustomerUseCaseError) -> ApiError {
    use crate::app::customers::CustomerUseCaseError as E;
    match e {
        E::Customer(e) => customer_error(e),
        e @ E::ExternalIdTaken { .. } => ApiError::Conflict(e.to_string()),
        E::Claim(e) => ApiError::from_command(e, |_| false),
        E::Verification(e) => super::verification::verification_error(e),
        E::App(e) => e.into(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[param(max_length = 200)]
    q: Option<String>,
    after: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The account's customers, newest first; `q` searches name, email, phone and external id.
#[utoipa::path(get, path = "/api/customers", tag = "customers", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<CustomerView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    state: web::Data<AppState>,
    agent: Agent,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be from 1 to 200".into()));
    }
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::BadRequest("q must be at most 200 characters".into()));
    }
    let after = match &query.after {
        None => None,
        Some(cursor) => Some(super::parse_cursor::<CustomerId>(cursor)?),
    };
    let mut conn = state.db.acquire().await?;
    let rows = CustomerProjection::list(
        &mut conn,
        agent.account_id,
        query.q.as_deref(),
        after.as_ref().map(|(a, i)| (a.as_str(), i.as_str())),
        limit,
    )
    .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|c| super::cursor(&c.created_at, &c.id)))
        .flatten();
    let data: Vec<CustomerView> = rows.iter().map(CustomerView::from).collect();
    Ok(HttpResponse::Ok().json(Page { data, next }))
}

pub(super) async fn owned(state: &AppState, agent: &Agent, raw: &str) -> Result<CustomerId, ApiError> {
    let id: CustomerId = parse_id(raw, "customer id")?;
    let (customer, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    if customer.account_id == Some(agent.account_id) && !customer.deleted {
        Ok(id)
    } else {
        Err(ApiError::NotFound("customer not found".into()))
    }
}

#[utoipa::path(get, path = "/api/customers/{id}", tag = "customers", params(("id" = uuid::Uuid, Path, description = "Customer id")), security(("bearer" = [])),
    responses((status = 200, body = Data<CustomerView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = owned(&state, &agent, &id).await?;
    let mut conn = state.db.acquire().await?;
    let row = CustomerProjection::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer not found".into()))?;
    Ok(HttpResponse::Ok().json(Data {
        data: CustomerView::from(&row),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Identity {
    external_id: Option<String>,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
}

/// Sets the given identity fields (absent fields stay as they are).
#[utoipa::path(put, path = "/api/customers/{id}", tag = "customers", params(("id" = uuid::Uuid, Path, description = "Customer id")), request_body = Identity,
    security(("bearer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<CustomerView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    body: web::Json<Identity>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Member)?;
    let id = owned(&state, &agent, &id).await?;
    let b = body.into_inner();
    let identity = CustomerIdentity {
        external_id: b.external_id,
        email: b.email,
        name: b.name,
        phone: b.phone,
    };
    let meta = agent.meta();
    // An agent's word is the account's: what they enter is vouched for.
    let events = crate::app::customers::identify_customer(&state, id, identity, true, &meta)
        .await
        .map_err(use_case_error)?;
    state.caught_up("customer", &events).await;
    let mut conn = state.db.acquire().await?;
    let row = CustomerProjection::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("customer not found".into()))?;
    Ok(HttpResponse::Ok().json(Data {
        data: CustomerView::from(&row),
    }))
}

/// Deletes a customer (admins): the profile leaves the read models, its widget tokens stop
/// working and the originals of its emails are deleted; its conversations stay. The log keeps
/// what happened: `POST /api/customers/{id}/erase` erases the personal data itself.
#[utoipa::path(delete, path = "/api/customers/{id}", tag = "customers", params(("id" = uuid::Uuid, Path, description = "Customer id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id = owned(&state, &agent, &id).await?;
    // First, so that a failure here leaves the customer to delete again (a deleted one is 404).
    crate::app::inbound_email::forget_originals(&state, id).await?;
    let meta = agent.meta();
    let executed = state
        .bus
        .execute::<Customer>(
            id,
            CustomerCommand::Delete {
                deleted_by: agent.user_id,
            },
            &meta,
        )
        .await
        .map_err(customer_error)?;
    let (deleted, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    crate::app::customers::release_external_id(&state.bus, &deleted, id, &meta).await;
    state.auth.revoke_customer_tokens(id).await?;
    state.caught_up("customer", &executed.events).await;
    state.caught_up("inbox", &executed.events).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentifyQuery {
    #[param(value_type = uuid::Uuid)]
    account_id: String,
    #[param(min_length = 1, max_length = 200)]
    external_id: String,
    /// hex(HMAC-SHA256(identity secret, external_id)); required when the account requires
    /// identity verification.
    #[param(max_length = 200)]
    user_hash: Option<String>,
}

/// The id of the account's customer with this external id (`data: null` if none). Public, as the
/// widget calls it; it reveals only an id, which is useless without that customer's token. A
/// `user_hash` that does not match is refused (422); when the account requires identity
/// verification, one is needed and only a verified customer is found.
#[utoipa::path(get, path = "/api/customers/identify", tag = "widget", params(IdentifyQuery),
    responses((status = 200, description = "`data` is null when there is no such customer", body = Data<Option<IdentifiedView>>), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn identify(
    state: web::Data<AppState>,
    query: web::Query<IdentifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id: AccountId = parse_id(&query.account_id, "account_id")?;
    let max = netia_commands::validate::MAX_KEY_CHARS;
    if query.external_id.trim().is_empty() || query.external_id.chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "external_id must be 1 to {max} characters"
        )));
    }
    let account = state.load::<netia_commands::Account>(account_id).await?;
    crate::app::verification::check_claim(
        &state,
        account_id,
        &account,
        Some(&query.external_id),
        None,
        query.user_hash.as_deref(),
    )
    .map_err(super::verification::verification_error)?;
    let mut conn = state.db.acquire().await?;
    let found = CustomerProjection::by_external_id(&mut conn, account_id, query.external_id.trim())
        .await?
        .filter(|c| c.verified != 0 || !account.identity_verification_required);
    Ok(HttpResponse::Ok().json(Data {
        data: found.map(|c| IdentifiedView { customer_id: c.id }),
    }))
}

/// Everything held about a customer, for their right of access (GDPR art. 15; admins): the profile
/// and every event of the customer's stream and of its conversations' streams, as stored. Sent as
/// a download (`customer-<id>.json`).
#[utoipa::path(get, path = "/api/customers/{id}/export", tag = "customers", params(("id" = uuid::Uuid, Path, description = "Customer id")), security(("bearer" = [])),
    responses((status = 200, body = Data<crate::app::export::CustomerExport>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn export(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let id = owned(&state, &agent, &id).await?;
    let export = crate::app::export::export_customer(&state, id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"customer-{id}.json\""),
        ))
        .json(Data { data: export }))
}

/// Erases a customer's personal data (GDPR art. 17; admins; ADR 0023): their data key is
/// destroyed, so their identity, metadata and every message of their conversations read as
/// `[erased]` from now on — in the API, replay, rebuilds, exports and webhooks — while the log and
/// its hash chain stay intact; email originals, attachment files and webhook bodies are deleted.
/// Deleted customers can be erased; a repeat answers 200 with `newly_erased: false`. 409 when the
/// deployment does not seal personal data (no `NETIA_SECRET_KEY`).
#[utoipa::path(post, path = "/api/customers/{id}/erase", tag = "customers", params(("id" = uuid::Uuid, Path, description = "Customer id")), security(("bearer" = [])),
    responses((status = 200, body = Data<crate::app::erasure::Erasure>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn erase(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use crate::app::erasure::{ErasureError, erase_customer};
    agent.require(Role::Admin)?;
    let id: CustomerId = parse_id(&id, "customer id")?;
    let (customer, _) = state.bus.load::<Customer>(id).await.map_err(customer_error)?;
    if customer.account_id != Some(agent.account_id) {
        return Err(ApiError::NotFound("customer not found".into()));
    }
    let erased = erase_customer(&state, id, Some(agent.user_id), &agent.meta())
        .await
        .map_err(|e| match e {
            ErasureError::NotSealed(reason) => ApiError::Conflict(reason),
            ErasureError::Customer(e) => customer_error(e),
            ErasureError::App(e) => e.into(),
            e @ ErasureError::Files(_) => ApiError::Internal(e.into()),
        })?;
    Ok(HttpResponse::Ok().json(Data { data: erased }))
}
