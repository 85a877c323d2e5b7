//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use super::{ApiError, AppState};

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (live) or `ready`.
    pub status: &'static str,
    /// `postgres` or `sqlite` (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
}
use crate::store::Backend;

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
pub(super) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        database: None,
    })
}

/// The process can serve: it is not shutting down, its event store answers within two seconds,
/// and every supervised background task is running (a 503 names the ones waiting to restart,
/// with why).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = super::views::ErrorBody)))]
pub(super) async fn ready(
    state: web::Data<AppState>,
    components: web::Data<crate::supervisor::Components>,
) -> Result<HttpResponse, ApiError> {
    if components.draining() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let down = components.down();
    if !down.is_empty() {
        let named: Vec<String> = down.iter().map(|(name, why)| format!("{name} ({why})")).collect();
        return Err(ApiError::Unavailable(format!(
            "not ready: {} down, restarting",
            named.join(", ")
        )));
    }
    let backend = match state.store.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Health {
            status: "ready",
            database: Some(backend),
        })),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("{backend} is not answering: {e}"))),
        Err(_) => Err(ApiError::Unavailable(format!("{backend} did not answer within 2 s"))),
    }
}

/// Who may read `/metrics` on the API port: the holder of `METRICS_TOKEN` (compared as SHA-256
/// digests, so the comparison's timing says nothing of the token). Without a token, metrics are
/// only on `METRICS_ADDR` (if set) and the API port refuses them.
#[derive(Clone, Default)]
pub struct MetricsAccess {
    token_digest: Option<String>,
    elsewhere: Option<std::net::SocketAddr>,
}

impl MetricsAccess {
    pub fn new(token: Option<&str>, elsewhere: Option<std::net::SocketAddr>) -> Self {
        Self {
            token_digest: token.map(crate::auth::digest),
            elsewhere,
        }
    }
}

/// Prometheus text: events relayed to RabbitMQ; per consumer the events handled, skipped as
/// duplicates, retried and parked; per supervised task whether it runs and its restarts. Needs
/// `Authorization: Bearer <METRICS_TOKEN>` (401 without it or with another token); 403 for a
/// token when none is configured (then metrics are served only on `METRICS_ADDR`, if set).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = super::views::ErrorBody), (status = 403, body = super::views::ErrorBody)))]
pub(super) async fn metrics(
    req: actix_web::HttpRequest,
    access: web::Data<MetricsAccess>,
) -> Result<HttpResponse, ApiError> {
    let token = super::caller::bearer(&req);
    if token.is_none() {
        return Err(ApiError::Unauthorized(
            "metrics need Authorization: Bearer <METRICS_TOKEN>".into(),
        ));
    }
    let Some(wanted) = &access.token_digest else {
        return Err(ApiError::Forbidden(match access.elsewhere {
            Some(addr) => format!("metrics are served on {addr} (METRICS_ADDR)"),
            None => "metrics are off: set METRICS_TOKEN (a bearer token) or METRICS_ADDR".into(),
        }));
    };
    match token {
        Some(token) if crate::auth::digest(&token) == *wanted => Ok(render()),
        _ => Err(ApiError::Unauthorized(
            "metrics need Authorization: Bearer <METRICS_TOKEN>".into(),
        )),
    }
}

/// The metrics as a scraper reads them.
pub fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::recorder::render())
}

/// Middleware: counts every answered request and times it (`netia_http_requests_total`,
/// `netia_http_request_duration_seconds`), labelled by method, route template (`/api/
/// conversations/{id}`, never the raw path, so that ids do not multiply the series; `unmatched`
/// when no route matched) and status.
pub async fn measure(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let answered = next.call(req).await;
    let (route, status) = match &answered {
        Ok(res) => (res.request().match_pattern(), res.response().status().as_u16()),
        Err(e) => (None, e.as_response_error().status_code().as_u16()),
    };
    let labels = [
        ("method", method),
        ("route", route.unwrap_or_else(|| "unmatched".to_owned())),
        ("status", status.to_string()),
    ];
    metrics::counter!("netia_http_requests_total", &labels).increment(1);
    metrics::histogram!("netia_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    answered
}
