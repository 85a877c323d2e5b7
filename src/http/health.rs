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

/// Prometheus counters: events relayed to RabbitMQ; per consumer the events handled, skipped as
/// duplicates, retried and parked; per supervised task whether it runs and its restarts.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics(
    metrics: web::Data<crate::bus::Metrics>,
    components: web::Data<crate::supervisor::Components>,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render() + &components.render())
}
