//! Outbound webhooks (event subscriptions) against a local receiver (wiremock): signed deliveries
//! verified with the documented recipe, in the API's shapes; retries until a 2xx, the same
//! delivery id each time, parked after the attempts; the delivery log; the test event; the SSRF
//! guard; secrets never in answers or in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, Session};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const EVENTS: [&str; 5] = [
    "message:created",
    "conversation:created",
    "conversation:updated",
    "conversation:closed",
    "customer:created",
];

/// The receiver's side, as the README documents it: `t` and `v1` from `X-Netia-Signature`,
/// hex(HMAC-SHA256(secret, "<t>.<raw body>")) compared, and `t` within 5 minutes.
fn signature_valid(secret: &str, request: &Request) -> bool {
    let Some(header) = request.headers.get("x-netia-signature").and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let parts: std::collections::HashMap<&str, &str> = header.split(',').filter_map(|p| p.split_once('=')).collect();
    let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else {
        return false;
    };
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    fresh && hex::decode(v1).is_ok_and(|given| mac.verify_slice(&given).is_ok())
}

async fn subscribe(api: &Api, admin: &Session, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = api
        .post(
            "/api/event_subscriptions",
            Some(&admin.token),
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
    (body["data"]["id"].as_str().unwrap().to_owned(), secret)
}

/// Waits (at most `within`) until `receiver` has had `n` requests; returns them.
async fn received(receiver: &MockServer, n: usize, within: Duration) -> Vec<Request> {
    let started = Instant::now();
    loop {
        let requests = receiver.received_requests().await.unwrap_or_default();
        if requests.len() >= n || started.elapsed() > within {
            return requests;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent reply in a new conversation of `admin`'s account; returns the conversation id.
async fn agent_reply(api: &Api, admin: &Session, text: &str) -> String {
    let (conversation, _) = api.conversation(&admin.account_id).await;
    let (status, body) = api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&admin.token),
            json!({"body": text}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    conversation
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

async fn signed_deliveries_in_the_apis_shapes(db: &TestDb) {
    let api = Api::start_with(db, &[("WEBHOOK_ALLOW_PRIVATE", "1")]).await;
    let admin = api.register("hooks@example.com").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let (id, secret) = subscribe(&api, &admin, &format!("{}/netia", receiver.uri()), &EVENTS).await;
    let (status, listed) = api.get("/api/event_subscriptions", &admin.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once: {listed}"
    );

    let conversation = agent_reply(&api, &admin, "Your **bike** is ready").await;
    let requests = received(&receiver, 3, Duration::from_secs(20)).await;
    let mut events: Vec<String> = requests
        .iter()
        .map(|r| body(r)["event"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(
        events,
        ["conversation:created", "customer:created", "message:created"],
        "{requests:?}"
    );
    for request in &requests {
        assert!(signature_valid(&secret, request), "signature of {request:?}");
        assert!(!signature_valid("whsec_other", request));
        let delivered = body(request);
        assert_eq!(
            request.headers["x-netia-delivery"].to_str().unwrap(),
            delivered["id"].as_str().unwrap()
        );
        assert_eq!(delivered["account_id"], admin.account_id.as_str());
        assert_eq!(request.headers["content-type"], "application/json");
    }
    let message = requests
        .iter()
        .map(body)
        .find(|b| b["event"] == "message:created")
        .unwrap();
    assert_eq!(message["payload"]["body"], "Your **bike** is ready");
    assert_eq!(message["payload"]["type"], "agent");
    assert_eq!(message["payload"]["conversation_id"], conversation.as_str());
    assert_eq!(message["payload"]["private"], false);
    let started = requests
        .iter()
        .map(body)
        .find(|b| b["event"] == "conversation:created")
        .unwrap();
    assert_eq!(started["payload"]["id"], conversation.as_str());
    assert_eq!(started["payload"]["status"], "open");

    // Closing: conversation:updated and conversation:closed, both with the closed conversation.
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("/api/conversations/{conversation}"),
            Some(&admin.token),
            Some(json!({"status": "closed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let requests = received(&receiver, 5, Duration::from_secs(20)).await;
    let closing: Vec<Value> = requests[3..].iter().map(body).collect();
    let mut names: Vec<&str> = closing.iter().map(|b| b["event"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["conversation:closed", "conversation:updated"]);
    assert!(closing.iter().all(|b| b["payload"]["status"] == "closed"));

    let (status, log) = api
        .get(&format!("/api/event_subscriptions/{id}/deliveries"), &admin.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let log = log["data"].as_array().unwrap();
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(
        log.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1 && d["response_status"] == 204)
    );

    // The secret is in no event of the log.
    let leaked = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE CAST(payload AS TEXT) LIKE '%{secret}%' OR CAST(metadata AS TEXT) LIKE '%{secret}%'"
        ))
        .await;
    assert_eq!(leaked, 0);
}

async fn a_failing_receiver_is_retried_with_the_same_delivery_then_parked(db: &TestDb) {
    let api = Api::start_with(
        db,
        &[
            ("WEBHOOK_ALLOW_PRIVATE", "1"),
            ("BUS_MAX_ATTEMPTS", "3"),
            ("BUS_RETRY_BASE_MS", "50"),
        ],
    )
    .await;
    let admin = api.register("retries@example.com").await;
    // One receiver fails once, then takes it; the other always fails.
    let flaky = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&flaky)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&flaky)
        .await;
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&down)
        .await;
    let (flaky_id, _) = subscribe(&api, &admin, &flaky.uri(), &["message:created"]).await;
    let (down_id, _) = subscribe(&api, &admin, &down.uri(), &["message:created"]).await;
    agent_reply(&api, &admin, "Hello").await;

    let to_flaky = received(&flaky, 2, Duration::from_secs(20)).await;
    let to_down = received(&down, 3, Duration::from_secs(20)).await;
    assert_eq!(to_flaky.len(), 2, "one failure, one success");
    assert_eq!(to_down.len(), 3, "BUS_MAX_ATTEMPTS attempts");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        flaky.received_requests().await.unwrap().len(),
        2,
        "delivered once, not again"
    );
    assert_eq!(
        down.received_requests().await.unwrap().len(),
        3,
        "nothing after parking"
    );
    for requests in [&to_flaky, &to_down] {
        let ids: std::collections::BTreeSet<&str> = requests
            .iter()
            .map(|r| r.headers["x-netia-delivery"].to_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "every retry is the same delivery");
        assert!(requests.windows(2).all(|w| w[0].body == w[1].body), "and the same body");
    }
    let log = |id: String| {
        let (api, token) = (&api, admin.token.clone());
        async move {
            let (_, log) = api
                .get(&format!("/api/event_subscriptions/{id}/deliveries"), &token)
                .await;
            log["data"][0].clone()
        }
    };
    let flaky_log = log(flaky_id).await;
    assert_eq!(
        (flaky_log["state"].as_str(), flaky_log["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );
    let down_log = log(down_id).await;
    assert_eq!(
        (down_log["state"].as_str(), down_log["attempts"].as_i64()),
        (Some("parked"), Some(3))
    );
    assert_eq!(down_log["response_status"], 500);
    assert!(down_log["error"].as_str().unwrap().contains("500"), "{down_log}");
    let parked = db
        .count("SELECT count(*) FROM consumer_parked WHERE consumer = 'webhooks'")
        .await;
    assert_eq!(parked, 1, "the event is parked for the webhooks consumer");
}

async fn the_test_event_reports_how_it_went(db: &TestDb) {
    let api = Api::start_with(db, &[("WEBHOOK_ALLOW_PRIVATE", "1")]).await;
    let admin = api.register("test-event@example.com").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (id, secret) = subscribe(&api, &admin, &receiver.uri(), &["customer:created"]).await;
    let (status, sent) = api
        .post(
            &format!("/api/event_subscriptions/{id}/test"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["data"]["state"], "delivered");
    assert_eq!(sent["data"]["event"], "webhook:test");
    let requests = received(&receiver, 1, Duration::from_secs(5)).await;
    assert!(signature_valid(&secret, &requests[0]));
    assert_eq!(body(&requests[0])["event"], "webhook:test");

    // A receiver that is not there: the answer says so.
    let nobody = format!("http://127.0.0.1:{}/hook", common::nodes::free_port());
    let (gone, _) = subscribe(&api, &admin, &nobody, &["customer:created"]).await;
    let (status, sent) = api
        .post(
            &format!("/api/event_subscriptions/{gone}/test"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["data"]["state"], "parked");
    assert!(
        sent["data"]["error"].as_str().is_some_and(|e| e.contains("onnect")),
        "{sent}"
    );

    // Deleted: gone from the list, 404 for its log.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/event_subscriptions/{id}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = api.get("/api/event_subscriptions", &admin.token).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], gone.as_str());
    let (status, _) = api
        .get(&format!("/api/event_subscriptions/{id}/deliveries"), &admin.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn private_addresses_and_bad_subscriptions_are_refused(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("ssrf@example.com").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
    ] {
        let (status, body) = api
            .post(
                "/api/event_subscriptions",
                Some(&admin.token),
                json!({"url": url, "events": ["message:created"]}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("not allowed"), "{body}");
    }
    for (payload, expected) in [
        (
            json!({"url": "https://hooks.example.com/", "events": ["message:deleted"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": "ftp://hooks.example.com/", "events": ["message:created"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": ["message:created"], "secret": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"url": 7, "events": ["message:created"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = api
            .post("/api/event_subscriptions", Some(&admin.token), payload.clone())
            .await;
        assert_eq!(status, expected, "{payload}: {body}");
    }
    let (status, _) = api.get("/api/event_subscriptions", "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let invitation = api.invite(&admin, "member@example.com", "member").await;
    let member = api.accept("member@example.com", &invitation, "Mo").await;
    let (status, _) = api.get("/api/event_subscriptions", &member.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let (status, _) = api
        .get("/api/event_subscriptions/not-a-uuid/deliveries", &admin.token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A receiver written in Node from the README's recipe verifies real deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_receiver_verifies_deliveries_with_the_documented_recipe() {
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start_with(&db, &[("WEBHOOK_ALLOW_PRIVATE", "1"), ("BUS_RETRY_BASE_MS", "200")]).await;
    let admin = api.register("node-hooks@example.com").await;
    let port = common::nodes::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (_, secret) = subscribe(&api, &admin, &url, &["message:created", "conversation:created"]).await;
    let receiver = tokio::spawn(async move {
        let port = port.to_string();
        common::nodes::run_script(
            "webhook_receiver.mjs",
            &[("PORT", port.as_str()), ("SECRET", secret.as_str()), ("COUNT", "2")],
        )
        .await;
    });
    agent_reply(&api, &admin, "Verified in Node").await;
    tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .expect("the receiver finished")
        .expect("and verified both deliveries");
    db.cleanup().await;
}

on_both_backends!(
    signed_deliveries_in_the_apis_shapes,
    a_failing_receiver_is_retried_with_the_same_delivery_then_parked,
    the_test_event_reports_how_it_went,
    private_addresses_and_bad_subscriptions_are_refused,
);

/// Through RabbitMQ (`netia.webhooks`): the same delivery, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_go_through_rabbitmq() {
    let Some(db) = TestDb::postgres().await else { return };
    let amqp = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let api = Api::start_with(&db, &[("WEBHOOK_ALLOW_PRIVATE", "1"), ("AMQP_URL", amqp.as_str())]).await;
    let admin = api.register("amqp-hooks@example.com").await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (_, secret) = subscribe(&api, &admin, &receiver.uri(), &["message:created"]).await;
    agent_reply(&api, &admin, "Through the broker").await;
    let requests = received(&receiver, 1, Duration::from_secs(30)).await;
    assert_eq!(requests.len(), 1);
    assert!(signature_valid(&secret, &requests[0]));
    assert_eq!(body(&requests[0])["payload"]["body"], "Through the broker");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1, "once");
    db.cleanup().await;
}
