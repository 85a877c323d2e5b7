//! The command bus against real stores: decisions, idempotency, conflicts and bounded retries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::TestDb;
use netia::command_bus::{CommandBus, CommandError};
use netia::store::{Backend, EventStore, LogMark, StoreError, StreamBound};
use netia_commands::{Conversation, ConversationCommand, ConversationError};
use netia_events::conversation::Author;
use netia_events::{
    AccountId, Actor, Checkpoint, ConversationId, CustomerId, MessageId, Metadata, NewEvent, RecordedEvent, StreamRef,
};
use serde_json::json;
use tokio::sync::watch;

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn meta() -> Metadata {
    Metadata::system("test")
}

async fn create(bus: &CommandBus, customer_id: CustomerId) -> ConversationId {
    let id = ConversationId::new();
    let cmd = common::open_conversation(id, AccountId::new(), customer_id, now());
    bus.execute::<Conversation>(id, cmd, &meta()).await.unwrap();
    id
}

fn message(customer_id: CustomerId, body: &str, client_message_id: Option<&str>) -> ConversationCommand {
    ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author: Author::Customer { customer_id },
        body: body.into(),
        format: netia_events::conversation::MessageFormat::Text,
        private: false,
        client_message_id: client_message_id.map(Into::into),
        attachments: Vec::new(),
        at: now(),
    }
}

/// Appends a foreign event to the stream just before each of the next `races` appends, and
/// counts the stream reads that reach the store.
struct RacingStore {
    inner: Arc<dyn EventStore>,
    races: AtomicU32,
    reads: AtomicU32,
}

#[async_trait]
impl EventStore for RacingStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn append(
        &self,
        stream: &StreamRef,
        expected: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.races.load(Ordering::SeqCst) > 0 {
            self.races.fetch_sub(1, Ordering::SeqCst);
            let version = self.inner.stream_version(stream).await?;
            let tag = format!("race-{}", uuid::Uuid::now_v7().simple());
            let foreign = NewEvent::new(
                "ConversationTagged",
                1,
                json!({"tag": tag}),
                json!({"actor": {"kind": "bot"}}),
            );
            self.inner.append(stream, version, vec![foreign]).await?;
        }
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream(stream, bound).await
    }
    fn log_mark(&self) -> Option<LogMark> {
        self.inner.log_mark()
    }
    async fn stream_since(
        &self,
        stream: &StreamRef,
        version: i64,
        mark: &LogMark,
    ) -> Result<Option<(Vec<RecordedEvent>, LogMark)>, StoreError> {
        self.inner.stream_since(stream, version, mark).await
    }
    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.read_event(event_id).await
    }
    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }
    async fn lag(&self, after: Checkpoint) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        self.inner.lag(after).await
    }
    fn wake(&self) -> watch::Receiver<u64> {
        self.inner.wake()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn streams(&self) -> Result<Vec<StreamRef>, StoreError> {
        self.inner.streams().await
    }
    fn chain(&self) -> &netia_events::chain::Chain {
        self.inner.chain()
    }
    async fn chain_marker(&self) -> Result<Option<String>, StoreError> {
        self.inner.chain_marker().await
    }
    async fn mark_keyed_if_empty(&self, key: &netia_events::chain::ChainKey) -> Result<bool, StoreError> {
        self.inner.mark_keyed_if_empty(key).await
    }
    fn stored(&self) -> &dyn EventStore {
        self
    }
    async fn rekey(
        &self,
        from: &netia_events::chain::Chain,
        to: &netia_events::chain::ChainKey,
        owner_url: Option<&str>,
    ) -> Result<netia::store::Rekeyed, StoreError> {
        self.inner.rekey(from, to, owner_url).await
    }
}

fn racing(db: &TestDb, races: u32) -> (CommandBus, Arc<RacingStore>) {
    let store = counting(db.store.clone());
    store.races.store(races, Ordering::SeqCst);
    (CommandBus::new(store.clone()).without_state_cache(), store)
}

/// `inner`, with its stream reads counted.
fn counting(inner: Arc<dyn EventStore>) -> Arc<RacingStore> {
    Arc::new(RacingStore {
        inner,
        races: AtomicU32::new(0),
        reads: AtomicU32::new(0),
    })
}

async fn a_commuting_command_is_decided_again_after_a_concurrent_append(db: &TestDb) {
    let (bus, store) = racing(db, 0);
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    store.races.store(1, Ordering::SeqCst);
    let done = bus
        .execute::<Conversation>(id, message(customer, "hi", None), &meta())
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
    assert_eq!(done.version, 3, "created, the racing tag, then our message");
    let (state, _) = bus.load::<Conversation>(id).await.unwrap();
    assert!(state.last_message_id.is_some() && state.tags.len() == 1);
}

async fn a_non_commuting_command_reports_the_conflict(db: &TestDb) {
    let (bus, store) = racing(db, 0);
    let id = create(&bus, CustomerId::new()).await;
    store.races.store(1, Ordering::SeqCst);
    let err = bus
        .execute::<Conversation>(id, ConversationCommand::Close { at: now() }, &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::Conflict { .. }), "{err:?}");
    let (state, version) = bus.load::<Conversation>(id).await.unwrap();
    assert_eq!(version, 2, "only the racing event was written");
    assert!(state.closed_at.is_none());
}

async fn retries_are_bounded(db: &TestDb) {
    let (bus, store) = racing(db, 0);
    let bus = bus.with_max_attempts(3);
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    store.races.store(u32::MAX, Ordering::SeqCst);
    let err = bus
        .execute::<Conversation>(id, message(customer, "hi", None), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::Conflict { .. }), "{err:?}");
    assert_eq!(
        db.store
            .stream_version(&StreamRef::new("conversation", id))
            .await
            .unwrap(),
        4,
        "3 racing tags"
    );
}

async fn concurrent_messages_to_one_conversation_all_land_once(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone()).with_max_attempts(200);
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let key = format!("{w}-{i}");
                    bus.execute::<Conversation>(id, message(customer, &key, Some(&key)), &meta())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let events = db
        .store
        .read_stream(&StreamRef::new("conversation", id), StreamBound::All)
        .await
        .unwrap();
    assert_eq!(events.len(), 81);
    assert!(events.iter().enumerate().all(|(i, e)| e.version == i as i64 + 1));
}

async fn a_repeated_client_message_id_appends_nothing(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    let first = bus
        .execute::<Conversation>(id, message(customer, "hi", Some("k1")), &meta())
        .await
        .unwrap();
    let again = bus
        .execute::<Conversation>(id, message(customer, "hi", Some("k1")), &meta())
        .await
        .unwrap();
    assert_eq!(first.events.len(), 1);
    assert!(again.events.is_empty());
    assert_eq!(again.version, 2);
}

async fn a_bot_reply_to_the_same_trigger_is_written_once(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    let trigger = bus
        .execute::<Conversation>(id, message(customer, "hello?", None), &meta())
        .await
        .unwrap();
    let trigger_event_id = trigger.events[0].event_id;
    let reply = || ConversationCommand::PostBotReply {
        message_id: MessageId::new(),
        body: "Hi! How can I help?".into(),
        trigger_event_id,
        reply_to: None,
        fallback: false,
        at: now(),
    };
    let bot = Metadata::new(Actor::Bot);
    let (a, b) = tokio::join!(
        bus.execute::<Conversation>(id, reply(), &bot),
        bus.execute::<Conversation>(id, reply(), &bot)
    );
    let written = a.unwrap().events.len() + b.unwrap().events.len();
    assert_eq!(written, 1, "two racing deliveries of one trigger produce one reply");
}

async fn domain_refusals_and_corrupt_history_are_typed(db: &TestDb) {
    let bus = CommandBus::new(db.store.clone());
    let missing = bus
        .execute::<Conversation>(ConversationId::new(), ConversationCommand::Close { at: now() }, &meta())
        .await
        .unwrap_err();
    assert!(matches!(missing, CommandError::Domain(ConversationError::NotFound)));
    let note = ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author: Author::Customer {
            customer_id: CustomerId::new(),
        },
        body: "secret".into(),
        format: netia_events::conversation::MessageFormat::Text,
        private: true,
        client_message_id: None,
        attachments: Vec::new(),
        at: now(),
    };
    let id = create(&bus, CustomerId::new()).await;
    let refused = bus.execute::<Conversation>(id, note, &meta()).await.unwrap_err();
    assert!(matches!(
        refused,
        CommandError::Domain(ConversationError::PrivateNoteByCustomer)
    ));

    // An event the code does not know is reported with its position, not a panic.
    let stream = StreamRef::new("conversation", id);
    let bogus = db
        .store
        .append(
            &stream,
            1,
            vec![NewEvent::new("ConversationTeleported", 1, json!({}), json!({}))],
        )
        .await
        .unwrap();
    let err = bus
        .execute::<Conversation>(id, ConversationCommand::Close { at: now() }, &meta())
        .await
        .unwrap_err();
    match err {
        CommandError::Corrupt(e) => assert_eq!(e.position, bogus[0].global_position),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

on_both_backends!(
    a_commuting_command_is_decided_again_after_a_concurrent_append,
    a_non_commuting_command_reports_the_conflict,
    retries_are_bounded,
    concurrent_messages_to_one_conversation_all_land_once,
    a_repeated_client_message_id_appends_nothing,
    a_bot_reply_to_the_same_trigger_is_written_once,
    domain_refusals_and_corrupt_history_are_typed,
);

/// Two buses (two nodes) on one log: each caches states, and each still decides on the whole
/// stream, including what the other appended since its cached version.
async fn cached_states_catch_up_with_other_writers(db: &TestDb) {
    let node_a = CommandBus::new(db.store.clone());
    let node_b = CommandBus::new(db.store.clone());
    let meta = netia_events::Metadata::system("test");
    let id = netia_events::ConversationId::new();
    let customer = netia_events::CustomerId::new();
    let open = common::open_conversation(id, netia_events::AccountId::new(), customer, Utc::now());
    node_a.execute::<Conversation>(id, open, &meta).await.unwrap();
    let author = Author::Customer { customer_id: customer };
    let first = common::message(author.clone(), "one", false, Some("k1"), Utc::now());
    assert_eq!(
        node_a.execute::<Conversation>(id, first, &meta).await.unwrap().version,
        2
    );
    // Node B writes; node A's cached state (version 2) does not know it yet.
    let second = common::message(author.clone(), "two", false, Some("k2"), Utc::now());
    assert_eq!(
        node_b.execute::<Conversation>(id, second, &meta).await.unwrap().version,
        3
    );
    // A repeat of B's key through A is recognised: A read the event it had not seen.
    let repeat = common::message(author.clone(), "two", false, Some("k2"), Utc::now());
    let executed = node_a.execute::<Conversation>(id, repeat, &meta).await.unwrap();
    assert!(executed.events.is_empty(), "deduplicated");
    assert_eq!(executed.version, 3);
    let third = common::message(author, "three", false, Some("k3"), Utc::now());
    assert_eq!(
        node_a.execute::<Conversation>(id, third, &meta).await.unwrap().version,
        4
    );
    let (state, version) = node_b.load::<Conversation>(id).await.unwrap();
    assert_eq!(version, 4);
    assert_eq!(state.client_message_ids.len(), 3);
    // B closes. A's cache still says open: A's reopen must not be taken for a no-op, and A's own
    // close after B's must not close twice.
    node_b
        .execute::<Conversation>(id, ConversationCommand::Close { at: Utc::now() }, &meta)
        .await
        .unwrap();
    let close_again = node_a
        .execute::<Conversation>(id, ConversationCommand::Close { at: Utc::now() }, &meta)
        .await
        .unwrap();
    assert!(
        close_again.events.is_empty() && close_again.version == 5,
        "{close_again:?}"
    );
    node_b
        .execute::<Conversation>(id, ConversationCommand::Reopen { at: Utc::now() }, &meta)
        .await
        .unwrap();
    node_b
        .execute::<Conversation>(id, ConversationCommand::Close { at: Utc::now() }, &meta)
        .await
        .unwrap();
    let reopened = node_a
        .execute::<Conversation>(id, ConversationCommand::Reopen { at: Utc::now() }, &meta)
        .await
        .unwrap();
    assert_eq!((reopened.events.len(), reopened.version), (1, 8), "{reopened:?}");
}

/// Whether `state` has seen a message with client message id `key` (from any author).
fn holds_key(state: &Conversation, key: &str) -> bool {
    let suffix = format!(":{key}");
    state.client_message_ids.iter().any(|held| held.ends_with(&suffix))
}

/// A load after this process's own appends (through any bus of it) is answered from memory; once
/// the state was last confirmed by the database 200 ms ago or more, the stream is read again.
async fn loads_after_this_process_s_appends_need_no_read(db: &TestDb) {
    let store = counting(db.store.clone());
    let (bus, consumer) = (CommandBus::new(store.clone()), CommandBus::new(store.clone()));
    let customer = CustomerId::new();
    let id = create(&bus, customer).await;
    bus.execute::<Conversation>(id, message(customer, "one", None), &meta())
        .await
        .unwrap();
    assert_eq!(consumer.load::<Conversation>(id).await.unwrap().1, 2);
    let reads = store.reads.load(Ordering::SeqCst);
    // The consumer appends; the first bus's cached state is behind it.
    consumer
        .execute::<Conversation>(id, message(customer, "two", Some("k2")), &meta())
        .await
        .unwrap();
    let (state, version) = bus.load::<Conversation>(id).await.unwrap();
    assert_eq!(version, 3);
    assert!(holds_key(&state, "k2"), "{:?}", state.client_message_ids);
    assert_eq!(consumer.load::<Conversation>(id).await.unwrap().1, 3);
    assert_eq!(store.reads.load(Ordering::SeqCst), reads, "answered from memory");
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(bus.load::<Conversation>(id).await.unwrap().1, 3);
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        reads + 1,
        "confirmed again by the database"
    );
    assert_eq!(bus.load::<Conversation>(id).await.unwrap().1, 3);
    assert_eq!(store.reads.load(Ordering::SeqCst), reads + 1);
}

mod cache {
    use super::*;
    on_both_backends!(
        cached_states_catch_up_with_other_writers,
        loads_after_this_process_s_appends_need_no_read
    );

    /// Another node's append is seen once its NOTIFY arrives: memory no longer answers, the stream
    /// is read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn another_node_s_append_is_read_once_its_notify_arrives() {
        let Some(db) = TestDb::postgres().await else { return };
        let store = counting(db.store.clone());
        let bus = CommandBus::new(store.clone());
        let other_node = CommandBus::new(netia::store::connect(&db.url, 2).await.unwrap());
        let customer = CustomerId::new();
        let id = create(&bus, customer).await;
        assert_eq!(bus.load::<Conversation>(id).await.unwrap().1, 1);
        let reads = store.reads.load(Ordering::SeqCst);
        other_node
            .execute::<Conversation>(id, message(customer, "from b", Some("b")), &meta())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (state, version) = bus.load::<Conversation>(id).await.unwrap();
            if version == 2 {
                assert!(holds_key(&state, "b"));
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the other node's append never seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(store.reads.load(Ordering::SeqCst) > reads, "read from the database");
        db.cleanup().await;
    }
}
