//! Rebuilding read models: equal to the live ones row for row, resumable, and safe beside a live projector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TestDb;
use netia::projector::{Projector, ProjectorError, projections, read_model_pool, wait_for};
use netia::rebuild::{RebuildOptions, RebuildOutcome, rebuild, rebuild_all};
use netia_events::{ConversationId, RecordedEvent};
use netia_projections::{
    ConversationProjection, CustomerProjection, InboxProjection, InboxQuery, Projection, ProjectionError,
};
use sqlx::{AnyConnection, AnyPool};

/// Everything the three read models hold, in a comparable form.
async fn snapshot(pool: &AnyPool) -> String {
    let mut conn = pool.acquire().await.unwrap();
    let customers = CustomerProjection::all(&mut conn).await.unwrap();
    let query = InboxQuery {
        include_archived: true,
        limit: 200,
        ..Default::default()
    };
    let inbox = InboxProjection::list(&mut conn, &query).await.unwrap();
    let mut messages = Vec::new();
    for row in &inbox {
        let id: ConversationId = row.conversation_id.parse().unwrap();
        messages.extend(
            ConversationProjection::messages(&mut conn, id, true, 0, 1_000)
                .await
                .unwrap(),
        );
    }
    assert!(!customers.is_empty() && !inbox.is_empty() && !messages.is_empty());
    serde_json::to_string_pretty(&(customers, inbox, messages)).unwrap()
}

async fn live(db: &TestDb) -> AnyPool {
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    for projection in projections() {
        let projector = Projector::new(db.store.clone(), pool.clone(), projection).with_batch(300);
        projector.setup().await.unwrap();
        projector.catch_up().await.unwrap();
    }
    pool
}

async fn a_rebuilt_projection_equals_the_live_one(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 2_000, 40, 11).await.unwrap();
    let pool = live(db).await;
    let before = snapshot(&pool).await;
    for projection in projections() {
        let outcome = rebuild(db.store.clone(), &db.url, projection, &RebuildOptions::default())
            .await
            .unwrap();
        assert!(
            matches!(outcome, RebuildOutcome::Swapped { events, .. } if events >= 2_000),
            "{outcome:?}"
        );
    }
    assert_eq!(snapshot(&pool).await, before, "row for row");
    let indexes = live_indexes(db).await;
    for projection in projections() {
        for statement in projection.query_indexes() {
            let name = statement.split_whitespace().nth(5).unwrap();
            assert!(
                indexes.contains(&name.to_owned()),
                "{name} (built after the shadow filled) is live"
            );
        }
    }
}

/// The names of the indexes of the live read models' schema (PostgreSQL) or database (SQLite).
async fn live_indexes(db: &TestDb) -> Vec<String> {
    match &db.raw {
        common::Raw::Postgres(pg) => {
            sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()")
                .fetch_all(pg)
                .await
                .unwrap()
        }
        common::Raw::Sqlite(lite) => sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
            .fetch_all(lite)
            .await
            .unwrap(),
    }
}

async fn an_interrupted_rebuild_resumes_and_live_tables_keep_serving(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 1_500, 20, 12).await.unwrap();
    let pool = live(db).await;
    let before = snapshot(&pool).await;
    let options = RebuildOptions {
        batch: 100,
        max_batches: Some(3),
        progress: false,
    };
    let first = rebuild(db.store.clone(), &db.url, Arc::new(InboxProjection), &options)
        .await
        .unwrap();
    let RebuildOutcome::Interrupted { at } = first else {
        panic!("{first:?}")
    };
    assert!(at.position > 0);
    assert_eq!(
        snapshot(&pool).await,
        before,
        "live tables untouched while the shadow is built"
    );
    let options = RebuildOptions {
        batch: 100,
        ..Default::default()
    };
    let second = rebuild(db.store.clone(), &db.url, Arc::new(InboxProjection), &options)
        .await
        .unwrap();
    let RebuildOutcome::Swapped { events, .. } = second else {
        panic!("{second:?}")
    };
    assert!(
        events < 1_500,
        "resumed rather than restarted ({events} events replayed)"
    );
    assert_eq!(snapshot(&pool).await, before);
}

async fn a_live_projector_continues_after_the_swap(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 600, 10, 13).await.unwrap();
    let pool = read_model_pool(&db.url, 4).await.unwrap();
    let projector = Projector::new(db.store.clone(), pool.clone(), Arc::new(InboxProjection));
    projector.setup().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(stopped));
    rebuild(
        db.store.clone(),
        &db.url,
        Arc::new(InboxProjection),
        &RebuildOptions::default(),
    )
    .await
    .unwrap();
    let report = netia::seed::seed_demo(db.store.clone(), 300, 5, 14).await.unwrap();
    let head = common::all_events(db.store.as_ref()).await.last().unwrap().checkpoint();
    assert!(
        wait_for(&pool, "inbox", head, Duration::from_secs(20)).await.unwrap(),
        "live projector caught up"
    );
    let mut conn = pool.acquire().await.unwrap();
    let query = InboxQuery {
        account_id: Some(report.account_id),
        include_archived: true,
        limit: 200,
        ..Default::default()
    };
    assert_eq!(
        InboxProjection::count(&mut conn, &query).await.unwrap(),
        5,
        "new conversations projected after the swap"
    );
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// All read models in one pass over the log equal the live ones, also when one of them had got
/// further than the others in an interrupted run (each skips what its shadow already holds).
async fn all_read_models_rebuild_in_one_pass(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 2_000, 40, 17).await.unwrap();
    let pool = live(db).await;
    let before = snapshot(&pool).await;
    let options = RebuildOptions {
        batch: 200,
        max_batches: Some(3),
        progress: false,
    };
    let inbox_first = rebuild(db.store.clone(), &db.url, Arc::new(InboxProjection), &options)
        .await
        .unwrap();
    assert!(
        matches!(inbox_first, RebuildOutcome::Interrupted { .. }),
        "{inbox_first:?}"
    );
    let options = RebuildOptions {
        batch: 200,
        max_batches: Some(2),
        progress: false,
    };
    let partly = rebuild_all(db.store.clone(), &db.url, projections(), &options)
        .await
        .unwrap();
    assert!(matches!(partly, RebuildOutcome::Interrupted { .. }), "{partly:?}");
    assert_eq!(snapshot(&pool).await, before, "the live tables serve meanwhile");
    let done = rebuild_all(db.store.clone(), &db.url, projections(), &RebuildOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(done, RebuildOutcome::Swapped { events, .. } if events > 1_000),
        "{done:?}"
    );
    assert_eq!(snapshot(&pool).await, before, "row for row");
}

/// A read model with hooks for tests: it fails at the first event past `fail_after`, and it
/// sleeps `slow` before each batch and counts the batches it has applied.
struct Hooked<P> {
    inner: P,
    fail_after: i64,
    slow: Duration,
    applied: Arc<AtomicUsize>,
}

impl<P> Hooked<P> {
    fn new(inner: P) -> Self {
        Self {
            inner,
            fail_after: i64::MAX,
            slow: Duration::ZERO,
            applied: Arc::default(),
        }
    }

    fn failed(&self, event: &RecordedEvent) -> Option<ProjectionError> {
        (event.global_position > self.fail_after).then(|| ProjectionError::Invalid("failing on purpose".to_owned()))
    }
}

#[async_trait::async_trait]
impl<P: Projection> Projection for Hooked<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    async fn setup(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        self.inner.setup(conn).await
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        match self.failed(event) {
            Some(e) => Err(e),
            None => self.inner.apply(conn, event).await,
        }
    }

    async fn apply_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[RecordedEvent],
    ) -> Result<(), (i64, ProjectionError)> {
        tokio::time::sleep(self.slow).await;
        if let Some((event, e)) = events.iter().find_map(|event| Some((event, self.failed(event)?))) {
            return Err((event.global_position, e));
        }
        self.inner.apply_batch(conn, events).await?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A member that fails ends the whole pass with its error, while the others (which apply at their
/// own pace) stop once they have applied what was read; the live tables are untouched, and the
/// next run resumes every shadow and equals the live read models.
async fn a_failing_member_stops_the_pass_and_the_next_run_resumes(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 2_000, 40, 23).await.unwrap();
    let pool = live(db).await;
    let before = snapshot(&pool).await;
    let mut members: Vec<Arc<dyn Projection>> = projections()
        .into_iter()
        .filter(|p| p.name() != InboxProjection.name())
        .collect();
    let failing = Hooked {
        fail_after: 900,
        ..Hooked::new(InboxProjection)
    };
    members.insert(0, Arc::new(failing));
    let options = RebuildOptions {
        batch: 200,
        max_batches: None,
        progress: false,
    };
    let failed = tokio::time::timeout(
        Duration::from_secs(120),
        rebuild_all(db.store.clone(), &db.url, members, &options),
    )
    .await
    .expect("the pass ends when a member fails");
    match failed {
        Err(ProjectorError::Apply { name, position, .. }) => {
            assert_eq!(name, "inbox");
            assert!(position > 900, "{position}");
        }
        other => panic!("expected the inbox's failure, got {other:?}"),
    }
    assert_eq!(snapshot(&pool).await, before, "nothing was swapped in");
    let done = rebuild_all(db.store.clone(), &db.url, projections(), &options)
        .await
        .unwrap();
    assert!(matches!(done, RebuildOutcome::Swapped { .. }), "{done:?}");
    assert_eq!(snapshot(&pool).await, before, "row for row");
}

/// A rebuild that is dropped (a server's background rebuild whose leases are lost) stops its
/// members: none goes on applying the batches it was sent.
async fn a_dropped_rebuild_stops_every_member(db: &TestDb) {
    netia::seed::seed_demo(db.store.clone(), 2_000, 40, 29).await.unwrap();
    let slow = Hooked {
        slow: Duration::from_millis(300),
        ..Hooked::new(CustomerProjection)
    };
    let applied = slow.applied.clone();
    let members: Vec<Arc<dyn Projection>> = vec![Arc::new(slow)];
    let options = RebuildOptions {
        batch: 100,
        max_batches: None,
        progress: false,
    };
    let dropped = tokio::time::timeout(
        Duration::from_millis(1_000),
        rebuild_all(db.store.clone(), &db.url, members, &options),
    )
    .await;
    assert!(dropped.is_err(), "20 slow batches take longer than a second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_drop = applied.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        applied.load(Ordering::SeqCst),
        at_drop,
        "a member applied batches after the rebuild was dropped"
    );
}

on_both_backends!(
    a_dropped_rebuild_stops_every_member,
    a_failing_member_stops_the_pass_and_the_next_run_resumes,
    all_read_models_rebuild_in_one_pass,
    a_rebuilt_projection_equals_the_live_one,
    an_interrupted_rebuild_resumes_and_live_tables_keep_serving,
    a_live_projector_continues_after_the_swap,
);
