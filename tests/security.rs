//! Security at the edges, tried as an attacker would, over real HTTP and sockets on PostgreSQL:
//! rate limits that a made-up agent token does not skip, logins that a flood cannot turn into a
//! memory blow-up or a password-guessing run, and sockets that follow revocation on every node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use common::nodes::{free_port, run_script, serve_with};
use serde_json::json;

fn node(port: u16) -> Api {
    Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    }
}

/// 1,000 widget calls carrying a made-up agent token are limited like anonymous ones; a real
/// agent token is not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_made_up_agent_token_does_not_skip_the_rate_limit() {
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start_with(&db, &[("RATE_LIMIT_IP_PER_MINUTE", "100")]).await;
    let admin = api.register("owner@example.com").await;
    let (mut created, mut limited, mut other) = (0, 0, Vec::new());
    for _ in 0..1000 {
        let response = api
            .http
            .post(format!("{}/api/customers", api.base))
            .bearer_auth("nts_x")
            .json(&json!({"account_id": admin.account_id, "name": "Mallory"}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => created += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                limited += 1;
            }
            status => other.push(status),
        }
    }
    assert!(other.is_empty(), "only 201 or 429: {other:?}");
    assert!(
        limited >= 850,
        "past the allowance every request is refused: {created} created, {limited} refused"
    );
    assert!(created <= 110, "about one minute's allowance: {created}");
    // A real session is not counted against the address.
    for _ in 0..150 {
        let (status, _) = api.get("/api/conversations", &admin.token).await;
        assert_eq!(status, 200);
    }
    db.cleanup().await;
}

/// Peak resident memory of process `pid`, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// 200 wrong logins at once: every answer is 401 or 429, and after ten attempts the address is
/// locked out — the right password included — whatever client address the guesses come from; 200
/// more to 200 addresses are all checked, and the server's memory stays bounded (argon2 runs one
/// per core, the rest queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_login_flood_is_refused_within_bounded_memory() {
    let Some(db) = TestDb::postgres().await else { return };
    let port = free_port();
    let mut server = serve_with(&db, port, &[("RATE_LIMIT_IP_PER_MINUTE", "1000")]).await;
    let api = node(port);
    api.register("owner@example.com").await;
    let pid = server.id().unwrap();
    let client = reqwest::Client::new();
    let guesses = (0..200).map(|i| {
        let (client, url) = (client.clone(), format!("{}/api/session", api.base));
        async move {
            client
                .post(url)
                .json(&json!({"email": "owner@example.com", "password": format!("wrong-guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let (refused, limited) = (
        statuses.iter().filter(|s| **s == 401).count(),
        statuses.iter().filter(|s| **s == 429).count(),
    );
    assert_eq!(refused + limited, 200, "only 401 or 429: {statuses:?}");
    assert!(
        limited > 0,
        "the address was locked out: {refused} refused, {limited} locked"
    );
    // 200 at once to 200 addresses: each is checked (argon2, ~19 MiB a run), one per core at a time.
    let spread = (0..200).map(|i| {
        let (client, url) = (client.clone(), format!("{}/api/session", api.base));
        async move {
            client
                .post(url)
                .json(&json!({"email": format!("someone-{i}@example.com"), "password": "wrong-guess"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let spread = futures_util::future::join_all(spread).await;
    assert!(spread.iter().all(|s| *s == 401), "{spread:?}");
    let peak = peak_rss_mib(pid);
    eprintln!(
        "200 concurrent wrong logins to one address: {refused} × 401, {limited} × 429; 200 more to 200 addresses: all 401; peak RSS {peak} MiB"
    );
    assert!(peak < 300, "peak RSS {peak} MiB");
    let (status, body) = api
        .post(
            "/api/session",
            None,
            json!({"email": "owner@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 429, "locked out, even with the right password: {body}");
    let _ = server.kill().await;
    db.cleanup().await;
}

/// Disabling, demoting, signing out, deleting and erasing a customer reach open sockets on both nodes
/// within a second; a customer in the account's room learns availability, never agents' ids
/// (`tests/js/revocation.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_sockets_follow_revocation_on_every_node() {
    let Some(db) = TestDb::postgres().await else { return };
    let amqp = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let (port_a, port_b) = (free_port(), free_port());
    let _a = serve_with(&db, port_a, &[("AMQP_URL", &amqp)]).await;
    let _b = serve_with(&db, port_b, &[("AMQP_URL", &amqp)]).await;
    let api = node(port_a);
    let admin = api.register("owner@example.com").await;
    let mut agents = Vec::new();
    for email in ["member@example.com", "viewer@example.com", "leaver@example.com"] {
        let invitation = api.invite(&admin, email, "member").await;
        agents.push(api.accept(email, &invitation, "Agent").await);
    }
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let (_, theirs) = api.get("/api/conversations/customer", &customer).await;
    let customer_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();
    let (erased_conversation, erased) = api.conversation(&admin.account_id).await;
    let (_, theirs) = api.get("/api/conversations/customer", &erased).await;
    let erased_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();
    let node_b = format!("http://127.0.0.1:{port_b}");
    run_script(
        "revocation.mjs",
        &[
            ("NODE_A", &api.base),
            ("NODE_B", &node_b),
            ("ACCOUNT_ID", &admin.account_id),
            ("ADMIN_TOKEN", &admin.token),
            ("ADMIN_ID", &admin.user_id),
            ("MEMBER_TOKEN", &agents[0].token),
            ("MEMBER_ID", &agents[0].user_id),
            ("VIEWER_TOKEN", &agents[1].token),
            ("VIEWER_ID", &agents[1].user_id),
            ("LEAVER_TOKEN", &agents[2].token),
            ("CUSTOMER_TOKEN", &customer),
            ("CUSTOMER_ID", &customer_id),
            ("CONVERSATION_ID", &conversation),
            ("ERASED_CUSTOMER_TOKEN", &erased),
            ("ERASED_CUSTOMER_ID", &erased_id),
            ("ERASED_CONVERSATION_ID", &erased_conversation),
        ],
    )
    .await;
    db.cleanup().await;
}

/// Socket upgrades are limited per address (429 before the handshake), and a socket that floods
/// frames gets an error reply, then a 1008 close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_socket_upgrades_and_frames_are_limited() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Error, Message};
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start_with(
        &db,
        &[
            ("RATE_LIMIT_SOCKETS_PER_MINUTE", "5"),
            ("RATE_LIMIT_FRAMES_PER_SECOND", "10"),
        ],
    )
    .await;
    let admin = api.register("owner@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let url = format!(
        "{}/socket/websocket?vsn=2.0.0&token={customer}",
        api.base.replace("http://", "ws://")
    );
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("within the allowance")
                .0,
        );
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
            assert!(
                retry_after
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|s| (1..=60).contains(&s)),
                "a 429 says when to retry: {retry_after:?}"
            );
        }
        other => panic!("the sixth upgrade in a minute is refused: {other:?}"),
    }

    let socket = &mut open[0];
    let topic = format!("conversation:{conversation}");
    for n in 0..40 {
        let frame = format!(r#"["1","{n}","{topic}","phx_join",{{}}]"#);
        if socket.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    let (mut refused, mut closed) = (None, None);
    while let Ok(Some(message)) = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await {
        match message {
            Ok(Message::Text(text)) if text.contains("too many frames") => refused = Some(text.to_string()),
            Ok(Message::Close(frame)) => {
                closed = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let refused = refused.expect("the frame over the limit gets an error reply");
    assert!(refused.contains(r#""status":"error""#), "{refused}");
    assert_eq!(closed, Some(1008), "then the socket is closed (policy)");
    db.cleanup().await;
}

/// The presence events of `customer_id`, in order.
async fn presence_events(db: &TestDb, customer_id: &str) -> Vec<String> {
    let stream = netia_events::StreamRef::new("customer", customer_id);
    db.store
        .read_stream(&stream, netia::store::StreamBound::All)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t == "CustomerCameOnline" || t == "CustomerWentOffline")
        .collect()
}

/// A page reloaded within the grace period writes no presence event; leaving for good writes
/// one, after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_reload_within_the_grace_period_writes_no_presence_event() {
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start(&db).await;
    let admin = api.register("owner@example.com").await;
    let (customer_id, token) = api.customer(&admin.account_id).await;
    let url = format!(
        "{}/socket/websocket?vsn=2.0.0&token={token}",
        api.base.replace("http://", "ws://")
    );
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = presence_events(&db, &customer_id).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["CustomerCameOnline"]);
    // Ten reloads, each back within half a second.
    let mut socket = Some(socket);
    for _ in 0..10 {
        drop(socket.take());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        socket = Some(tokio_tungstenite::connect_async(url.as_str()).await.unwrap().0);
    }
    tokio::time::sleep(netia::realtime::PRESENCE_GRACE + std::time::Duration::from_secs(1)).await;
    assert_eq!(
        presence_events(&db, &customer_id).await,
        ["CustomerCameOnline"],
        "reloads write nothing"
    );
    drop(socket);
    let left = std::time::Instant::now();
    for _ in 0..200 {
        seen = presence_events(&db, &customer_id).await;
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["CustomerCameOnline", "CustomerWentOffline"]);
    assert!(left.elapsed() >= netia::realtime::PRESENCE_GRACE - std::time::Duration::from_millis(500));
    db.cleanup().await;
}

/// Identity verification: the admin issues a secret and requires verification; a forged
/// `user_hash` is refused, as are an external id or email without one; a valid one makes a
/// verified customer (the API and the event say so), brings the same customer back next time,
/// and is the only way `identify` finds a customer. A rotated secret refuses the old hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_forged_user_hash_is_refused_when_verification_is_required() {
    use netia::app::verification::user_hash;
    use reqwest::Method;
    let Some(db) = TestDb::postgres().await else { return };
    let api = Api::start_with(&db, &[]).await;
    let admin = api.register("owner@example.com").await;
    let account = admin.account_id.clone();
    // Settings: no secret yet, so verification cannot be required; members may not read it.
    let (status, body) = api.get("/api/identity_verification", &admin.token).await;
    assert_eq!(
        (status.as_u16(), &body["data"]["secret"]),
        (200, &json!(null)),
        "{body}"
    );
    let require = |on: bool| {
        api.call(
            Method::PUT,
            "/api/identity_verification",
            Some(&admin.token),
            Some(json!({"require_identity_verification": on})),
        )
    };
    let (status, body) = require(true).await;
    assert_eq!(status, 422, "{body}");
    let invitation = api.invite(&admin, "member@example.com", "member").await;
    let (_, member) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "member@example.com", "password": "correct horse battery", "invitation_token": invitation}),
        )
        .await;
    let member_token = member["data"]["token"].as_str().unwrap_or_default().to_owned();
    let (status, _) = api.get("/api/identity_verification", &member_token).await;
    assert_eq!(status, 403);
    let (status, body) = api
        .post("/api/identity_verification/secret", Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    let (status, body) = require(true).await;
    assert_eq!(
        (status.as_u16(), &body["data"]["require_identity_verification"]),
        (200, &json!(true)),
        "{body}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE payload::text LIKE '%{secret}%'"
        ))
        .await,
        0,
        "the secret is sealed in the log"
    );

    let customer = |identity: serde_json::Value| {
        let mut body = json!({"account_id": account});
        body.as_object_mut()
            .unwrap()
            .extend(identity.as_object().unwrap().clone());
        api.post("/api/customers", None, body)
    };
    let forged = user_hash("not-the-secret", "user-1");
    for claim in [
        json!({"external_id": "user-1", "email": "billing@yourcustomer.example", "user_hash": forged}),
        json!({"external_id": "user-1", "email": "billing@yourcustomer.example"}),
        json!({"email": "billing@yourcustomer.example"}),
        json!({"external_id": "user-2", "user_hash": user_hash(&secret, "user-1")}),
        json!({"user_hash": user_hash(&secret, "user-1")}),
    ] {
        let (status, body) = customer(claim.clone()).await;
        assert_eq!(status, 422, "{claim} → {body}");
        assert_eq!(body["error"], "invalid");
    }
    let (status, body) = customer(json!({"name": "Anonymous visitor"})).await;
    assert_eq!(
        (status.as_u16(), &body["data"]["verified"]),
        (201, &json!(false)),
        "{body}"
    );

    let good = user_hash(&secret, "user-1");
    let (status, body) =
        customer(json!({"external_id": "user-1", "email": "ada@example.com", "user_hash": good})).await;
    assert_eq!(
        (status.as_u16(), &body["data"]["verified"]),
        (201, &json!(true)),
        "{body}"
    );
    let ada = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = api.get(&format!("/api/customers/{ada}"), &admin.token).await;
    assert_eq!(
        (status.as_u16(), &body["data"]["verified"]),
        (200, &json!(true)),
        "{body}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM events WHERE stream_id = '{ada}' AND event_type = 'CustomerCreated' \
             AND (payload->>'verified')::boolean"
        ))
        .await,
        1,
        "the event says so"
    );
    // The same person again (another browser): the same customer, with a new token.
    let (status, body) = customer(json!({"external_id": "user-1", "user_hash": good.to_uppercase()})).await;
    assert_eq!(
        (status.as_u16(), body["data"]["id"].as_str()),
        (200, Some(ada.as_str())),
        "{body}"
    );
    // identify: a hash is needed, and only a verified customer is found.
    let identify = |external_id: &str, hash: Option<String>| {
        let mut path = format!("/api/customers/identify?account_id={account}&external_id={external_id}");
        if let Some(hash) = hash {
            path.push_str(&format!("&user_hash={hash}"));
        }
        let api = &api;
        async move { api.call(Method::GET, &path, None, None).await }
    };
    assert_eq!(identify("user-1", None).await.0, 422);
    assert_eq!(identify("user-1", Some(forged.clone())).await.0, 422);
    let (status, body) = identify("user-1", Some(good.clone())).await;
    assert_eq!(
        (status.as_u16(), body["data"]["customer_id"].as_str()),
        (200, Some(ada.as_str()))
    );

    // A customer who claimed an id while verification was off is not found by it once required.
    require(false).await;
    let (status, _) = customer(json!({"external_id": "squatter"})).await;
    assert_eq!(status, 201);
    require(true).await;
    let (status, body) = identify("squatter", Some(user_hash(&secret, "squatter"))).await;
    assert_eq!((status.as_u16(), &body["data"]), (200, &json!(null)), "{body}");
    // Nor does a valid hash sign in to it: the squatter's token would still work there.
    let (status, body) =
        customer(json!({"external_id": "squatter", "user_hash": user_hash(&secret, "squatter")})).await;
    assert_eq!(status, 409, "{body}");
    // An id with spaces around it cannot pass for the trimmed one.
    let (status, body) = customer(json!({"external_id": " user-1", "user_hash": user_hash(&secret, " user-1")})).await;
    assert_eq!(status, 422, "{body}");

    // After a rotation the old hashes are refused.
    let (status, _) = api
        .post("/api/identity_verification/secret", Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = customer(json!({"external_id": "user-1", "user_hash": good})).await;
    assert_eq!(status, 422, "{body}");
    db.cleanup().await;
}

/// A session's socket closes when the session expires, heartbeats notwithstanding
/// (`tests/js/expiry.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_socket_closes_when_its_session_expires() {
    let Some(db) = TestDb::postgres().await else { return };
    let port = free_port();
    let _node = serve_with(&db, port, &[("SESSION_TTL_SECONDS", "3")]).await;
    let api = node(port);
    let (status, body) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "owner@example.com", "password": "correct horse battery", "account_name": "Acme"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let admin = common::api::session(&body);
    let expires_at = body["data"]["expires_at"].as_str().unwrap().to_owned();
    run_script(
        "expiry.mjs",
        &[
            ("NODE_URL", &api.base),
            ("ACCOUNT_ID", &admin.account_id),
            ("AGENT_TOKEN", &admin.token),
            ("EXPIRES_AT", &expires_at),
        ],
    )
    .await;
    db.cleanup().await;
}

/// One person whose connection flaps (60 changes in about a second and a half) writes at most ten
/// presence events a minute; when the node's recorder stops, the last state is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_flapping_person_writes_at_most_ten_presence_events_a_minute() {
    use netia::command_bus::CommandBus;
    use netia::realtime::hub::Person;
    use netia_commands::{Customer, CustomerCommand};
    use netia_events::{AccountId, Actor, CustomerId, Metadata, StreamRef};
    use std::time::Duration;
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let bus = CommandBus::new(db.store.clone());
    let customer = CustomerId::new();
    let create = CustomerCommand::Create {
        customer_id: customer,
        account_id: AccountId::new(),
        identity: Default::default(),
        metadata: Default::default(),
        verified: false,
    };
    let meta = Metadata::new(Actor::Customer { customer_id: customer });
    bus.execute::<Customer>(customer, create, &meta).await.unwrap();
    let (changes, received) = tokio::sync::mpsc::unbounded_channel();
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(received));
    let grace = Duration::from_millis(20);
    let recorder = tokio::spawn(netia::realtime::record_presence_with(bus.clone(), received, grace));
    for _ in 0..30 {
        changes.send((Person::Customer(customer), true)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        changes.send((Person::Customer(customer), false)).unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let presence = || async {
        let stream = StreamRef::new("customer", customer.to_string());
        let events = db
            .store
            .read_stream(&stream, netia::store::StreamBound::All)
            .await
            .unwrap();
        events
            .into_iter()
            .map(|e| e.event_type)
            .filter(|t| t.starts_with("CustomerCame") || t.starts_with("CustomerWent"))
            .collect::<Vec<_>>()
    };
    let written = presence().await;
    assert!(
        (2..=10).contains(&written.len()),
        "{} presence events: {written:?}",
        written.len()
    );
    drop(changes);
    recorder.await.unwrap();
    let written = presence().await;
    assert_eq!(
        written.last().map(String::as_str),
        Some("CustomerWentOffline"),
        "{written:?}"
    );
    db.cleanup().await;
}
