//! Account settings and shared resources: business context (+ LLM on/off), widget settings, canned
//! responses, tags in use, and the reporting read model.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use netia_commands::{Account, AccountCommand, AccountError};
use netia_events::account::{BusinessContext, WidgetSettings};
use netia_events::user::Role;
use netia_projections::ReportingProjection;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::views::{
    AiReportView, BusinessContextView, CannedResponseView, Data, DayView, ErrorBody, TagView, WidgetSettingsView,
};
use super::{Agent, ApiError, AppState, parse_id};
use crate::command_bus::CommandError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/business_context")
            .route(web::get().to(business_context))
            .route(web::put().to(update_business_context)),
    )
    .service(
        web::resource("/widget_settings")
            .route(web::get().to(super::widget::settings))
            .route(web::put().to(update_widget_settings)),
    )
    .service(
        web::resource("/canned_responses")
            .route(web::get().to(canned_responses))
            .route(web::post().to(create_canned_response)),
    )
    .service(
        web::resource("/canned_responses/{id}")
            .route(web::put().to(update_canned_response))
            .route(web::delete().to(delete_canned_response)),
    )
    .service(web::resource("/tags").route(web::get().to(tags)))
    .service(web::resource("/reporting").route(web::get().to(reporting)))
    .service(web::resource("/reporting/ai").route(web::get().to(reporting_ai)));
}

pub(super) fn account_error(e: CommandError<AccountError>) -> ApiError {
    ApiError::from_command(e, |e| {
        matches!(e, AccountError::NotFound | AccountError::CannedResponseNotFound)
    })
}

pub(super) async fn load(state: &AppState, agent: &Agent) -> Result<Account, ApiError> {
    Ok(state
        .bus
        .load::<Account>(agent.account_id)
        .await
        .map_err(account_error)?
        .0)
}

fn context_json(account: &Account) -> Data<BusinessContextView> {
    let c = &account.business_context;
    Data {
        data: BusinessContextView {
            business_name: c.business_name.clone(),
            business_description: c.business_description.clone(),
            instructions: c.instructions.clone(),
            scheduling_link: c.scheduling_link.clone(),
            llm_enabled: account.llm_enabled,
        },
    }
}

/// What the LLM is told about the business, and whether it answers.
#[utoipa::path(get, path = "/api/business_context", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Data<BusinessContextView>), (status = 401, body = ErrorBody)))]
pub(super) async fn business_context(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(context_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ContextUpdate {
    business_name: String,
    #[serde(default)]
    business_description: String,
    #[serde(default)]
    instructions: String,
    scheduling_link: Option<String>,
    llm_enabled: Option<bool>,
}

/// Replaces the business context; `llm_enabled` switches auto-replies (admins).
#[utoipa::path(put, path = "/api/business_context", tag = "settings", request_body = ContextUpdate, security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 200, body = Data<BusinessContextView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update_business_context(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<ContextUpdate>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let body = body.into_inner();
    let mut commands = vec![AccountCommand::UpdateBusinessContext {
        context: BusinessContext {
            business_name: body.business_name,
            business_description: body.business_description,
            instructions: body.instructions,
            scheduling_link: body.scheduling_link.filter(|l| !l.is_empty()),
        },
    }];
    match body.llm_enabled {
        Some(true) => commands.push(AccountCommand::EnableLlm),
        Some(false) => commands.push(AccountCommand::DisableLlm),
        None => {}
    }
    state
        .bus
        .execute_all::<Account>(agent.account_id, &commands, &agent.meta())
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::Ok().json(context_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WidgetUpdate {
    #[serde(default)]
    title: String,
    #[serde(default)]
    subtitle: String,
    #[serde(default)]
    primary_color: String,
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    new_message_placeholder: String,
    #[serde(default)]
    show_agent_availability: bool,
    #[serde(default)]
    is_branding_hidden: bool,
    /// Absent: unchanged.
    allowed_origins: Option<Vec<String>>,
    /// `en`, `fr`, `de` or `es`; empty: the visitor's browser language; absent: unchanged.
    #[schema(pattern = "^(|en|fr|de|es)$")]
    locale: Option<String>,
    /// `minutes`, `hours` or `day` ("We typically reply in a few minutes", …); empty: say nothing;
    /// absent: unchanged.
    #[schema(pattern = "^(|minutes|hours|day)$")]
    reply_time: Option<String>,
}

/// Replaces the widget settings (admins). `allowed_origins`: where the widget may run (empty:
/// anywhere); it, `locale` and `reply_time` stay as they are when absent (clients that do not know them).
#[utoipa::path(put, path = "/api/widget_settings", tag = "settings", request_body = WidgetUpdate, security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 200, body = Data<WidgetSettingsView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update_widget_settings(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<WidgetUpdate>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let b = body.into_inner();
    let current = load(&state, &agent).await?.widget_settings;
    let settings = WidgetSettings {
        title: b.title,
        subtitle: b.subtitle,
        primary_color: b.primary_color,
        greeting: b.greeting,
        new_message_placeholder: b.new_message_placeholder,
        show_agent_availability: b.show_agent_availability,
        is_branding_hidden: b.is_branding_hidden,
        allowed_origins: b.allowed_origins.unwrap_or(current.allowed_origins),
        locale: b.locale.unwrap_or(current.locale),
        reply_time: b.reply_time.unwrap_or(current.reply_time),
    };
    state
        .bus
        .execute::<Account>(
            agent.account_id,
            AccountCommand::UpdateWidgetSettings { settings },
            &agent.meta(),
        )
        .await
        .map_err(account_error)?;
    let account = load(&state, &agent).await?;
    let s = account.widget_settings;
    Ok(HttpResponse::Ok().json(Data {
        data: WidgetSettingsView {
            title: s.title,
            subtitle: s.subtitle,
            primary_color: s.primary_color,
            greeting: s.greeting,
            new_message_placeholder: s.new_message_placeholder,
            show_agent_availability: s.show_agent_availability,
            is_branding_hidden: s.is_branding_hidden,
            allowed_origins: s.allowed_origins,
            locale: s.locale,
            reply_time: s.reply_time,
        },
    }))
}

fn canned_json(account: &Account) -> Data<Vec<CannedResponseView>> {
    let data = account
        .canned_responses
        .iter()
        .map(|(id, c)| CannedResponseView {
            id: id.to_string(),
            name: c.name.clone(),
            body: c.body.clone(),
        })
        .collect();
    Data { data }
}

#[utoipa::path(get, path = "/api/canned_responses", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<CannedResponseView>>), (status = 401, body = ErrorBody)))]
pub(super) async fn canned_responses(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(canned_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Canned {
    name: String,
    body: String,
}

pub(super) async fn save_canned(
    state: &AppState,
    agent: &Agent,
    id: uuid::Uuid,
    body: Canned,
) -> Result<Data<CannedResponseView>, ApiError> {
    agent.require(Role::Member)?;
    let command = AccountCommand::SaveCannedResponse {
        canned_response_id: id,
        name: body.name,
        body: body.body,
    };
    state
        .bus
        .execute::<Account>(agent.account_id, command, &agent.meta())
        .await
        .map_err(account_error)?;
    let account = load(state, agent).await?;
    let saved = account
        .canned_responses
        .get(&id)
        .ok_or_else(|| ApiError::NotFound("canned response not found".into()))?;
    Ok(Data {
        data: CannedResponseView {
            id: id.to_string(),
            name: saved.name.clone(),
            body: saved.body.clone(),
        },
    })
}

#[utoipa::path(post, path = "/api/canned_responses", tag = "settings", request_body = Canned, security(("bearer" = [])),
    responses((status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 201, body = Data<CannedResponseView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_canned_response(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<Canned>,
) -> Result<HttpResponse, ApiError> {
    let saved = save_canned(&state, &agent, uuid::Uuid::now_v7(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(saved))
}

#[utoipa::path(put, path = "/api/canned_responses/{id}", tag = "settings", params(("id" = uuid::Uuid, Path, description = "Canned response id")), request_body = Canned, security(("bearer" = [])),
    responses((status = 413, body = ErrorBody), (status = 200, body = Data<CannedResponseView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn update_canned_response(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
    body: web::Json<Canned>,
) -> Result<HttpResponse, ApiError> {
    let id: uuid::Uuid = parse_id(&id, "canned response id")?;
    if !load(&state, &agent).await?.canned_responses.contains_key(&id) {
        return Err(ApiError::NotFound("canned response not found".into()));
    }
    Ok(HttpResponse::Ok().json(save_canned(&state, &agent, id, body.into_inner()).await?))
}

#[utoipa::path(delete, path = "/api/canned_responses/{id}", tag = "settings", params(("id" = uuid::Uuid, Path, description = "Canned response id")), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_canned_response(
    state: web::Data<AppState>,
    agent: Agent,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Member)?;
    let id: uuid::Uuid = parse_id(&id, "canned response id")?;
    state
        .bus
        .execute::<Account>(
            agent.account_id,
            AccountCommand::DeleteCannedResponse { canned_response_id: id },
            &agent.meta(),
        )
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Tags on the account's conversations, with how many conversations carry each.
#[utoipa::path(get, path = "/api/tags", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<TagView>>), (status = 401, body = ErrorBody)))]
pub(super) async fn tags(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.tag, COUNT(*) FROM inbox_tags t JOIN inbox i ON i.conversation_id = t.conversation_id \
         WHERE i.account_id = $1 GROUP BY t.tag ORDER BY t.tag",
    )
    .bind(agent.account_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let data: Vec<TagView> = rows
        .into_iter()
        .map(|(name, conversations)| TagView { name, conversations })
        .collect();
    Ok(HttpResponse::Ok().json(Data { data }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct Range {
    /// First day, `YYYY-MM-DD` (UTC).
    from: NaiveDate,
    /// Last day, inclusive.
    to: NaiveDate,
}

/// Per day: conversations opened/closed, messages by kind, replies per agent, first-response and
/// resolution times (`from`/`to`: `YYYY-MM-DD`, inclusive, at most 367 days).
#[utoipa::path(get, path = "/api/reporting", tag = "reporting", params(Range), security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<DayView>>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn reporting(
    state: web::Data<AppState>,
    agent: Agent,
    range: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    crate::report::check_range(range.from, range.to).map_err(ApiError::BadRequest)?;
    let mut conn = state.db.acquire().await?;
    let days = ReportingProjection::report(
        &mut conn,
        agent.account_id,
        &range.from.format("%Y-%m-%d").to_string(),
        &range.to.format("%Y-%m-%d").to_string(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(Data { data: days }))
}

/// AI outcomes of the conversations opened from `from` to `to` (`YYYY-MM-DD`, UTC, inclusive, at
/// most 366 days apart): how many the bot took part in, resolved without a human, handed off (by
/// reason: `agent_replied`, `customer_asked`, `model_handoff`, `model_failed`), reopened within 7
/// days; rates of those; the time from a hand-off to a person's first reply; per day for charts.
#[utoipa::path(get, path = "/api/reporting/ai", tag = "reporting", params(Range), security(("bearer" = [])),
    responses((status = 200, body = Data<AiReportView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn reporting_ai(
    state: web::Data<AppState>,
    agent: Agent,
    range: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    crate::report::check_range(range.from, range.to).map_err(ApiError::BadRequest)?;
    let mut conn = state.db.acquire().await?;
    let report = crate::report::ai_report(&mut conn, agent.account_id, range.from, range.to).await?;
    Ok(HttpResponse::Ok().json(Data { data: report }))
}
