//! The rate-limit middleware of the public side of the API (the limiters are
//! [`crate::limits::Limiter`]): a request carried by an agent token that *validates* (a session or
//! an API key; remembered for [`crate::limits::AGENT_TOKEN_CACHE`]) passes; everything else —
//! widget calls, registration, login, and any token that does not validate — is counted per
//! client address, and customer tokens per token too. A refused request gets 429 with
//! `Retry-After` (seconds). Slack's signed callbacks (`/api/slack/events`, `/api/slack/actions`)
//! are not counted per address: Slack sends every event of a busy workspace from a few addresses,
//! a 429 makes it retry and then disable the subscription, and the handlers refuse an unsigned
//! request after one HMAC, before reading anything else.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::auth::TokenKind;
use crate::limits::{Limiter, client_ip};

/// A 429 telling the client how long to wait (whole seconds, at least 1).
pub fn too_many(wait: Duration, who: &str) -> HttpResponse {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", seconds.to_string()))
        .json(json!({
            "error": "rate_limited",
            "message": format!("too many requests from this {who}; retry in {seconds} s"),
        }))
}

/// Whether `token` is an agent's session or API key that is valid now (its holder enabled).
async fn validated_agent(req: &ServiceRequest, limiter: &Limiter, token: &str) -> bool {
    if !(token.starts_with("nts_") || token.starts_with("ntk_")) {
        return false;
    }
    let digest = crate::auth::digest(token);
    if limiter.agent_validated(&digest) {
        return true;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return false;
    };
    let kinds = [TokenKind::Session, TokenKind::ApiKey];
    let valid = crate::app::identity::agent(&state.app, &state.auth, token, &kinds)
        .await
        .is_ok();
    if valid {
        limiter.agent_valid(digest);
    }
    valid
}

/// Slack's callbacks, which prove their origin with a signature (see the module's documentation).
fn signed_by_slack(path: &str) -> bool {
    let path = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/api"))
        .unwrap_or(path);
    matches!(path, "/slack/events" | "/slack/actions")
}

/// The middleware (see the module's documentation).
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<Limiter>>().cloned();
    let Some(limiter) = limiter.filter(|_| {
        req.path().starts_with("/api/")
            && req.method() != actix_web::http::Method::OPTIONS
            && !signed_by_slack(req.path())
    }) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let token = super::caller::bearer(req.request());
    if let Some(token) = &token
        && validated_agent(&req, &limiter, token).await
    {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let forwarded = req.headers().get("X-Forwarded-For").and_then(|v| v.to_str().ok());
    let ip = client_ip(limiter.limits.trust_proxy, forwarded, req.peer_addr().map(|a| a.ip()));
    if let Some(ip) = ip
        && let Err(wait) = limiter.request_from(ip)
    {
        return Ok(req.into_response(too_many(wait, "address")));
    }
    if let Some(token) = token.filter(|t| t.starts_with("ntc_"))
        && let Err(wait) = limiter.request_as_customer(crate::auth::digest(&token))
    {
        return Ok(req.into_response(too_many(wait, "customer")));
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}
