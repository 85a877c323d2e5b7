//! The projector's catch-up to a target.
#![allow(clippy::unwrap_used)]

use netia_events::{NewEvent, StreamRef};
use netia_projections::CustomerProjection;
use serde_json::json;

use super::*;

/// Catching up to a target the tailer reads past (one batch holds the events after it too) stops
/// at the target and answers where the checkpoint is: a group member told a later position would
/// never be in step with the group again.
#[tokio::test]
async fn catching_up_to_a_target_answers_the_checkpoint_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/netia.db", dir.path().display());
    let store = crate::store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
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
