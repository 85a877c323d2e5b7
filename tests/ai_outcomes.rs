//! The `ai_outcomes` projection on both databases, through a running server: given histories whose
//! outcomes were computed by hand, `GET /api/reporting/ai` and `netia report ai` give those numbers,
//! and `netia projections rebuild ai_outcomes` (while the server runs) gives the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use common::api::Api;
use netia::command_bus::CommandBus;
use netia::projector::read_model_pool;
use netia_commands::{Conversation, ConversationCommand};
use netia_events::conversation::{Author, HandoffReason, MessageFormat, Source};
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, Metadata, UserId};
use netia_projections::{AiOutcomesProjection, Outcome};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One conversation's history, step by step (seconds after it opened).
enum Step {
    Customer(i64),
    Bot(i64),
    Fallback(i64),
    Agent(i64),
    Handoff(i64, HandoffReason),
    Close(i64),
    Reopen(i64),
}

/// Writes a conversation opened at `opened` in `account` through the command bus.
async fn conversation(bus: &CommandBus, account: AccountId, opened: DateTime<Utc>, steps: &[Step]) {
    let id = ConversationId::new();
    let customer_id = CustomerId::new();
    let meta = Metadata::system("test");
    let run = |cmd: ConversationCommand| {
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    let at = |s: i64| opened + Duration::seconds(s);
    run(ConversationCommand::Create {
        conversation_id: id,
        account_id: account,
        customer_id,
        inbox_id: InboxId::new(),
        source: Source::Chat,
        subject: None,
        at: opened,
    })
    .await;
    let post = |author, s| ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author,
        body: "words".into(),
        format: MessageFormat::Text,
        private: false,
        client_message_id: None,
        at: at(s),
    };
    let mut trigger = None;
    for step in steps {
        match step {
            Step::Customer(s) => {
                let written = run(post(Author::Customer { customer_id }, *s)).await;
                trigger = Some(written.events[0].event_id);
            }
            Step::Bot(s) | Step::Fallback(s) => {
                let written = run(ConversationCommand::PostBotReply {
                    message_id: MessageId::new(),
                    body: "bot".into(),
                    trigger_event_id: trigger.take().expect("a customer message to answer"),
                    reply_to: None,
                    fallback: matches!(step, Step::Fallback(_)),
                    at: at(*s),
                })
                .await;
                assert_eq!(written.events.len(), 1, "the bot reply was refused");
            }
            Step::Agent(s) => {
                run(post(Author::Agent { user_id: UserId::new() }, *s)).await;
            }
            Step::Handoff(s, reason) => {
                run(ConversationCommand::HandToHuman {
                    reason: *reason,
                    at: at(*s),
                })
                .await;
            }
            Step::Close(s) => {
                run(ConversationCommand::Close { at: at(*s) }).await;
            }
            Step::Reopen(s) => {
                run(ConversationCommand::Reopen { at: at(*s) }).await;
            }
        }
    }
}

/// The histories of the module documentation's example, and what they come to (computed by hand).
async fn write_histories(bus: &CommandBus, account: AccountId) {
    use Step::*;
    let day1: DateTime<Utc> = "2026-04-01T09:00:00Z".parse().unwrap();
    let day2: DateTime<Utc> = "2026-04-02T15:30:00Z".parse().unwrap();
    // Day 1. Resolved by the bot alone.
    conversation(bus, account, day1, &[Customer(1), Bot(3), Close(60)]).await;
    // The customer asked for a person at 2 s; an agent answered 60 s later.
    let asked = [Customer(1), Handoff(2, HandoffReason::CustomerAsked), Agent(62)];
    conversation(bus, account, day1, &asked).await;
    // The model failed on the second message (fallback at 10 s); an agent answered 30 s later.
    let failed = [Customer(1), Bot(2), Customer(8), Fallback(10), Agent(40)];
    conversation(bus, account, day1, &failed).await;
    // No bot at all.
    conversation(bus, account, day1, &[Customer(1), Agent(5)]).await;
    // Day 2. An agent stepped in after the bot answered.
    conversation(bus, account, day2, &[Customer(1), Bot(2), Agent(30)]).await;
    // Resolved by the bot, reopened a day later, closed again.
    let reopened = [Customer(1), Bot(2), Close(10), Reopen(86_400), Close(86_500)];
    conversation(bus, account, day2, &reopened).await;
    // The model handed over at 5 s; an agent answered 120 s later.
    let model = [
        Customer(1),
        Bot(2),
        Customer(4),
        Handoff(5, HandoffReason::Model),
        Agent(125),
    ];
    conversation(bus, account, day2, &model).await;
}

fn expected(from: &str, to: &str) -> Value {
    json!({
        "from": from, "to": to,
        "conversations": 7, "bot_involved": 6, "bot_answers": 5, "fallbacks": 1,
        "handed_off": 4,
        "handoff_reasons": {"agent_replied": 1, "customer_asked": 1, "model_failed": 1, "model_handoff": 1},
        "resolved_without_human": 2, "closed": 2, "reopened_within_7_days": 1,
        "rates": {"resolved_without_human": 2.0 / 6.0, "handed_off": 4.0 / 6.0, "reopened_within_7_days": 0.5},
        "handoff_to_human_reply": {"count": 3, "average_seconds": 70.0, "median_seconds": 60.0},
        "days": [
            {"day": "2026-04-01", "conversations": 4, "bot_involved": 3, "bot_answers": 2, "fallbacks": 1,
             "handed_off": 2, "handoff_reasons": {"customer_asked": 1, "model_failed": 1},
             "resolved_without_human": 1, "closed": 1, "reopened_within_7_days": 0},
            {"day": "2026-04-02", "conversations": 3, "bot_involved": 3, "bot_answers": 3, "fallbacks": 0,
             "handed_off": 2, "handoff_reasons": {"agent_replied": 1, "model_handoff": 1},
             "resolved_without_human": 1, "closed": 1, "reopened_within_7_days": 1},
        ],
    })
}

fn netia(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netia"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netia {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn outcomes(db: &TestDb, account: AccountId) -> Vec<Outcome> {
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    AiOutcomesProjection::outcomes(&mut conn, account).await.unwrap()
}

async fn reports_hand_computed_outcomes_and_rebuilds_to_the_same_rows(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("owner@bikes.example").await;
    let account: AccountId = admin.account_id.parse().unwrap();
    let bus = CommandBus::new(db.store.clone());
    write_histories(&bus, account).await;
    // Another account's conversations on the same days never count.
    conversation(
        &bus,
        AccountId::new(),
        "2026-04-01T10:00:00Z".parse().unwrap(),
        &[Step::Customer(1), Step::Bot(2)],
    )
    .await;

    let path = "/api/reporting/ai?from=2026-03-31&to=2026-04-02";
    let mut report = Value::Null;
    for _ in 0..200 {
        let (status, body) = api.get(path, &admin.token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        report = body["data"].clone();
        if report == expected("2026-03-31", "2026-04-02") {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(report, expected("2026-03-31", "2026-04-02"));

    // Only the second day.
    let (_, day2) = api
        .get("/api/reporting/ai?from=2026-04-02&to=2026-04-02", &admin.token)
        .await;
    assert_eq!(day2["data"]["conversations"], 3);
    assert_eq!(day2["data"]["handoff_to_human_reply"]["count"], 1);
    // Invalid ranges are refused.
    for bad in [
        "from=2026-04-02&to=2026-04-01",
        "from=2025-01-01&to=2026-04-01",
        "from=2026-04-01",
    ] {
        let (status, _) = api.get(&format!("/api/reporting/ai?{bad}"), &admin.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // The command line gives the same report.
    let account_arg = admin.account_id.as_str();
    let printed = netia(
        db,
        &[
            "report",
            "ai",
            "--account",
            account_arg,
            "--from",
            "2026-03-31",
            "--to",
            "2026-04-02",
            "--json",
        ],
    );
    let printed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed[0]["report"], expected("2026-03-31", "2026-04-02"));
    let text = netia(
        db,
        &[
            "report",
            "ai",
            "--account",
            account_arg,
            "--from",
            "2026-04-01",
            "--to",
            "2026-04-02",
        ],
    );
    assert!(text.contains("resolved without a human 2 (33.3%)"), "{text}");
    assert!(text.contains("average 70 s, median 60 s"), "{text}");

    // Rebuilt from the log while the server runs: the same rows.
    let live = outcomes(db, account).await;
    assert_eq!(live.len(), 7);
    let rebuilt = netia(db, &["projections", "rebuild", "ai_outcomes"]);
    assert!(rebuilt.contains("swapped in"), "{rebuilt}");
    assert_eq!(outcomes(db, account).await, live);
    let (_, again) = api.get(path, &admin.token).await;
    assert_eq!(again["data"], expected("2026-03-31", "2026-04-02"));
}

on_both_backends!(reports_hand_computed_outcomes_and_rebuilds_to_the_same_rows);
