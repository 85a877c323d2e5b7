//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{ApiError, AppState};
use crate::store::Backend;

/// The process is up.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can serve: its event store answers within two seconds.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let backend = match state.store.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready", "database": backend}))),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("{backend} is not answering: {e}"))),
        Err(_) => Err(ApiError::Unavailable(format!("{backend} did not answer within 2 s"))),
    }
}
