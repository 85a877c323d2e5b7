//! At scale, with real processes: a seeded history of NETIA_SCALE_EVENTS events (default 20,000 over
//! one conversation per 100 events; set 100000 for the full run) is projected by `netia project`, which is killed (SIGKILL) mid-way and
//! restarted; the result must equal, row for row, a rebuild of every projection from the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use netia::projector::{projections, read_model_pool, status};
use netia::rebuild::{RebuildOptions, RebuildOutcome, rebuild};
use netia_events::ConversationId;
use netia_projections::{ConversationProjection, CustomerProjection, InboxProjection, InboxQuery, ReportingProjection};
use sqlx::AnyPool;

fn scale() -> usize {
    std::env::var("NETIA_SCALE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn project(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_netia"))
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .arg("project")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn snapshot(pool: &AnyPool, account: netia_events::AccountId) -> String {
    let mut conn = pool.acquire().await.unwrap();
    let customers = CustomerProjection::all(&mut conn).await.unwrap();
    let mut inbox = Vec::new();
    let mut query = InboxQuery {
        include_archived: true,
        limit: 200,
        ..Default::default()
    };
    loop {
        let page = InboxProjection::list(&mut conn, &query).await.unwrap();
        let Some(last) = page.last() else { break };
        query.after = Some((last.last_activity_at.clone(), last.conversation_id.clone()));
        inbox.extend(page);
    }
    let mut messages = 0usize;
    let mut digest = Vec::new();
    for row in &inbox {
        let id: ConversationId = row.conversation_id.parse().unwrap();
        let list = ConversationProjection::messages(&mut conn, id, true, 0, 1_000)
            .await
            .unwrap();
        messages += list.len();
        digest.push(serde_json::to_string(&list).unwrap());
    }
    let report = ReportingProjection::report(&mut conn, account, "0000-01-01", "9999-12-31")
        .await
        .unwrap();
    assert!(messages > 0 && !report.is_empty());
    serde_json::to_string(&(customers, inbox, digest, report)).unwrap()
}

async fn a_killed_projector_resumes_and_matches_a_rebuild(db: &TestDb) {
    let events = scale();
    let seeded = netia::seed::seed_demo(db.store.clone(), events, events / 100, 99)
        .await
        .unwrap();
    assert!(seeded.events >= events);
    let pool = read_model_pool(&db.url, 4).await.unwrap();

    // Kill the projector process three times while it works (SIGKILL: no cleanup, possibly
    // mid-batch), then let a fourth run finish.
    for round in 0..3 {
        let mut child = project(&db.url);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        if round == 0 {
            let behind: i64 = status(&db.store, &pool)
                .await
                .unwrap()
                .iter()
                .map(|p| p.lag_events)
                .sum();
            assert!(behind > 0, "the first kill must land while projectors still have work");
        }
    }
    let mut child = project(&db.url);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let behind: i64 = status(&db.store, &pool)
            .await
            .unwrap()
            .iter()
            .map(|p| p.lag_events)
            .sum();
        if behind == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "projectors did not catch up ({behind} events behind)"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let projected = snapshot(&pool, seeded.account_id).await;

    for projection in projections() {
        let outcome = rebuild(db.store.clone(), &db.url, projection, &RebuildOptions::default())
            .await
            .unwrap();
        assert!(matches!(outcome, RebuildOutcome::Swapped { .. }));
    }
    let rebuilt = snapshot(&pool, seeded.account_id).await;
    assert!(
        projected == rebuilt,
        "a rebuild from the log equals what the killed-and-restarted projectors built"
    );
}

on_both_backends!(a_killed_projector_resumes_and_matches_a_rebuild);
