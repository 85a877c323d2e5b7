//! Account settings and shared resources: business context (+ LLM on/off), widget settings, canned
//! responses, tags in use, and the reporting read model.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use netia_commands::{Account, AccountCommand, AccountError};
use netia_events::account::{BusinessContext, WidgetSettings};
use netia_events::user::Role;
use netia_events::{Actor, Metadata};
use netia_projections::ReportingProjection;
use serde::Deserialize;
use serde_json::{Value, json};

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
    .route("/tags", web::get().to(tags))
    .route("/reporting", web::get().to(reporting));
}

fn account_error(e: CommandError<AccountError>) -> ApiError {
    ApiError::from_command(e, |e| {
        matches!(e, AccountError::NotFound | AccountError::CannedResponseNotFound)
    })
}

fn meta(agent: &Agent) -> Metadata {
    Metadata::new(Actor::Agent { user_id: agent.user_id }).with_account(agent.account_id)
}

async fn load(state: &AppState, agent: &Agent) -> Result<Account, ApiError> {
    Ok(state
        .bus
        .load::<Account>(agent.account_id)
        .await
        .map_err(account_error)?
        .0)
}

fn context_json(account: &Account) -> Value {
    let c = &account.business_context;
    json!({"data": {
        "business_name": c.business_name,
        "business_description": c.business_description,
        "instructions": c.instructions,
        "scheduling_link": c.scheduling_link,
        "llm_enabled": account.llm_enabled,
    }})
}

async fn business_context(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(context_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextUpdate {
    business_name: String,
    #[serde(default)]
    business_description: String,
    #[serde(default)]
    instructions: String,
    scheduling_link: Option<String>,
    llm_enabled: Option<bool>,
}

async fn update_business_context(
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
        .execute_all::<Account>(agent.account_id, &commands, &meta(&agent))
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::Ok().json(context_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WidgetUpdate {
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
    #[serde(default)]
    allowed_origins: Vec<String>,
}

async fn update_widget_settings(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<WidgetUpdate>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    let b = body.into_inner();
    let settings = WidgetSettings {
        title: b.title,
        subtitle: b.subtitle,
        primary_color: b.primary_color,
        greeting: b.greeting,
        new_message_placeholder: b.new_message_placeholder,
        show_agent_availability: b.show_agent_availability,
        is_branding_hidden: b.is_branding_hidden,
        allowed_origins: b.allowed_origins,
    };
    state
        .bus
        .execute::<Account>(
            agent.account_id,
            AccountCommand::UpdateWidgetSettings { settings },
            &meta(&agent),
        )
        .await
        .map_err(account_error)?;
    let account = load(&state, &agent).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": account.widget_settings })))
}

fn canned_json(account: &Account) -> Value {
    let data: Vec<Value> = account
        .canned_responses
        .iter()
        .map(|(id, c)| json!({"id": id, "name": c.name, "body": c.body}))
        .collect();
    json!({ "data": data })
}

async fn canned_responses(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(canned_json(&load(&state, &agent).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Canned {
    name: String,
    body: String,
}

async fn save_canned(state: &AppState, agent: &Agent, id: uuid::Uuid, body: Canned) -> Result<Value, ApiError> {
    agent.require(Role::Member)?;
    let command = AccountCommand::SaveCannedResponse {
        canned_response_id: id,
        name: body.name,
        body: body.body,
    };
    state
        .bus
        .execute::<Account>(agent.account_id, command, &meta(agent))
        .await
        .map_err(account_error)?;
    let account = load(state, agent).await?;
    let saved = account
        .canned_responses
        .get(&id)
        .ok_or_else(|| ApiError::NotFound("canned response not found".into()))?;
    Ok(json!({"data": {"id": id, "name": saved.name, "body": saved.body}}))
}

async fn create_canned_response(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<Canned>,
) -> Result<HttpResponse, ApiError> {
    let saved = save_canned(&state, &agent, uuid::Uuid::now_v7(), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(saved))
}

async fn update_canned_response(
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

async fn delete_canned_response(
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
            &meta(&agent),
        )
        .await
        .map_err(account_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Tags on the account's conversations, with how many conversations carry each.
async fn tags(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.tag, COUNT(*) FROM inbox_tags t JOIN inbox i ON i.conversation_id = t.conversation_id \
         WHERE i.account_id = $1 GROUP BY t.tag ORDER BY t.tag",
    )
    .bind(agent.account_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(tag, n)| json!({"name": tag, "conversations": n}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: NaiveDate,
    to: NaiveDate,
}

/// Per day: conversations opened/closed, messages by kind, replies per agent, first-response and
/// resolution times (`from`/`to`: `YYYY-MM-DD`, inclusive, at most 366 days).
async fn reporting(
    state: web::Data<AppState>,
    agent: Agent,
    range: web::Query<Range>,
) -> Result<HttpResponse, ApiError> {
    if range.to < range.from || (range.to - range.from).num_days() > 366 {
        return Err(ApiError::BadRequest(
            "from..to must be an ordered range of at most 366 days".into(),
        ));
    }
    let mut conn = state.db.acquire().await?;
    let days = ReportingProjection::report(
        &mut conn,
        agent.account_id,
        &range.from.format("%Y-%m-%d").to_string(),
        &range.to.format("%Y-%m-%d").to_string(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "data": days })))
}
