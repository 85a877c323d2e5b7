//! Twilio SMS against a fake Twilio (wiremock) that checks requests the way Twilio does (basic auth
//! with the account SID and auth token, form body, required fields) and answers in Twilio's shapes:
//! linking (credentials Twilio refuses → 422, the token never returned), a signed incoming SMS → a
//! conversation (source `sms`) pushed to the agent's socket (official `phoenix` client), the same
//! `MessageSid` twice → one message, wrong/missing signature or a tampered parameter → 403 and
//! nothing stored, an agent's reply → a Messages API call with basic auth, status callbacks →
//! the reply's delivery status (never backwards), 429/5xx → retried, then parked as
//! `SmsSendFailed`; no auth token in answers, events, the log's payloads or the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::TestDb;
use common::api::{Api, Session};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
const OUR_NUMBER: &str = "+15005550006";
const CUSTOMER_NUMBER: &str = "+14155550100";
const PUBLIC_URL: &str = "https://support.acme.example";

/// The fake Twilio: checks every call as Twilio does and records the messages sent.
struct FakeTwilio {
    sent: Mutex<Vec<std::collections::HashMap<String, String>>>,
    next: AtomicU64,
}

fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"code": code, "message": message, "status": status}))
}

/// The fake, shared between the mock server and the test.
struct Shared(std::sync::Arc<FakeTwilio>);

impl Respond for Shared {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.respond(request)
    }
}

impl FakeTwilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH_TOKEN}"))
        );
        let authorized = request.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
        if !authorized {
            return twilio_error(401, 20003, "Authenticate");
        }
        let account = format!("/2010-04-01/Accounts/{SID}");
        let path = request.url.path();
        if request.method.as_str() == "GET" && path == format!("{account}.json") {
            return ResponseTemplate::new(200).set_body_json(json!({"sid": SID, "status": "active"}));
        }
        if request.method.as_str() == "POST" && path == format!("{account}/Messages.json") {
            let content_type = request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !content_type.starts_with("application/x-www-form-urlencoded") {
                return twilio_error(400, 20001, "Invalid content type");
            }
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&request.body).into_owned().collect();
            for field in ["To", "From", "Body"] {
                if form.get(field).is_none_or(|v| v.is_empty()) {
                    return twilio_error(400, 21604, "A required parameter is missing");
                }
            }
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let sid = format!("SM{n:032x}");
            self.sent.lock().unwrap().push(form.clone());
            return ResponseTemplate::new(201).set_body_json(json!({
                "sid": sid, "status": "queued", "to": form["To"], "from": form["From"], "body": form["Body"],
                "account_sid": SID, "num_segments": "1"
            }));
        }
        twilio_error(404, 20404, "The requested resource was not found")
    }
}

struct World {
    api: Api,
    admin: Session,
    fake: std::sync::Arc<FakeTwilio>,
    _twilio: MockServer,
}

impl World {
    fn sent(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.fake.sent.lock().unwrap().clone()
    }

    async fn wait_sent(&self, n: usize) -> Vec<std::collections::HashMap<String, String>> {
        let started = Instant::now();
        while self.sent().len() < n && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.sent()
    }
}

/// A server whose Twilio is the fake; `before` mounts run first (they win).
async fn world(db: &TestDb, extra: &[(&str, &str)], before: Vec<Mock>) -> World {
    common::logs::capture();
    let twilio = MockServer::start().await;
    for mock in before {
        twilio.register(mock).await;
    }
    let fake = std::sync::Arc::new(FakeTwilio {
        sent: Mutex::new(Vec::new()),
        next: AtomicU64::new(1),
    });
    Mock::given(wiremock::matchers::any())
        .respond_with(Shared(fake.clone()))
        .mount(&twilio)
        .await;
    let base = twilio.uri();
    let mut vars: Vec<(&str, &str)> = vec![("TWILIO_API_BASE_URL", base.as_str()), ("NETIA_PUBLIC_URL", PUBLIC_URL)];
    vars.extend_from_slice(extra);
    let api = Api::start_with(db, &vars).await;
    let admin = api
        .register(&format!("admin-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    World {
        api,
        admin,
        fake,
        _twilio: twilio,
    }
}

async fn link(w: &World) {
    let (status, linked) = w
        .api
        .call(
            reqwest::Method::PUT,
            "/api/twilio/authorization",
            Some(&w.admin.token),
            Some(json!({"account_sid": SID, "auth_token": AUTH_TOKEN, "from_number": OUR_NUMBER})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert_eq!(linked["data"]["linked"], true);
    assert_eq!(linked["data"]["from_number"], OUR_NUMBER);
    assert_eq!(
        linked["data"]["webhook_url"],
        format!("{PUBLIC_URL}/api/twilio/webhook")
    );
    assert!(!linked.to_string().contains(AUTH_TOKEN), "{linked}");
}

fn incoming(message_sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", SID),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", CUSTOMER_NUMBER),
        ("MessageSid", message_sid),
        ("NumMedia", "0"),
        ("SmsSid", message_sid),
        ("SmsStatus", "received"),
        ("To", OUR_NUMBER),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// POSTs `params` to `path_and_query`, signed (when `token` is given) for the public URL, as
/// Twilio signs.
async fn post_signed(
    w: &World,
    path_and_query: &str,
    params: &[(String, String)],
    token: Option<&str>,
) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut request = w
        .api
        .http
        .post(format!("{}{path_and_query}", w.api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = token {
        let url = format!("{PUBLIC_URL}{path_and_query}");
        request = request.header(
            "x-twilio-signature",
            netia::channels::twilio::signature::sign(token, &url, params),
        );
    }
    request.send().await.unwrap()
}

async fn messages(w: &World, conversation: &str) -> Vec<Value> {
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}/messages"), &w.admin.token)
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn sms_conversation(w: &World) -> Option<String> {
    let (_, inbox) = w.api.get("/api/conversations?source=sms", &w.admin.token).await;
    inbox["data"][0]["id"].as_str().map(str::to_owned)
}

async fn wait_for<T>(mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if let Some(found) = probe().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn an_sms_becomes_a_conversation_answered_by_sms(db: &TestDb) {
    let w = world(db, &[], vec![]).await;

    // Credentials Twilio refuses are not stored.
    let (status, refused) = w
        .api
        .call(
            reqwest::Method::PUT,
            "/api/twilio/authorization",
            Some(&w.admin.token),
            Some(json!({"account_sid": SID, "auth_token": "0000000000000000ffffffffffffffff", "from_number": OUR_NUMBER})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let (status, malformed) = w
        .api
        .call(
            reqwest::Method::PUT,
            "/api/twilio/authorization",
            Some(&w.admin.token),
            Some(json!({"account_sid": "nope", "auth_token": AUTH_TOKEN, "from_number": OUR_NUMBER})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{malformed}");
    let (_, unlinked) = w.api.get("/api/twilio/authorization", &w.admin.token).await;
    assert_eq!(unlinked["data"]["linked"], false);
    link(&w).await;

    // A signed SMS: a conversation the agent's socket hears of. Twilio retries: one message.
    let body = "Hi, is my bike ready?";
    let listener = common::nodes::spawn_script_joined(
        "sms_inbox.mjs",
        &[
            ("NETIA_URL", w.api.base.as_str()),
            ("AGENT_TOKEN", w.admin.token.as_str()),
            ("ACCOUNT_ID", w.admin.account_id.as_str()),
            ("EXPECTED_BODY", body),
        ],
    )
    .await;
    let sms = incoming("SM11111111111111111111111111111111", body);
    for _ in 0..2 {
        let answer = post_signed(&w, "/api/twilio/webhook", &sms, Some(AUTH_TOKEN)).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/xml")
        );
        assert!(answer.text().await.unwrap().contains("<Response></Response>"));
    }
    listener.await.unwrap();
    let conversation = wait_for(async || sms_conversation(&w).await)
        .await
        .expect("an SMS conversation");
    let listed = messages(&w, &conversation).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["type"].as_str(), listed[0]["body"].as_str()),
        (Some("sms"), Some(body))
    );
    let customer = listed[0]["customer_id"].as_str().unwrap().to_owned();
    let (_, profile) = w.api.get(&format!("/api/customers/{customer}"), &w.admin.token).await;
    assert_eq!(profile["data"]["phone"], CUSTOMER_NUMBER);

    // The same number writes again: the same conversation.
    let again = incoming("SM22222222222222222222222222222222", "Hello?");
    assert_eq!(
        post_signed(&w, "/api/twilio/webhook", &again, Some(AUTH_TOKEN))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(sms_conversation(&w).await.as_deref(), Some(conversation.as_str()));

    // The agent's reply goes out by SMS, with basic auth, to the customer's number.
    let (status, reply) = w
        .api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&w.admin.token),
            json!({"body": "Yes, pick it up any time."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply_id = reply["data"]["id"].as_str().unwrap().to_owned();
    let sent = w.wait_sent(1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["To"], CUSTOMER_NUMBER);
    assert_eq!(sent[0]["From"], OUR_NUMBER);
    assert_eq!(sent[0]["Body"], "Yes, pick it up any time.");
    let callback = &sent[0]["StatusCallback"];
    assert!(
        callback.starts_with(&format!("{PUBLIC_URL}/api/twilio/status?")),
        "{callback}"
    );
    let message_sid = "SM00000000000000000000000000000001";

    // Twilio's status callbacks: delivered is shown; a late "sent" does not take it back.
    let callback_path = callback.strip_prefix(PUBLIC_URL).unwrap();
    for (status, expected) in [("sent", "sent"), ("delivered", "delivered"), ("sent", "delivered")] {
        let params: Vec<(String, String)> = [
            ("AccountSid", SID),
            ("MessageSid", message_sid),
            ("MessageStatus", status),
            ("To", CUSTOMER_NUMBER),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let answer = post_signed(&w, callback_path, &params, Some(AUTH_TOKEN)).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let shown = wait_for(async || {
            let listed = messages(&w, &conversation).await;
            let reply = listed.iter().find(|m| m["id"] == reply_id.as_str())?.clone();
            (reply["delivery_status"] == expected).then_some(reply)
        })
        .await;
        assert!(shown.is_some(), "{status} → {expected}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.sent().len(), 1, "sent once");
}

async fn forged_requests_store_nothing(db: &TestDb) {
    let w = world(db, &[], vec![]).await;
    link(&w).await;
    let sms = incoming("SM33333333333333333333333333333333", "forged");
    let forged = post_signed(
        &w,
        "/api/twilio/webhook",
        &sms,
        Some("0000000000000000ffffffffffffffff"),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let unsigned = post_signed(&w, "/api/twilio/webhook", &sms, None).await;
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    // Signed for one body, sent with another.
    let url = format!("{PUBLIC_URL}/api/twilio/webhook");
    let signature = netia::channels::twilio::signature::sign(AUTH_TOKEN, &url, &sms);
    let tampered = incoming("SM33333333333333333333333333333333", "tampered");
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&tampered)
        .finish();
    let answer = w
        .api
        .http
        .post(format!("{}/api/twilio/webhook", w.api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // Another number than the linked one.
    let mut elsewhere = incoming("SM44444444444444444444444444444444", "elsewhere");
    elsewhere.retain(|(k, _)| k != "To");
    elsewhere.push(("To".into(), "+15005550009".into()));
    let answer = post_signed(&w, "/api/twilio/webhook", &elsewhere, Some(AUTH_TOKEN)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // Garbage where Twilio's ids go (a NUL byte PostgreSQL would refuse): refused, not a 500.
    let garbage: Vec<(String, String)> = vec![
        ("AccountSid".into(), "\u{0}AC".into()),
        ("To".into(), "\u{104aa}".into()),
        ("From".into(), "a".into()),
        ("MessageSid".into(), "x".into()),
    ];
    let answer = post_signed(&w, "/api/twilio/webhook", &garbage, Some(AUTH_TOKEN)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let stored = db
        .count("SELECT count(*) FROM events WHERE event_type IN ('SmsMessageReceived', 'ConversationCreated')")
        .await;
    assert_eq!(stored, 0, "nothing stored");
    assert_eq!(sms_conversation(&w).await, None);
}

async fn failed_sends_are_retried_then_parked(db: &TestDb) {
    // The first send is rate-limited (429): retried, sent once.
    let limited = Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(twilio_error(429, 20429, "Too Many Requests"))
        .up_to_n_times(1)
        .with_priority(1);
    let w = world(
        db,
        &[("BUS_MAX_ATTEMPTS", "3"), ("BUS_RETRY_BASE_MS", "50")],
        vec![limited],
    )
    .await;
    link(&w).await;
    let sms = incoming("SM55555555555555555555555555555555", "Anyone there?");
    assert_eq!(
        post_signed(&w, "/api/twilio/webhook", &sms, Some(AUTH_TOKEN))
            .await
            .status(),
        StatusCode::OK
    );
    let conversation = wait_for(async || sms_conversation(&w).await).await.unwrap();
    let reply = |text: &'static str| {
        let (api, token, conversation) = (&w.api, w.admin.token.clone(), conversation.clone());
        async move {
            let (status, _) = api
                .post(
                    &format!("/api/conversations/{conversation}/messages"),
                    Some(&token),
                    json!({ "body": text }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
    };
    reply("Yes, here.").await;
    assert_eq!(w.wait_sent(1).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.sent().len(), 1, "sent once after the 429");

    // Twilio answers 500 to every attempt: parked, recorded as SmsSendFailed.
    w._twilio
        .register(
            Mock::given(method("POST"))
                .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
                .respond_with(twilio_error(500, 20500, "Internal Server Error"))
                .with_priority(1),
        )
        .await;
    reply("Still there?").await;
    let failed = wait_for(async || {
        let n = db
            .count("SELECT count(*) FROM events WHERE event_type = 'SmsSendFailed'")
            .await;
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(failed, Some(1), "the failure is recorded once");
    assert_eq!(w.sent().len(), 1, "nothing more was sent");

    // The auth token appears in no answer and no event.
    let (_, status) = w.api.get("/api/twilio/authorization", &w.admin.token).await;
    assert!(!status.to_string().contains(AUTH_TOKEN));
    let leaked = common::all_events(&*db.store)
        .await
        .iter()
        .any(|e| e.payload.to_string().contains(AUTH_TOKEN) || e.metadata.to_string().contains(AUTH_TOKEN));
    assert!(!leaked, "the auth token is in the log");
    // Nor in the server's log, at its most verbose.
    common::logs::assert_none_of(&[AUTH_TOKEN, &w.admin.token]);
}

/// The id earlier versions derived for a sender: a UUIDv8 of SHA-256(account, kind, key), which
/// anyone who guesses the number can recompute.
fn unkeyed_id(account: &str, kind: &str, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(account)
        .chain_update([0])
        .chain_update(kind)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// A sender whose customer an earlier version created under the unkeyed id keeps that customer
/// and conversation.
async fn a_sender_of_an_earlier_version_keeps_their_customer(db: &TestDb) {
    use netia_commands::{Customer, CustomerCommand};
    use netia_events::customer::CustomerIdentity;
    let w = world(db, &[], vec![]).await;
    link(&w).await;
    let legacy = unkeyed_id(&w.admin.account_id, "sms-customer", CUSTOMER_NUMBER);
    let legacy_conversation = unkeyed_id(&w.admin.account_id, "sms-conversation", CUSTOMER_NUMBER);
    let customer: netia_events::CustomerId = legacy.parse().unwrap();
    let create = CustomerCommand::Create {
        customer_id: customer,
        account_id: w.admin.account_id.parse().unwrap(),
        identity: CustomerIdentity {
            phone: Some(CUSTOMER_NUMBER.to_owned()),
            ..Default::default()
        },
        metadata: serde_json::Map::new(),
        verified: false,
    };
    netia::command_bus::CommandBus::new(db.store.clone())
        .execute::<Customer>(customer, create, &netia_events::Metadata::system("test"))
        .await
        .unwrap();
    let sms = post_signed(
        &w,
        "/api/twilio/webhook",
        &incoming("SM66666666666666666666666666666666", "from before the upgrade"),
        Some(AUTH_TOKEN),
    )
    .await;
    assert!(sms.status().is_success(), "{}", sms.status());
    let conversation = wait_for(async || sms_conversation(&w).await)
        .await
        .expect("an SMS conversation");
    assert_eq!(conversation, legacy_conversation);
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}"), &w.admin.token)
        .await;
    assert_eq!(body["data"]["customer_id"], legacy);
}

/// An erased SMS customer's number writing again starts a new customer and conversation (their
/// customer id is derived from the number; the erased one stays erased), and the erased
/// conversation's number and text are gone from every answer.
async fn an_erased_sms_sender_who_writes_again_is_a_new_customer(db: &TestDb) {
    let w = world(db, &[], vec![]).await;
    link(&w).await;
    let first = post_signed(
        &w,
        "/api/twilio/webhook",
        &incoming("SM44444444444444444444444444444444", "first-sms-text"),
        Some(AUTH_TOKEN),
    )
    .await;
    assert!(first.status().is_success(), "{}", first.status());
    let conversation = wait_for(async || sms_conversation(&w).await)
        .await
        .expect("an SMS conversation");
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}"), &w.admin.token)
        .await;
    let customer = body["data"]["customer_id"].as_str().unwrap().to_owned();
    // Derived under the deployment's key: the number alone does not give the id.
    assert_ne!(
        customer,
        unkeyed_id(&w.admin.account_id, "sms-customer", CUSTOMER_NUMBER)
    );
    let (status, erased) = w
        .api
        .post(
            &format!("/api/customers/{customer}/erase"),
            Some(&w.admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let gone = messages(&w, &conversation).await;
    assert!(gone.iter().all(|m| m["body"] == "[erased]"), "{gone:?}");
    assert!(!json!(gone).to_string().contains(CUSTOMER_NUMBER));

    let again = post_signed(
        &w,
        "/api/twilio/webhook",
        &incoming("SM55555555555555555555555555555555", "second-sms-text"),
        Some(AUTH_TOKEN),
    )
    .await;
    assert!(again.status().is_success(), "{}", again.status());
    let (new_conversation, new_customer) = wait_for(async || {
        let (_, inbox) = w.api.get("/api/conversations?source=sms", &w.admin.token).await;
        inbox["data"].as_array().unwrap().iter().find_map(|c| {
            (c["last_message"]["preview"] == "second-sms-text").then(|| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["customer_id"].as_str().unwrap().to_owned(),
                )
            })
        })
    })
    .await
    .expect("the second SMS in a conversation of its own");
    assert_ne!(new_conversation, conversation);
    assert_ne!(new_customer, customer);
    let (_, profile) = w
        .api
        .get(&format!("/api/customers/{new_customer}"), &w.admin.token)
        .await;
    assert_eq!(profile["data"]["phone"], CUSTOMER_NUMBER);
}

on_both_backends!(
    a_sender_of_an_earlier_version_keeps_their_customer,
    an_erased_sms_sender_who_writes_again_is_a_new_customer,
    an_sms_becomes_a_conversation_answered_by_sms,
    forged_requests_store_nothing,
    failed_sends_are_retried_then_parked
);
