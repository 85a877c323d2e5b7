//! The projector's catch-up to a target.
#![allow(clippy::unwrap_used)]

use netia_events::{NewEvent, StreamRef};
use netia_projections::CustomerProjection;
use serde_json::json;

use super::*;

/// A migrated SQLite store in a temporary directory (dropped with the directory), and its URL.
async fn sqlite_store() -> (tempfile::TempDir, String, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/netia.db", dir.path().display());
    let store = crate::store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (dir, url, store)
}

/// Catching up to a target the tailer reads past (one batch holds the events after it too) stops
/// at the target and answers where the checkpoint is: a group member told a later position would
/// never be in step with the group again.
#[tokio::test]
async fn catching_up_to_a_target_answers_the_checkpoint_it_stored() {
    let (_dir, url, store) = sqlite_store().await;
    let stream = StreamRef::new("counter", "one");
    let mut positions = Vec::new();
    for version in 0..10 {
        let event = NewEvent::new("Counted", 1, json!({"n": version}), json!({}));
        let recorded = store.append(&stream, version, vec![event]).await.unwrap();
        positions.push(recorded[0].checkpoint());
    }
    let db = super::read_model_pool(&url, 2).await.unwrap();
    let projector = Projector::new(store, db, Arc::new(CustomerProjection));
    projector.setup().await.unwrap();

    let target = positions[4];
    let reached = projector.catch_up_to(None, Checkpoint::START, target).await.unwrap();
    assert_eq!(reached, target);
    assert_eq!(projector.checkpoint().await.unwrap(), target);

    let last = positions[9];
    let reached = projector.catch_up_to(None, target, last).await.unwrap();
    assert_eq!(reached, last);
    assert_eq!(projector.checkpoint().await.unwrap(), last);
    // Already there: nothing to do, and it says so.
    assert_eq!(projector.catch_up_to(None, last, last).await.unwrap(), last);
}

/// While nobody waits, the group pauses between transactions (here an hour, so that the pause is
/// plain to see); a reader who starts waiting for a read model ends the pause at once.
#[tokio::test]
async fn the_group_pauses_between_transactions_until_a_reader_waits() {
    let (_dir, url, store) = sqlite_store().await;
    let db = super::read_model_pool(&url, 2).await.unwrap();
    let name = CustomerProjection.name();
    let progress = Progress::new(&[name]);
    let projector =
        Projector::new(store.clone(), db.clone(), Arc::new(CustomerProjection)).with_progress(progress.sender(name));
    let group = group::ProjectorGroup::new(store.clone(), db.clone(), &url, vec![projector])
        .with_waiting(progress.waiting())
        .with_stream_pace(Duration::from_secs(3600));
    group.setup().await.unwrap();
    let stream = StreamRef::new("counter", "one");
    let append = |version: i64| {
        let (store, stream) = (store.clone(), stream.clone());
        async move {
            let event = NewEvent::new("Counted", 1, json!({"n": version}), json!({}));
            store.append(&stream, version, vec![event]).await.unwrap()[0].checkpoint()
        }
    };
    // Read off the sender, not waited for through a receiver: a receiver is a waiting reader,
    // which ends the pause.
    let applied = progress.sender(name).unwrap();
    let applied_by_then = |at: Checkpoint| {
        let applied = applied.clone();
        async move {
            for _ in 0..3000 {
                if *applied.borrow() >= at {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            *applied.borrow()
        }
    };
    // Written before the group starts: a catch-up job, not the group's own transaction, applies it.
    let before = append(0).await;
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(group.run(stopped));
    assert_eq!(applied_by_then(before).await, before);

    let first = append(1).await;
    assert_eq!(
        applied_by_then(first).await,
        first,
        "an event after a quiet spell is applied"
    );

    let second = append(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*applied.borrow(), first, "the group pauses before its next transaction");

    let waited = progress
        .wait_for(&db, name, second, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(waited, "a waiting reader ends the pause");
    assert_eq!(*applied.borrow(), second);
    stop.send(true).unwrap();
    running.await.unwrap();
}
