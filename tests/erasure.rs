//! Erasing a customer (GDPR art. 17) by crypto-shredding (ADR 0023), against the real server on
//! both databases: a customer with an email address, a phone number, metadata, chat messages, an
//! agent's reply, an attachment and an email they sent in. After `POST /api/customers/:id/erase`
//! a dump of the whole database (`pg_dump --data-only`; SQLite's `VACUUM INTO`) holds none of
//! their strings while another customer's are still there; `netia audit verify` passes; the
//! conversation's replay shows `[erased]`; a rebuild of every read model equals the live ones; the
//! same sender writing again starts a new customer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, Session, customer_says};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DOMAIN: &str = "in.erasure.example";

/// Every string of the erased customer's that the database held.
const SECRETS: &[&str] = &[
    "Zelda Quartermain",
    "zelda.q@customer.example",
    "+15550001234",
    "ultramarine-zebra",
    "pineapple-42-plan",
    "mango-77-answer",
    "kiwi-99-subject",
    "papaya-55-email-body",
    "zelda-notes.txt",
];
/// The other customer's message, which must survive.
const KEPT: &str = "untouched-lemon-13";

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn messages(api: &Api, admin: &Session, conversation: &str) -> Vec<Value> {
    let (_, body) = api
        .get(&format!("/api/conversations/{conversation}/messages"), &admin.token)
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

/// The read models as the API shows them: customers, the inbox, every conversation's messages.
async fn read_models(api: &Api, admin: &Session) -> Value {
    let (_, customers) = api.get("/api/customers?limit=200", &admin.token).await;
    let (_, inbox) = api
        .get("/api/conversations?limit=200&archived=true", &admin.token)
        .await;
    let mut all = Vec::new();
    for conversation in inbox["data"].as_array().unwrap() {
        let id = conversation["id"].as_str().unwrap();
        all.push(json!({"id": id, "messages": messages(api, admin, id).await}));
    }
    json!({"customers": customers["data"], "inbox": inbox["data"], "messages": all})
}

/// Everything the database holds now, as text: `pg_dump --data-only`, or SQLite's live pages.
fn dump(db: &TestDb) -> String {
    if db.url.starts_with("postgres") {
        let out = std::process::Command::new("pg_dump")
            .args(["--data-only", &db.url])
            .output()
            .expect("pg_dump runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        let path = db.url.trim_start_matches("sqlite://");
        let copy = format!("{path}.dump-{}", uuid::Uuid::now_v7().simple());
        let out = std::process::Command::new("sqlite3")
            .args([path, &format!("VACUUM INTO '{copy}'")])
            .output()
            .expect("sqlite3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&copy).unwrap();
        std::fs::remove_file(&copy).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn an_erased_customer_is_gone_from_the_whole_database(db: &TestDb) {
    let api = Api::start_with(db, &[("INBOUND_EMAIL_DOMAIN", DOMAIN)]).await;
    let admin = api
        .register(&format!("admin-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    let account = admin.account_id.clone();
    let (status, body) = api
        .post(
            "/api/customers",
            None,
            json!({"account_id": account, "name": "Zelda Quartermain", "email": "zelda.q@customer.example",
                   "phone": "+15550001234", "metadata": {"favorite": "ultramarine-zebra"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let zelda = body["data"]["id"].as_str().unwrap().to_owned();
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            "/api/conversations",
            Some(&token),
            json!({"account_id": account, "customer_id": zelda}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let chat = body["data"]["id"].as_str().unwrap().to_owned();
    customer_says(&api, &admin, &db.store, &chat, "my pineapple-42-plan").await;
    let (status, body) = api
        .post(
            &format!("/api/conversations/{chat}/messages"),
            Some(&admin.token),
            json!({"body": "the mango-77-answer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let upload = api
        .http
        .post(format!(
            "{}/api/conversations/{chat}/attachments?file_name=zelda-notes.txt",
            api.base
        ))
        .bearer_auth(&token)
        .body("guava-31-file contents")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let uploaded: Value = upload.json().await.unwrap();
    let file_url = uploaded["data"]["attachments"][0]["url"].as_str().unwrap().to_owned();

    // She writes in by email too (the original is kept beside the log).
    let (_, inbound) = api.get("/api/email/inbound", &admin.token).await;
    let address = inbound["data"]["address"].as_str().unwrap().to_owned();
    let webhook = inbound["data"]["webhook_path"].as_str().unwrap().to_owned();
    let email = lettre::Message::builder()
        .from("Zelda Quartermain <zelda.q@customer.example>".parse().unwrap())
        .to(address.parse().unwrap())
        .subject("kiwi-99-subject")
        .message_id(Some("<zelda-1@customer.example>".to_owned()))
        .body("papaya-55-email-body".to_owned())
        .unwrap()
        .formatted();
    let answer = api
        .http
        .post(format!("{}{webhook}", api.base))
        .header("content-type", "message/rfc822")
        .body(email)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());

    // Another customer, who stays.
    let (other_chat, _) = api.conversation(&account).await;
    customer_says(&api, &admin, &db.store, &other_chat, KEPT).await;
    until("every message in the read models", async || {
        let text = read_models(&api, &admin).await.to_string();
        (text.contains(KEPT)
            && text.contains("papaya-55")
            && text.contains("zelda-notes.txt")
            && text.contains("mango-77"))
        .then_some(())
    })
    .await;
    let before = dump(db);
    for secret in SECRETS {
        assert!(before.contains(secret), "{secret} is in the database before");
    }

    let (status, erased) = api
        .post(&format!("/api/customers/{zelda}/erase"), Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["data"]["newly_erased"], true);
    assert_eq!(erased["data"]["conversations"], 2, "{erased}");
    assert!(erased["data"]["files_deleted"].as_u64().unwrap() >= 1, "{erased}");
    assert_eq!(erased["data"]["email_originals_deleted"], 1, "{erased}");

    let after = dump(db);
    for secret in SECRETS {
        assert!(
            !after.contains(secret),
            "{secret} is still in the database after the erasure"
        );
    }
    assert!(after.contains(KEPT), "the other customer's message is kept");

    // The API: gone, or [erased]; her file is gone; her token is revoked.
    let (status, _) = api.get(&format!("/api/customers/{zelda}"), &admin.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let chat_messages = messages(&api, &admin, &chat).await;
    assert_eq!(chat_messages.len(), 3, "{chat_messages:?}");
    assert!(
        chat_messages
            .iter()
            .all(|m| m["body"] == "[erased]" && m["attachments"] == json!([]))
    );
    let file = api
        .http
        .get(format!("{}{file_url}", api.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), StatusCode::NOT_FOUND);
    let (status, _) = api.get(&format!("/api/conversations/{chat}/messages"), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing more is recorded about her: an agent's reply, which could never be read, is refused
    // — a retry too — and nothing is stored (it was answered 201 as "[erased]", then 503 for ever).
    // Her conversation can still be closed.
    for _ in 0..2 {
        let (status, refused) = api
            .post(
                &format!("/api/conversations/{chat}/messages"),
                Some(&admin.token),
                json!({"body": "Your refund was processed", "client_message_id": "after-erasure"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused["message"].as_str().unwrap().contains("erased"), "{refused}");
    }
    assert_eq!(messages(&api, &admin, &chat).await.len(), 3);
    let (status, closed) = api
        .patch(
            &format!("/api/conversations/{chat}"),
            &admin.token,
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    // Again: nothing more to erase, answered the same way.
    let (status, again) = api
        .post(&format!("/api/customers/{zelda}/erase"), Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["newly_erased"], false);
    assert_eq!(again["data"]["erased_at"], erased["data"]["erased_at"]);

    // The chain still verifies: it covers the ciphertext, which did not change.
    let verified = db.netia(&["audit", "verify"]);
    assert!(verified.contains(" 0 broken"), "{verified}");
    // Replay shows what is left.
    let replay = db.netia(&["replay", "conversation", &chat]);
    assert!(replay.contains("[erased]"), "{replay}");
    assert!(!SECRETS.iter().any(|s| replay.contains(s)), "{replay}");

    // A rebuild from the log gives the read models the erasure left.
    let live = read_models(&api, &admin).await;
    db.netia(&["projections", "rebuild"]);
    let rebuilt = read_models(&api, &admin).await;
    assert_eq!(rebuilt, live, "rebuilt read models equal the live ones");

    // She writes again: a new customer, not the erased one.
    let email = lettre::Message::builder()
        .from("zelda.q@customer.example".parse().unwrap())
        .to(address.parse().unwrap())
        .subject("back again")
        .message_id(Some("<zelda-2@customer.example>".to_owned()))
        .body("hello again".to_owned())
        .unwrap()
        .formatted();
    let answer = api
        .http
        .post(format!("{}{webhook}", api.base))
        .header("content-type", "message/rfc822")
        .body(email)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let newcomer = until("the new email's customer", async || {
        let (_, inbox) = api.get("/api/conversations?limit=200", &admin.token).await;
        inbox["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["last_message"]["preview"] == "hello again")
            .map(|c| c["customer_id"].as_str().unwrap().to_owned())
    })
    .await;
    assert_ne!(newcomer, zelda);
}

async fn erasure_is_for_admins_of_the_account(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api
        .register(&format!("admin-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    let stranger = api
        .register(&format!("other-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    let (customer, token) = api.customer(&admin.account_id).await;
    let path = format!("/api/customers/{customer}/erase");
    let (status, _) = api.post(&path, Some(&stranger.token), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's admin");
    let (status, _) = api.post(&path, Some(&token), json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the customer's own token: good, but not an agent's"
    );
    let (status, _) = api.post(&path, None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let member = api.invite(&admin, "member@example.com", "member").await;
    let member = api.accept("member@example.com", &member, "Member").await;
    let (status, _) = api.post(&path, Some(&member.token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members cannot erase");
    let made_up = uuid::Uuid::now_v7();
    let (status, _) = api
        .post(
            &format!("/api/customers/{made_up}/erase"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .post("/api/customers/not-a-uuid/erase", Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A deleted customer can still be erased.
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/customers/{customer}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.post(&path, Some(&admin.token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["newly_erased"], true);
}

/// Events written before sealing (in the clear) are sealed in place by `netia gdpr seal-existing`:
/// the chain still verifies (and against the anchors written around the rewrite), reads give the
/// same values, and the customer can then be erased from the command line.
async fn existing_plaintext_is_sealed_in_place_then_erasable(db: &TestDb) {
    use netia_commands::{Conversation, Customer, CustomerCommand};
    use netia_events::customer::CustomerIdentity;
    use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata};
    // As an older Netia wrote them: no sealing at all.
    let plain = netia::store::connect(&db.url, 8).await.unwrap();
    let bus = netia::command_bus::CommandBus::new(plain);
    let (account, customer, conversation) = (AccountId::new(), CustomerId::new(), ConversationId::new());
    let meta = Metadata::new(Actor::Customer { customer_id: customer });
    let create = CustomerCommand::Create {
        customer_id: customer,
        account_id: account,
        identity: CustomerIdentity {
            email: Some("legacy.person@plain.example".into()),
            ..Default::default()
        },
        metadata: serde_json::Map::new(),
        verified: false,
    };
    bus.execute::<Customer>(customer, create, &meta).await.unwrap();
    let open = common::open_conversation(conversation, account, customer, chrono::Utc::now());
    bus.execute::<Conversation>(conversation, open, &meta).await.unwrap();
    let said = common::message(
        netia_events::conversation::Author::Customer { customer_id: customer },
        "legacy-plaintext-body",
        false,
        None,
        chrono::Utc::now(),
    );
    bus.execute::<Conversation>(conversation, said, &meta).await.unwrap();
    // Plain text that only looks sealed is sealed like any other.
    let lookalike = format!("sealed:v1:{customer}:AAAAAAAAAAAAAAAAAAAAAAAA");
    let said = common::message(
        netia_events::conversation::Author::Customer { customer_id: customer },
        &lookalike,
        false,
        None,
        chrono::Utc::now(),
    );
    bus.execute::<Conversation>(conversation, said, &meta).await.unwrap();
    let in_clear = "SELECT count(*) FROM events WHERE CAST(payload AS TEXT) LIKE '%legacy%'";
    assert_eq!(db.count(in_clear).await, 2);

    // Erasing now would leave that text behind: refused, naming the way out.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .args(["gdpr", "erase", &customer.to_string()])
        .env("DATABASE_URL", &db.url)
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("stored in the clear") && said.contains("seal-existing"),
        "{said}"
    );
    assert_eq!(db.count(in_clear).await, 2, "nothing changed");

    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors.jsonl");
    let anchors = anchors.to_str().unwrap();
    let sealed = db.netia(&["gdpr", "seal-existing", "--anchor", anchors]);
    assert!(sealed.contains("sealed the personal fields of 3 event(s)"), "{sealed}");
    assert_eq!(db.count(in_clear).await, 0, "nothing left in the clear");
    // The anchor from before no longer matches (the heads moved); the one from after does.
    let written = std::fs::read_to_string(anchors).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 2, "{written}");
    let after = dir.path().join("after.jsonl");
    std::fs::write(&after, format!("{}\n", lines[1])).unwrap();
    let verified = db.netia(&["audit", "verify", "--anchor", after.to_str().unwrap()]);
    assert!(verified.contains("; 0 broken"), "{verified}");
    let before = dir.path().join("before.jsonl");
    std::fs::write(&before, format!("{}\n", lines[0])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .args(["audit", "verify", "--anchor", before.to_str().unwrap()])
        .env("DATABASE_URL", &db.url)
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the heads before the rewrite are recorded, and differ"
    );
    let again = db.netia(&["gdpr", "seal-existing"]);
    assert!(again.contains("of 0 event(s)"), "{again}");
    // Reads give what was written.
    let reader = common::sealed(netia::store::connect(&db.url, 8).await.unwrap(), &db.url).await;
    let events = common::all_events(reader.as_ref()).await;
    let text = serde_json::to_string(&events.iter().map(|e| &e.payload).collect::<Vec<_>>()).unwrap();
    assert!(
        text.contains("legacy.person@plain.example") && text.contains("legacy-plaintext-body"),
        "{text}"
    );
    assert!(text.contains(&lookalike), "{text}");

    // Erased from the command line: a fresh reader opens nothing of theirs any more.
    let erased = db.netia(&["gdpr", "erase", &customer.to_string()]);
    assert!(erased.contains("erased at"), "{erased}");
    let reader = common::sealed(netia::store::connect(&db.url, 8).await.unwrap(), &db.url).await;
    let events = common::all_events(reader.as_ref()).await;
    let text = serde_json::to_string(&events.iter().map(|e| &e.payload).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("legacy"), "{text}");
    assert!(text.contains("[erased]"), "{text}");
    assert!(db.netia(&["audit", "verify"]).contains(" 0 broken"));
}

on_both_backends!(
    an_erased_customer_is_gone_from_the_whole_database,
    erasure_is_for_admins_of_the_account,
    existing_plaintext_is_sealed_in_place_then_erasable
);
