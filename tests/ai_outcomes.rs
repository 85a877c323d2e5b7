//! The `ai_outcomes` projection on both databases, through a running server: given histories whose
//! outcomes were computed by hand, `GET /api/reporting/ai` and `netia report ai` give those numbers,
//! and `netia projections rebuild ai_outcomes` (while the server runs) gives the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestDb;
use common::ai_history;
use common::api::Api;
use netia::command_bus::CommandBus;
use netia::projector::read_model_pool;
use netia_events::AccountId;
use netia_projections::{AiOutcomesProjection, Outcome};
use reqwest::StatusCode;
use serde_json::{Value, json};

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
    ai_history::write_histories(&bus, account).await;
    // Another account's conversations on the same days never count.
    ai_history::conversation(
        &bus,
        AccountId::new(),
        "2026-04-01T10:00:00Z".parse().unwrap(),
        &[ai_history::Step::Customer(1), ai_history::Step::Bot(2)],
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
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let printed = db.netia(&[
        "report",
        "ai",
        "--account",
        account_arg,
        "--from",
        "2026-03-31",
        "--to",
        "2026-04-02",
        "--json",
    ]);
    let printed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed[0]["report"], expected("2026-03-31", "2026-04-02"));
    let text = db.netia(&[
        "report",
        "ai",
        "--account",
        account_arg,
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-02",
    ]);
    assert!(text.contains("resolved without a human 2 (33.3%)"), "{text}");
    assert!(text.contains("average 70 s, median 60 s"), "{text}");

    // Rebuilt from the log while the server runs: the same rows.
    let live = outcomes(db, account).await;
    assert_eq!(live.len(), 7);
    let rebuilt = db.netia(&["projections", "rebuild", "ai_outcomes"]);
    assert!(rebuilt.contains("swapped in"), "{rebuilt}");
    assert_eq!(outcomes(db, account).await, live);
    let (_, again) = api.get(path, &admin.token).await;
    assert_eq!(again["data"], expected("2026-03-31", "2026-04-02"));
}

on_both_backends!(reports_hand_computed_outcomes_and_rebuilds_to_the_same_rows);
