//! The shredding store on a real SQLite log: what the log holds, what readers get, erasure, and
//! sealed values that do not belong where they are.

use std::sync::Arc;

use netia_events::{NewEvent, RecordedEvent, StreamRef};
use serde_json::json;

use super::ShreddingStore;
use crate::secrets::Sealer;
use crate::store::{EventStore, SqliteStore, StoreError, StreamBound};

const SUBJECT: &str = "01a23670-b977-7509-9f2c-16d048180bfe";

async fn stores() -> (tempfile::TempDir, Arc<dyn EventStore>, ShreddingStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/netia.db", dir.path().display());
    let inner = SqliteStore::connect(&url, 2).await.unwrap();
    inner.migrate().await.unwrap();
    let inner: Arc<dyn EventStore> = Arc::new(inner);
    let keys = crate::projector::read_model_pool(&url, 2).await.unwrap();
    let store = ShreddingStore::new(inner.clone(), keys, Sealer::new(&[9; 32]));
    (dir, inner, store)
}

fn message(body: &str, subject: Option<&str>) -> NewEvent {
    NewEvent::new(
        "CustomerMessagePosted",
        2,
        json!({"message_id": "m", "customer_id": SUBJECT, "body": body, "format": "text",
               "attachments": [{"key": "k", "file_name": "scan.pdf"}], "sent_at": "2026-12-02T00:00:00Z"}),
        json!({}),
    )
    .with_subject(subject.map(str::to_owned))
}

async fn read(store: &dyn EventStore, stream: &StreamRef) -> Vec<RecordedEvent> {
    store.read_stream(stream, StreamBound::All).await.unwrap()
}

#[tokio::test]
async fn the_log_holds_ciphertext_and_readers_get_the_text() {
    let (_dir, inner, store) = stores().await;
    let stream = StreamRef::new("conversation", "c1");
    let appended = store
        .append(&stream, 0, vec![message("my card is 4242", Some(SUBJECT))])
        .await
        .unwrap();
    assert_eq!(appended[0].payload["body"], "my card is 4242");
    let stored = read(inner.as_ref(), &stream).await;
    let body = stored[0].payload["body"].as_str().unwrap();
    assert!(body.starts_with(&format!("sealed:v1:{SUBJECT}:")), "{body}");
    assert!(!stored[0].payload.to_string().contains("4242"));
    assert!(!stored[0].payload.to_string().contains("scan.pdf"));
    let opened = read(&store, &stream).await;
    assert_eq!(opened[0].payload, appended[0].payload);
    assert_eq!(
        store.read_all(Default::default(), 10).await.unwrap()[0].payload,
        appended[0].payload
    );
    // The chain covers what is stored, and verifies through the wrapper.
    assert!(store.verify_stream(&stream).await.unwrap().is_none());
}

#[tokio::test]
async fn an_erased_subject_reads_as_erased_and_writes_nothing_more() {
    let (_dir, inner, store) = stores().await;
    let stream = StreamRef::new("conversation", "c1");
    store
        .append(&stream, 0, vec![message("secret", Some(SUBJECT))])
        .await
        .unwrap();
    store.erase_subject(SUBJECT).await.unwrap();
    let opened = read(&store, &stream).await;
    assert_eq!(opened[0].payload["body"], "[erased]");
    assert_eq!(opened[0].payload["attachments"], json!([]));
    // A fresh node (no cache) agrees.
    let keys = crate::projector::read_model_pool(&format!("sqlite://{}/netia.db", _dir.path().display()), 2)
        .await
        .unwrap();
    let other = ShreddingStore::new(inner.clone(), keys, Sealer::new(&[9; 32]));
    assert_eq!(read(&other, &stream).await[0].payload["body"], "[erased]");
    // Written after the erasure: refused, and nothing of it is kept.
    let late = store
        .append(&stream, 1, vec![message("still here?", Some(SUBJECT))])
        .await;
    assert!(
        matches!(&late, Err(StoreError::SubjectErased(subject)) if subject == SUBJECT),
        "{late:?}"
    );
    let stored = read(inner.as_ref(), &stream).await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].payload.to_string().contains("still here"));
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_event_does_not_open() {
    let (_dir, inner, store) = stores().await;
    let stream = StreamRef::new("conversation", "c1");
    store
        .append(
            &stream,
            0,
            vec![message("first", Some(SUBJECT)), message("second", Some(SUBJECT))],
        )
        .await
        .unwrap();
    let mut stored = read(inner.as_ref(), &stream).await;
    let moved = stored[0].payload["body"].clone();
    stored[1].payload["body"] = moved;
    let moved_text = stored[1].payload["body"].clone();
    store.open(&mut stored[1]).await.unwrap();
    assert_eq!(
        stored[1].payload["body"], moved_text,
        "shown as stored, not as the first event's text"
    );
}

#[tokio::test]
async fn text_without_a_subject_or_that_only_looks_sealed_stays_as_it_is() {
    let (_dir, inner, store) = stores().await;
    let stream = StreamRef::new("conversation", "c1");
    let lookalike = "sealed:v1:not-a-uuid:abc";
    store
        .append(&stream, 0, vec![message(lookalike, None), message("plain", None)])
        .await
        .unwrap();
    let stored = read(inner.as_ref(), &stream).await;
    assert_eq!(stored[1].payload["body"], "plain", "no subject: not sealed");
    let opened = read(&store, &stream).await;
    assert_eq!(opened[0].payload["body"], lookalike);
    assert_eq!(opened[1].payload["body"], "plain");
}

#[tokio::test]
async fn another_secret_key_cannot_open_the_data_keys() {
    let (dir, inner, store) = stores().await;
    let stream = StreamRef::new("conversation", "c1");
    store
        .append(&stream, 0, vec![message("x", Some(SUBJECT))])
        .await
        .unwrap();
    let keys = crate::projector::read_model_pool(&format!("sqlite://{}/netia.db", dir.path().display()), 2)
        .await
        .unwrap();
    let wrong = ShreddingStore::new(inner, keys, Sealer::new(&[1; 32]));
    let refused = wrong.read_stream(&stream, StreamBound::All).await.unwrap_err();
    assert!(matches!(refused, StoreError::Keys(_)), "{refused}");
}
