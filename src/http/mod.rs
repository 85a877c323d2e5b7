//! The HTTP edge: routes, shared state and the JSON error shape.

mod accounts;
mod attachments;
pub(crate) mod caller;
pub(crate) mod conversations;
mod customers;
mod email;
mod gmail;
pub mod health;
pub mod in_flight;
pub mod limits;
mod messages;
pub mod openapi;
pub mod pages;
pub mod session;
mod settings;
mod slack;
mod team;
mod twilio;
mod verification;
mod webhooks;
pub use crate::views;
pub(crate) mod widget;

use std::sync::Arc;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use sqlx::AnyPool;

use crate::app::App;
use crate::auth::{Auth, AuthError};
use crate::command_bus::CommandError;
use crate::store::EventStore;

pub use caller::{Agent, CustomerCaller};

/// Largest JSON body accepted, in bytes: sized so that every length documented in characters
/// holds in any script and any JSON spelling (see [`netia_commands::validate::MAX_REQUEST_BYTES`]).
pub const MAX_BODY: usize = netia_commands::validate::MAX_REQUEST_BYTES;

/// What every handler can reach: the application layer's services ([`App`], through `Deref`) and
/// the credentials store.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub auth: Auth,
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

impl AppState {
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool, auth: Auth) -> Self {
        Self {
            app: App::new(store, db),
            auth,
        }
    }

    /// Uses the local projectors' progress for read-your-writes.
    pub fn with_progress(mut self, progress: crate::projector::Progress) -> Self {
        self.app = self.app.with_progress(progress);
        self
    }

    /// Uses this deployment's key for secrets.
    pub fn with_sealer(mut self, sealer: crate::secrets::Sealer) -> Self {
        self.app = self.app.with_sealer(sealer);
        self
    }

    /// Lets outbound webhooks reach what `policy` allows.
    pub fn with_webhooks(mut self, policy: crate::app::webhooks::WebhookPolicy) -> Self {
        self.app = self.app.with_webhooks(policy);
        self
    }

    /// Keeps attachment files in `store`.
    pub fn with_attachments(mut self, store: crate::app::attachments::AttachmentStore) -> Self {
        self.app = self.app.with_attachments(store);
        self
    }

    /// Uses the deployment's channels (Slack app, public URL).
    pub fn with_channels(mut self, settings: &crate::settings::Settings) -> Self {
        self.app = self.app.with_channels(settings);
        self
    }

    /// An aggregate's current state, for checks before a command (ownership, roles). A failure to
    /// read it is ours (500), not the caller's.
    pub async fn load<A>(&self, id: impl std::fmt::Display) -> Result<A, ApiError>
    where
        A: netia_commands::Decide + Clone + 'static,
        A::Event: netia_events::DomainEvent,
    {
        Ok(self.app.state_of::<A>(id).await?)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(web::resource("/health/live").route(web::get().to(health::live)))
        .service(web::resource("/health/ready").route(web::get().to(health::ready)))
        .service(fixed("/metrics", "GET").route(web::get().to(health::metrics)))
        .configure(pages::routes)
        .service(web::resource("/api/openapi.json").route(web::get().to(openapi::document)))
        .configure(session::routes)
        .service(web::scope("/api/v1").configure(agent_routes))
        .service(web::scope("/api").configure(agent_routes))
        .default_service(web::to(not_found));
}

/// The agent API, served under `/api` (session tokens) and `/api/v1` (API keys too).
fn agent_routes(cfg: &mut web::ServiceConfig) {
    accounts::routes(cfg);
    attachments::routes(cfg);
    conversations::routes(cfg);
    customers::routes(cfg);
    settings::routes(cfg);
    team::routes(cfg);
    verification::routes(cfg);
    webhooks::routes(cfg);
    slack::routes(cfg);
    gmail::routes(cfg);
    email::routes(cfg);
    twilio::routes(cfg);
}

/// Cross-origin calls: any origin may call with a bearer token (no cookies are used, so a foreign page
/// cannot act for a visitor); the widget endpoints check the account's allowed origins themselves.
pub fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
        ])
        .expose_headers(["Retry-After"])
        .max_age(3600)
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(MAX_BODY).error_handler(|err, _| {
        let api = match &err {
            JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                ApiError::TooLarge(format!("request body is larger than {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                ApiError::BadRequest("request body must be JSON (Content-Type: application/json)".into())
            }
            JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Invalid(e.to_string()),
            JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
            other => ApiError::BadRequest(other.to_string()),
        };
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    })
}

fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    let api = ApiError::BadRequest(format!("invalid path: {err}"));
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = ApiError::BadRequest(format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// A resource that answers 405 (not the next matching resource) for methods it does not serve:
/// `/conversations/count` must not fall through to `/conversations/{id}`.
pub fn fixed(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .json(json!({
                "error": "method_not_allowed",
                "message": format!("{} is not allowed on {}", req.method(), req.path()),
            }))
    }))
}

/// A `HEAD` request, as the router saw it (a `GET`, see [`head_as_get`]).
#[derive(Clone, Copy)]
struct Head;

/// Serves `HEAD` as `GET` (RFC 9110 §9.3.2: the same status and headers, no content): the router
/// only knows `GET` routes, and a monitor's `curl -I /health/live` was answered 405. The HTTP
/// server sends no body for a `HEAD`, whatever the handler answered.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
        req.extensions_mut().insert(Head);
    }
    next.call(req).await
}

/// A 405 (from a route that exists with other methods) in the API's error shape, keeping `Allow`.
pub fn method_not_allowed<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let (req, res) = res.into_parts();
    let mut answer = HttpResponse::MethodNotAllowed();
    if let Some(allow) = res.headers().get(actix_web::http::header::ALLOW) {
        answer.insert_header((actix_web::http::header::ALLOW, allow.clone()));
    }
    use actix_web::HttpMessage;
    let method = match req.extensions().get::<Head>() {
        Some(Head) => "HEAD".to_owned(),
        None => req.method().to_string(),
    };
    let message = format!("{method} is not allowed on {}", req.path());
    let answer = answer.json(json!({"error": "method_not_allowed", "message": message}));
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, answer).map_into_right_body(),
    ))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Errors as the API reports them: `{"error": "code", "message": "…"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Invalid(_) => "invalid",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Our failure: 500, unless the database is unavailable (see [`crate::store::unavailable_in`]),
    /// which is a 503 with `Retry-After`: the same request may succeed in a moment, or PostgreSQL
    /// refused a text of the request ([`crate::store::unstorable_text_in`]: a NUL character), which
    /// is a 400, or the write was about an erased customer ([`crate::store::subject_erased_in`]),
    /// which is a 422.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        if crate::store::unstorable_text_in(&*e) {
            return ApiError::BadRequest("text must not contain the NUL character (U+0000)".into());
        }
        if crate::store::subject_erased_in(&*e) {
            return ApiError::Invalid(
                "the conversation's customer was erased: nothing more is recorded about them".into(),
            );
        }
        if crate::store::unavailable_in(&*e) {
            tracing::warn!(error = %e, "the database is unavailable; answered 503");
            return ApiError::Unavailable("the database is unavailable; try again".into());
        }
        ApiError::Internal(e)
    }

    /// A command's failure: the aggregate's refusal is the caller's mistake (422, or 404 when the
    /// thing does not exist), a concurrent change is a 409, the rest is ours.
    pub fn from_command<E: std::error::Error + Send + Sync + 'static>(
        e: CommandError<E>,
        not_found: impl Fn(&E) -> bool,
    ) -> Self {
        match e {
            CommandError::Domain(e) if not_found(&e) => ApiError::NotFound(e.to_string()),
            CommandError::Domain(e) => ApiError::Invalid(e.to_string()),
            CommandError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            // The database is away or slow: the client may try again (nothing doubled: an
            // unknown outcome is resolved against the log first; see `store::APPEND_DEADLINE`).
            CommandError::Store(
                crate::store::StoreError::Unavailable(_)
                | crate::store::StoreError::TaskDown(_)
                | crate::store::StoreError::OutcomeUnknown(_),
            ) => ApiError::Unavailable(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::EmailTaken => ApiError::Conflict(e.to_string()),
            AuthError::WeakPassword => ApiError::Invalid(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::app::AppError> for ApiError {
    fn from(e: crate::app::AppError) -> Self {
        use crate::app::AppError;
        match e {
            AppError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AppError::NotReadableYet(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<netia_projections::ProjectionError> for ApiError {
    fn from(e: netia_projections::ProjectionError) -> Self {
        ApiError::internal(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::Unavailable(_) = self {
            response.insert_header(("Retry-After", "1"));
        }
        response.json(json!({"error": self.code(), "message": self.to_string()}))
    }
}

/// The `next` cursor of a page ordered by (time, id), newest first.
pub fn cursor(at: &str, id: &str) -> String {
    format!("{at}~{id}")
}

/// Reads an `after` cursor made by [`cursor`]: the time and the id, both checked.
pub fn parse_cursor<Id: std::str::FromStr>(cursor: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::BadRequest("after must be a cursor returned as next".into());
    let (at, id) = cursor.rsplit_once('~').ok_or_else(bad)?;
    chrono::DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    id.parse::<Id>().map_err(|_| bad())?;
    Ok((at.to_owned(), id.to_owned()))
}

/// Parses an id from a path segment; a malformed one is a 400 naming what was expected.
pub fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("{what} must be a UUID")))
}

/// `path` as the access log shows it: without the secret a path may carry (the inbound email
/// webhook's token, `/api[/v1]/email/inbound/<token>` → `…/inbound/[token]`). Query strings are
/// never logged (OAuth codes, socket tokens).
pub fn loggable_path(path: &str) -> String {
    match path.split_once("/email/inbound/") {
        Some((head, rest)) if rest != "rotate" => format!("{head}/email/inbound/[token]"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod log_tests {
    #[test]
    fn the_inbound_webhook_token_never_reaches_the_access_log() {
        assert_eq!(
            super::loggable_path("/api/email/inbound/abc123"),
            "/api/email/inbound/[token]"
        );
        assert_eq!(
            super::loggable_path("/api/v1/email/inbound/abc/x"),
            "/api/v1/email/inbound/[token]"
        );
        assert_eq!(
            super::loggable_path("/api/email/inbound/rotate"),
            "/api/email/inbound/rotate"
        );
        assert_eq!(super::loggable_path("/api/conversations"), "/api/conversations");
    }
}
