//! Rate limits for the public side of the API: per client IP for everything not carried by an agent
//! token (widget calls, registration, login), and per customer token on top. Token buckets in
//! memory, per node; a refused request gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Requests per minute, refilled continuously, with a burst of the same size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_ip_per_minute: u32,
    pub per_customer_per_minute: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_proxy: bool,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets keyed by client; idle ones are dropped as the map grows.
pub struct Limiter {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; `Err` holds how long until one is available.
    fn take(&self, key: String, per_minute: u32) -> Result<(), Duration> {
        let rate = f64::from(per_minute.max(1)) / 60.0;
        let burst = f64::from(per_minute.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    fn client_ip(&self, req: &ServiceRequest) -> Option<IpAddr> {
        if self.limits.trust_proxy
            && let Some(forwarded) = req.headers().get("X-Forwarded-For").and_then(|v| v.to_str().ok())
            && let Some(ip) = forwarded.rsplit(',').next().and_then(|ip| ip.trim().parse().ok())
        {
            return Some(ip);
        }
        req.peer_addr().map(|a| a.ip())
    }
}

fn too_many(wait: Duration, who: &str) -> HttpResponse {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", seconds.to_string()))
        .json(json!({
            "error": "rate_limited",
            "message": format!("too many requests from this {who}; retry in {seconds} s"),
        }))
}

/// The middleware: agents (session or API key) pass; everyone else is counted per IP, and customer
/// tokens also per token.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<Limiter>>().cloned();
    let Some(limiter) = limiter.filter(|_| req.path().starts_with("/api/")) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let token = super::caller::bearer(req.request());
    let agent = token
        .as_deref()
        .is_some_and(|t| t.starts_with("nts_") || t.starts_with("ntk_"));
    if !agent && req.method() != actix_web::http::Method::OPTIONS {
        let ip = limiter
            .client_ip(&req)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if let Err(wait) = limiter.take(format!("ip:{ip}"), limiter.limits.per_ip_per_minute) {
            return Ok(req.into_response(too_many(wait, "address")));
        }
        if let Some(token) = token.filter(|t| t.starts_with("ntc_"))
            && let Err(wait) = limiter.take(format!("customer:{token}"), limiter.limits.per_customer_per_minute)
        {
            return Ok(req.into_response(too_many(wait, "customer")));
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}
