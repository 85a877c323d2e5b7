//! LLM auto-reply against a fake OpenAI-compatible server (wiremock): the exact request, retries on
//! timeouts and 429s, the fallback, exactly one reply under duplicate and concurrent deliveries,
//! hand-over after an agent's reply or when the customer (or the model) asks for a person, and the
//! whole path through a running server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use netia::bus::Consumer;
use netia::command_bus::CommandBus;
use netia::llm::{LlmReply, LlmSettings, OpenAi};
use netia::store::StreamBound;
use netia_commands::{Account, AccountCommand, Conversation};
use netia_events::account::BusinessContext;
use netia_events::conversation::Author;
use netia_events::{ConversationId, CustomerId, Metadata, RecordedEvent, StreamRef, UserId};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}

fn handoff_call() -> Value {
    json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "handoff_to_human", "arguments": "{}"}}]}}]
    })
}

fn settings(server: &MockServer) -> LlmSettings {
    LlmSettings {
        base_url: format!("{}/v1", server.uri()),
        api_key: "sk-test".to_owned().into(),
        model: "test-model".into(),
        max_tokens: 123,
        temperature: 0.25,
        timeout: Duration::from_millis(500),
        max_retries: 2,
        history: 3,
        fallback: "We will get back to you.".into(),
        handoff_phrases: vec!["talk to a human".into()],
        retry_base: Duration::from_millis(20),
    }
}

/// An account with the LLM on and a conversation of one of its customers.
struct World {
    bus: CommandBus,
    store: Arc<dyn netia::store::EventStore>,
    conversation: ConversationId,
    customer: CustomerId,
    agent: UserId,
    meta: Metadata,
}

async fn world(db: &TestDb, llm_enabled: bool) -> World {
    let store = db.store.clone();
    let bus = CommandBus::new(store.clone());
    let (account, agent, meta) = common::register_account(&bus).await;
    let (customer, conversation) = (CustomerId::new(), ConversationId::new());
    let context = BusinessContext {
        business_name: "Acme Bikes".into(),
        business_description: "We repair bicycles in Lyon.".into(),
        instructions: "Always answer in French.".into(),
        scheduling_link: Some("https://cal.example/acme".into()),
    };
    bus.execute::<Account>(account, AccountCommand::UpdateBusinessContext { context }, &meta)
        .await
        .unwrap();
    if llm_enabled {
        bus.execute::<Account>(account, AccountCommand::EnableLlm, &meta)
            .await
            .unwrap();
    }
    let open = common::open_conversation(conversation, account, customer, chrono::Utc::now());
    bus.execute::<Conversation>(conversation, open, &meta).await.unwrap();
    World {
        bus,
        store,
        conversation,
        customer,
        agent,
        meta,
    }
}

impl World {
    async fn post(&self, author: Author, body: &str, private: bool) -> RecordedEvent {
        let command = common::message(author, body, private, None, chrono::Utc::now());
        let done = self
            .bus
            .execute::<Conversation>(self.conversation, command, &self.meta)
            .await
            .unwrap();
        let stream = StreamRef::new("conversation", self.conversation.to_string());
        let events = self.store.read_stream(&stream, StreamBound::All).await.unwrap();
        events
            .into_iter()
            .find(|e| e.version == done.version)
            .expect("the posted event")
    }

    async fn customer_says(&self, body: &str) -> RecordedEvent {
        self.post(
            Author::Customer {
                customer_id: self.customer,
            },
            body,
            false,
        )
        .await
    }

    async fn events(&self) -> Vec<RecordedEvent> {
        let stream = StreamRef::new("conversation", self.conversation.to_string());
        self.store.read_stream(&stream, StreamBound::All).await.unwrap()
    }

    async fn bot_replies(&self) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.event_type == "BotMessagePosted")
            .map(|e| e.payload["body"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn handoffs(&self) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.event_type == "HandedToHuman")
            .map(|e| e.payload["reason"].as_str().unwrap().to_owned())
            .collect()
    }

    fn consumer(&self, server: &MockServer) -> LlmReply {
        let settings = settings(server);
        LlmReply {
            bus: CommandBus::new(self.store.clone()),
            store: self.store.clone(),
            client: Arc::new(OpenAi::new(settings.clone())),
            settings,
            hub: None,
        }
    }
}

async fn requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn sqlite_the_model_gets_the_exact_request_and_its_answer_is_posted() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Bonjour !")))
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let consumer = w.consumer(&server);
    let first = w.customer_says("Hi").await;
    consumer.handle(&first).await.unwrap();
    w.post(Author::Agent { user_id: w.agent }, "internal: VIP customer", true)
        .await;
    let second = w.customer_says("When are you open?").await;
    consumer.handle(&second).await.unwrap();
    assert_eq!(w.bot_replies().await, ["Bonjour !", "Bonjour !"]);

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    let request = &sent[1];
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["max_tokens"], 123);
    assert!((request["temperature"].as_f64().unwrap() - 0.25).abs() < 1e-6);
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    for part in [
        "Acme Bikes",
        "We repair bicycles in Lyon.",
        "Always answer in French.",
        "https://cal.example/acme",
    ] {
        assert!(system.contains(part), "system prompt lacks {part:?}: {system}");
    }
    // LLM_HISTORY = 3: the last three public messages, oldest first; the private note is not there.
    let turns: Vec<(String, String)> = messages[1..]
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().into(),
                m["content"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("user", "Hi"),
        ("assistant", "Bonjour !"),
        ("user", "When are you open?"),
    ];
    assert_eq!(turns, expected.map(|(r, c)| (r.to_owned(), c.to_owned())));
    assert!(!request.to_string().contains("VIP"), "a private note reached the model");
    assert_eq!(request["tools"][0]["function"]["name"], "handoff_to_human");
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_a_model_that_times_out_is_retried_then_the_fallback_is_posted() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("too late"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let trigger = w.customer_says("Hello?").await;
    // Sockets watching the conversation and the account's system events.
    let hub = Arc::new(netia::realtime::Hub::new());
    let conversation_frames = netia::realtime::hub::Outbox::detached();
    hub.join(
        &format!("conversation:{}", w.conversation),
        1,
        "1",
        false,
        conversation_frames.clone(),
    );
    let account = trigger.metadata["account_id"].as_str().unwrap().to_owned();
    let event_frames = netia::realtime::hub::Outbox::detached();
    hub.join(&format!("events:{account}"), 2, "1", true, event_frames.clone());
    let mut consumer = w.consumer(&server);
    consumer.hub = Some(hub);
    consumer.handle(&trigger).await.unwrap();
    assert_eq!(
        requests(&server).await.len(),
        3,
        "one call and LLM_MAX_RETRIES = 2 retries"
    );
    assert_eq!(w.bot_replies().await, ["We will get back to you."]);
    let frames = |outbox: &netia::realtime::hub::Outbox| -> Vec<Value> {
        outbox
            .take_texts()
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect()
    };
    let typing: Vec<Value> = frames(&conversation_frames)
        .into_iter()
        .filter(|f| f[3] == "typing")
        .map(|f| f[4].clone())
        .collect();
    assert_eq!(typing.len(), 2, "{typing:?}");
    assert!(typing[0]["typing"] == true && typing[0]["bot"] == true && typing[1]["typing"] == false);
    let notices = frames(&event_frames);
    assert!(
        notices.iter().any(|f| f[3] == "event" && f[4]["type"] == "llm_error"),
        "agents are told: {notices:?}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_rate_limits_are_waited_out() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}}),
        ))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Here I am")))
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let trigger = w.customer_says("Hello?").await;
    let started = std::time::Instant::now();
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert_eq!(requests(&server).await.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "backoff of 20 ms then 40 ms"
    );
    assert_eq!(w.bot_replies().await, ["Here I am"]);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_reply_under_duplicate_delivery_and_two_consumers() {
    let Some(db) = TestDb::postgres().await else { return };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Only once")))
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let trigger = w.customer_says("Hi").await;
    let (a, b) = (w.consumer(&server), w.consumer(&server));
    let (ra, rb) = tokio::join!(a.handle(&trigger), b.handle(&trigger));
    ra.unwrap();
    rb.unwrap();
    a.handle(&trigger).await.unwrap(); // redelivered
    assert_eq!(w.bot_replies().await, ["Only once"]);
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_a_newer_customer_message_supersedes_the_answer_to_the_older() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Answer")))
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let older = w.customer_says("Question one").await;
    let newer = w.customer_says("Actually, question two").await;
    let consumer = w.consumer(&server);
    consumer.handle(&older).await.unwrap();
    assert!(w.bot_replies().await.is_empty(), "the older message is not answered");
    consumer.handle(&newer).await.unwrap();
    assert_eq!(w.bot_replies().await.len(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_the_bot_stops_after_an_agent_reply_or_when_a_person_is_asked_for() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("bot")))
        .mount(&server)
        .await;

    // An agent's public reply hands the conversation over.
    let w = world(&db, true).await;
    w.post(Author::Agent { user_id: w.agent }, "I'm on it", false).await;
    let trigger = w.customer_says("Thanks").await;
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert!(w.bot_replies().await.is_empty());

    // A conversation assigned to an agent is theirs.
    let w = world(&db, true).await;
    let assign = netia_commands::ConversationCommand::Assign {
        assignee: Some(w.agent),
    };
    w.bus
        .execute::<Conversation>(w.conversation, assign, &w.meta)
        .await
        .unwrap();
    let trigger = w.customer_says("Hello").await;
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert!(w.bot_replies().await.is_empty());

    // The customer asks for a person: handed over without asking the model.
    let w = world(&db, true).await;
    let trigger = w.customer_says("Can I talk to a HUMAN please").await;
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert_eq!(w.handoffs().await, ["customer_asked"]);
    let later = w.customer_says("Hello?").await;
    w.consumer(&server).handle(&later).await.unwrap();
    assert!(w.bot_replies().await.is_empty());
    assert!(requests(&server).await.is_empty(), "the model was never asked");

    // The account has the LLM off: nothing happens.
    let w = world(&db, false).await;
    let trigger = w.customer_says("Hi").await;
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert!(w.bot_replies().await.is_empty() && requests(&server).await.is_empty());
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_the_model_can_hand_the_conversation_over() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(handoff_call()))
        .mount(&server)
        .await;
    let w = world(&db, true).await;
    let trigger = w
        .customer_says("My bike was stolen and the insurance needs a form")
        .await;
    w.consumer(&server).handle(&trigger).await.unwrap();
    assert_eq!(w.handoffs().await, ["model"]);
    assert!(w.bot_replies().await.is_empty());
    db.cleanup().await;
}

/// A running server with the LLM on (the fake model at `server`), an account, and a conversation
/// whose customer has just written `says`: (api, the admin, the conversation id).
async fn running_server_asked(
    db: &TestDb,
    server: &MockServer,
    says: &str,
) -> (common::api::Api, common::api::Session, String) {
    let base = format!("{}/v1", server.uri());
    let api = common::api::Api::start_with(db, &[("LLM_BASE_URL", &base), ("LLM_MODEL", "test-model")]).await;
    let admin = api.register("agent@example.com").await;
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/api/business_context",
            Some(&admin.token),
            Some(
                json!({"business_name": "Acme", "business_description": "Bikes", "instructions": "Be nice",
                        "scheduling_link": null, "llm_enabled": true}),
            ),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (conversation, _) = api.conversation(&admin.account_id).await;
    common::api::customer_says(&api, &admin, &db.store, &conversation, says).await;
    (api, admin, conversation)
}

/// The whole path: a running server (embedded bus) answers a customer message through the fake
/// model, with the settings read from its environment.
async fn a_running_server_answers_customers(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Hello from the bot")))
        .mount(&server)
        .await;
    let (api, admin, conversation) = running_server_asked(db, &server, "Hi there").await;
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let (_, body) = api
            .get(&format!("/api/conversations/{conversation}/messages"), &admin.token)
            .await;
        kinds = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["type"].as_str().unwrap().to_owned(),
                    m["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if kinds.iter().any(|(k, _)| k == "bot") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kinds.contains(&("bot".to_owned(), "Hello from the bot".to_owned())),
        "{kinds:?}"
    );
    // The reply is caused by the customer's message, in its chain.
    let (_, history) = api
        .get(&format!("/api/conversations/{conversation}/history"), &admin.token)
        .await;
    let entry = |kind: &str| {
        history["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_type"] == kind)
            .cloned()
            .unwrap()
    };
    let (asked, answered) = (entry("CustomerMessagePosted"), entry("BotMessagePosted"));
    assert_eq!(answered["causation_id"], asked["event_id"], "{history}");
    assert_eq!(
        answered["correlation_id"], asked["event_id"],
        "the customer message started the chain"
    );
    let handled = api.metric("netia_consumer_handled_total{consumer=\"llm_reply\"}").await;
    assert!(handled >= Some(1.0), "{handled:?}");
    let tokens = api.metric("netia_llm_tokens_total{kind=\"completion\"}").await;
    assert!(tokens > Some(0.0), "the model's usage is counted: {tokens:?}");
}

mod server {
    use super::*;
    on_both_backends!(a_running_server_answers_customers);
}

/// Field report 1: the model takes 1.5 s; meanwhile an agent assigns the conversation to
/// themself. Whether the bot may answer is decided when its answer is recorded, so nothing is
/// posted (the history ends with the assignment), and the model was asked (it was free then).
async fn an_answer_that_arrives_after_an_agent_took_the_conversation_is_dropped(db: &TestDb) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("Your order ships today."))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    let (api, admin, conversation) = running_server_asked(db, &server, "Where is my order?").await;
    // The model is thinking.
    for _ in 0..100 {
        if !requests(&server).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(requests(&server).await.len(), 1, "the model was asked");
    let (status, body) = api
        .patch(
            &format!("/api/conversations/{conversation}"),
            &admin.token,
            json!({"assignee_id": admin.user_id}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    // The consumer is done with the message once it records it handled.
    let mut handled = false;
    for _ in 0..200 {
        if db
            .count("SELECT COUNT(*) FROM consumer_processed WHERE consumer = 'llm_reply'")
            .await
            == 1
        {
            handled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(handled, "the LLM consumer handled the message");
    let (_, history) = api
        .get(&format!("/api/conversations/{conversation}/history"), &admin.token)
        .await;
    let types: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["ConversationCreated", "CustomerMessagePosted", "AgentAssigned"],
        "no bot message after the assignment"
    );
}

mod assigned_meanwhile {
    use super::*;
    on_both_backends!(an_answer_that_arrives_after_an_agent_took_the_conversation_is_dropped);
}

/// An operator replays a parked delivery from the command line: the bot answers once; replaying
/// it again, or dropping what is not parked, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_parked_delivery_replayed_from_the_command_line_answers_once() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Tomorrow, by noon.")))
        .mount(&server)
        .await;
    let world = world(&db, true).await;
    let asked = world.customer_says("When does it arrive?").await;
    let pool = netia::projector::read_model_pool(&db.url, 2).await.unwrap();
    let id = asked.event_id.to_string();
    netia::bus::park(&pool, "llm_reply", &id, 5, "the model was down")
        .await
        .unwrap();
    let base = format!("{}/v1", server.uri());
    let netia = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
            .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("LLM_BASE_URL", &base)
            .env("LLM_MODEL", "test-model")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let listed = netia(&["bus", "parked", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list[0]["event_id"], id.as_str());
    assert_eq!(list[0]["error"], "the model was down");
    let shown = netia(&["bus", "parked", "show", "llm_reply", &id]);
    assert!(text(&shown).contains("CustomerMessagePosted"), "{}", text(&shown));

    let replayed = netia(&["bus", "parked", "replay", "llm_reply", &id]);
    assert!(replayed.status.success(), "{}", text(&replayed));
    assert_eq!(world.bot_replies().await, vec!["Tomorrow, by noon.".to_owned()]);
    let again = netia(&["bus", "parked", "replay", "llm_reply", &id]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("no parked delivery"), "{}", text(&again));
    assert_eq!(world.bot_replies().await.len(), 1, "the effect happened once");
    let listed = netia(&["bus", "parked", "list"]);
    assert!(text(&listed).contains("0 parked"), "{}", text(&listed));

    netia::bus::park(&pool, "llm_reply", &id, 5, "again").await.unwrap();
    let dropped = netia(&["bus", "parked", "drop", "llm_reply", &id]);
    assert!(dropped.status.success(), "{}", text(&dropped));
    let none = netia(&["bus", "parked", "drop", "llm_reply", &id]);
    assert_eq!(none.status.code(), Some(1));
    let unknown = netia(&["bus", "parked", "replay", "nobody", &id]);
    assert_eq!(unknown.status.code(), Some(1));
    db.cleanup().await;
}

/// Crash: two `netia serve` nodes on PostgreSQL and RabbitMQ answer 40 questions (one per
/// conversation, so none is superseded) with a model that takes 400 ms; one node is killed with
/// SIGKILL halfway, mid-answers. Every question gets exactly one bot reply: the survivor takes
/// over the relay and the deliveries the dead node held, and the claims keep what it had started
/// or finished from being answered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_a_node_killed_mid_answers_leaves_each_question_one_reply() {
    use common::nodes::{free_port, serve_with};
    let Some(db) = TestDb::postgres().await else { return };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("Answered"))
                .set_delay(Duration::from_millis(400)),
        )
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let amqp = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let vars = [
        ("LLM_BASE_URL", base.as_str()),
        ("LLM_MODEL", "test-model"),
        ("LLM_TIMEOUT", "2"),
        ("LLM_MAX_RETRIES", "0"),
        ("AMQP_URL", amqp.as_str()),
    ];
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = serve_with(&db, port_a, &vars).await;
    let _b = serve_with(&db, port_b, &vars).await;
    let world = world(&db, true).await;
    let mut conversations = Vec::new();
    for i in 0..40 {
        let (customer, conversation) = (CustomerId::new(), ConversationId::new());
        let account = world.meta.account_id.unwrap();
        let open = common::open_conversation(conversation, account, customer, chrono::Utc::now());
        world
            .bus
            .execute::<Conversation>(conversation, open, &world.meta)
            .await
            .unwrap();
        let ask = common::message(
            Author::Customer { customer_id: customer },
            &format!("Question {i}"),
            false,
            None,
            chrono::Utc::now(),
        );
        world
            .bus
            .execute::<Conversation>(conversation, ask, &world.meta)
            .await
            .unwrap();
        conversations.push(conversation);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i == 20 {
            a.start_kill().unwrap(); // SIGKILL: no shutdown, deliveries unacknowledged, claims held
        }
    }
    let replies = |conversation: ConversationId| {
        let store = db.store.clone();
        async move {
            let stream = StreamRef::new("conversation", conversation.to_string());
            let events = store.read_stream(&stream, StreamBound::All).await.unwrap();
            events.iter().filter(|e| e.event_type == "BotMessagePosted").count()
        }
    };
    let started = std::time::Instant::now();
    loop {
        let mut answered = 0;
        for c in &conversations {
            answered += usize::from(replies(*c).await > 0);
        }
        if answered == conversations.len() || started.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "every question answered {:?} after the last was asked",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // a duplicate would arrive meanwhile
    let mut counts = Vec::new();
    for c in &conversations {
        counts.push(replies(*c).await);
    }
    assert!(counts.iter().all(|n| *n == 1), "bot replies per question: {counts:?}");
    db.cleanup().await;
}
