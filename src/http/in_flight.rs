//! The middleware that makes every `/api/` request take one of the node's places in flight
//! ([`Limiter::in_flight`], ADR 0024) before its work: a crowd of retrying clients waits there,
//! not in the database pools' queues where the projectors, the relay and the broadcaster would
//! wait behind it. None free within [`crate::limits::IN_FLIGHT_WAIT`]: 503 with `Retry-After: 1`.
//!
//! A request with a body takes its place once the body is in (the end of its payload stream waits
//! for it), so that a client sending a body slowly holds a connection, as before, and not a place
//! that the node's other clients need. File transfers (attachments), which stream for as long as
//! the client takes, logins and registrations, which wait for a password hash that has its own
//! bound, and CORS preflights take none.

use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use crate::limits::Limiter;

/// Where a request stands with its place.
enum Place {
    /// Its body is still coming (or was never read).
    Pending,
    /// Held until the handler has answered.
    Held { _permit: OwnedSemaphorePermit },
    /// No place came free in time.
    Busy,
}

/// 503 for a request that found no place in time.
fn busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(json!({
            "error": "unavailable",
            "message": "this node is busy; retry in 1 s",
        }))
}

/// Whether the request announces a body (a length above zero, or chunks).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|length| length > 0)
}

/// Logins and registrations, which wait for a password hash (argon2, one per core at a time, and
/// rate limited per address and email): holding a place through that wait would let a flood of
/// guesses turn every other client of the node away.
fn password_checked(req: &ServiceRequest) -> bool {
    let path = req
        .path()
        .strip_prefix("/api/v1")
        .or_else(|| req.path().strip_prefix("/api"))
        .unwrap_or_default();
    req.method() == actix_web::http::Method::POST && matches!(path, "/session" | "/registration")
}

/// The middleware (see the module's documentation).
pub async fn place(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path();
    let exempt = !path.starts_with("/api/")
        || req.method() == actix_web::http::Method::OPTIONS
        || path.starts_with("/api/attachments/")
        || path.ends_with("/attachments")
        || password_checked(&req);
    let limiter = req.app_data::<web::Data<Limiter>>().cloned();
    let Some(limiter) = limiter.filter(|_| !exempt) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    if !has_body(&req) {
        let Some(_place) = limiter.in_flight().await else {
            return Ok(req.into_response(busy()));
        };
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let place = Arc::new(Mutex::new(Place::Pending));
    let taken = place.clone();
    // After the last chunk: wait for a place, then end the body (with an empty chunk), or fail it.
    let tail = futures_util::stream::once(async move {
        let got = limiter.in_flight().await;
        let mut place = taken.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Some(permit) => {
                *place = Place::Held { _permit: permit };
                Ok(web::Bytes::new())
            }
            None => {
                *place = Place::Busy;
                Err(PayloadError::Io(std::io::Error::other(
                    "this node is busy; retry in 1 s",
                )))
            }
        }
    });
    let body = req.take_payload().chain(tail);
    req.set_payload(Payload::from(Box::pin(body) as actix_http::BoxedPayloadStream));
    let response = next.call(req).await?;
    let busy_now = matches!(*place.lock().unwrap_or_else(|p| p.into_inner()), Place::Busy);
    if busy_now {
        let (request, _) = response.into_parts();
        return Ok(ServiceResponse::new(request, busy()));
    }
    // The handler has answered: the place (if taken) is free again.
    *place.lock().unwrap_or_else(|p| p.into_inner()) = Place::Pending;
    Ok(response.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use actix_web::dev::Service;
    use actix_web::http::StatusCode;
    use actix_web::{App, test};

    use super::*;
    use crate::limits::{IN_FLIGHT_WAIT, Limits};

    fn limiter() -> Arc<Limiter> {
        Arc::new(Limiter::new(Limits {
            per_ip_per_minute: 1_000,
            per_customer_per_minute: 1_000,
            sockets_per_minute: 1_000,
            frames_per_second: 50,
            trust_proxy: false,
            in_flight: 1,
        }))
    }

    async fn app(
        limiter: Arc<Limiter>,
    ) -> Rc<impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>>
    {
        let echo = |body: web::Bytes| async move { HttpResponse::Ok().body(body) };
        Rc::new(
            test::init_service(
                App::new()
                    .app_data(web::Data::from(limiter))
                    .wrap(actix_web::middleware::from_fn(place))
                    .route("/api/echo", web::post().to(echo))
                    .route("/api/ping", web::get().to(|| async { "pong" })),
            )
            .await,
        )
    }

    #[actix_web::test]
    async fn a_body_still_coming_holds_no_place_and_a_body_in_takes_one_until_the_answer() {
        let limiter = limiter();
        let app = app(limiter.clone()).await;
        // A client sending its body slowly (here: never finishing it).
        let never: actix_http::BoxedPayloadStream = Box::pin(futures_util::stream::pending());
        let (slow, _) = test::TestRequest::post()
            .uri("/api/echo")
            .insert_header((actix_web::http::header::CONTENT_LENGTH, "10"))
            .to_request()
            .replace_payload(actix_http::Payload::from(never));
        let slow = actix_web::rt::spawn({
            let app = app.clone();
            async move { app.call(slow).await.map(|_| ()) }
        });
        // The slow request reaches its handler (and waits for its body) first.
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        let ping = test::call_service(&*app, test::TestRequest::get().uri("/api/ping").to_request()).await;
        assert_eq!(
            ping.status(),
            StatusCode::OK,
            "the one place is free while the body comes"
        );
        slow.abort();

        let echoed = test::call_service(
            &*app,
            test::TestRequest::post()
                .uri("/api/echo")
                .set_payload("{\"a\":1}")
                .to_request(),
        )
        .await;
        assert_eq!(echoed.status(), StatusCode::OK);
        assert_eq!(test::read_body(echoed).await, "{\"a\":1}", "the body arrives whole");
        assert!(limiter.in_flight().await.is_some(), "the place is free once answered");
    }

    #[actix_web::test]
    async fn with_every_place_held_requests_wait_then_get_503_with_retry_after() {
        let limiter = limiter();
        let app = app(limiter.clone()).await;
        let _held = limiter.in_flight().await.expect("the one place");
        let started = std::time::Instant::now();
        let ping = test::call_service(&*app, test::TestRequest::get().uri("/api/ping").to_request()).await;
        assert_eq!(ping.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ping.headers().get("Retry-After").unwrap(), "1");
        assert!(started.elapsed() >= IN_FLIGHT_WAIT, "it waited for a place first");
        let post = test::call_service(
            &*app,
            test::TestRequest::post()
                .uri("/api/echo")
                .set_payload("{}")
                .to_request(),
        )
        .await;
        assert_eq!(
            post.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "a body in waits for a place too"
        );
    }
}
