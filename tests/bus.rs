//! The bus against real RabbitMQ and real databases: the relay publishing again after a crash, a
//! RabbitMQ outage while messages are posted, a poison event parked while the queue keeps flowing,
//! and the embedded (no RabbitMQ) runtime with the same rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::TestDb;
use common::proxy::TcpProxy;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use netia::bus::{self, Consumer, Failure, RetryPolicy, amqp, relay};
use netia::command_bus::CommandBus;
use netia_commands::Conversation;
use netia_events::conversation::Author;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata, RecordedEvent};
use sqlx::AnyPool;
use tokio::sync::watch;
use uuid::Uuid;

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Counts its effects per event of the conversations it watches; fails for ever on bodies "poison".
struct Recorder {
    name: &'static str,
    watched: Mutex<HashSet<String>>,
    effects: Mutex<HashMap<Uuid, u32>>,
    attempts: Mutex<HashMap<Uuid, u32>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        let name = format!("test_{}", Uuid::now_v7().simple());
        Arc::new(Self {
            name: Box::leak(name.into_boxed_str()),
            watched: Mutex::new(HashSet::new()),
            effects: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    fn watch(&self, conversation: ConversationId) {
        self.watched.lock().unwrap().insert(conversation.to_string());
    }

    fn effects(&self) -> HashMap<Uuid, u32> {
        self.effects.lock().unwrap().clone()
    }

    /// Waits until `n` events had an effect (or 60 s).
    async fn until(&self, n: usize) -> HashMap<Uuid, u32> {
        for _ in 0..1200 {
            if self.effects().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A duplicate arriving late would show here.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.effects()
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn bindings(&self) -> Vec<String> {
        vec!["conversation.#".into()]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        if !self.watched.lock().unwrap().contains(&event.stream_id) {
            return Ok(()); // another test's event
        }
        *self.attempts.lock().unwrap().entry(event.event_id).or_default() += 1;
        if event.payload.get("body").and_then(|b| b.as_str()) == Some("poison") {
            return Err(Failure::Retry("poison".into()));
        }
        *self.effects.lock().unwrap().entry(event.event_id).or_default() += 1;
        Ok(())
    }
}

async fn read_models(db: &TestDb) -> AnyPool {
    let pool = netia::projector::read_model_pool(&db.url, 5).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    netia_projections::Checkpoints::setup(&mut conn).await.unwrap();
    pool
}

/// A conversation with `bodies` posted by its customer; returns it and the ids of its events.
async fn converse(store: &Arc<dyn netia::store::EventStore>, recorder: &Recorder, bodies: &[&str]) -> ConversationId {
    let bus = CommandBus::new(store.clone());
    let (id, account, customer) = (ConversationId::new(), AccountId::new(), CustomerId::new());
    recorder.watch(id);
    let meta = Metadata::new(Actor::Customer { customer_id: customer }).with_account(account);
    let now = chrono::Utc::now();
    bus.execute::<Conversation>(id, common::open_conversation(id, account, customer, now), &meta)
        .await
        .unwrap();
    for body in bodies {
        let command = common::message(Author::Customer { customer_id: customer }, body, false, None, now);
        bus.execute::<Conversation>(id, command, &meta).await.unwrap();
    }
    id
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base: Duration::from_millis(50),
        prefetch: 16,
        concurrency: 8,
    }
}

/// The value of one series in this process' metrics (0 when absent).
fn counted(series: &str) -> f64 {
    netia::telemetry::recorder::render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Starts `recorder` on RabbitMQ at `url` and waits until its queue exists.
async fn listen(url: &str, pool: &AnyPool, recorder: &Arc<Recorder>, policy: RetryPolicy, stop: &watch::Sender<bool>) {
    netia::telemetry::recorder::handle(); // counts from now on
    let consumer: Arc<dyn Consumer> = recorder.clone();
    tokio::spawn(amqp::run(
        url.to_owned(),
        recorder.name.to_owned(),
        pool.clone(),
        consumer,
        policy,
        stop.subscribe(),
    ));
    let (connection, _) = relay::open(&amqp_url()).await.unwrap();
    for _ in 0..200 {
        // A passive declare of a missing queue closes its channel: a new one each time.
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let found = channel
            .queue_declare(
                amqp::queue(recorder.name, recorder.name).into(),
                passive,
                FieldTable::default(),
            )
            .await;
        if found.is_ok() {
            // Declared; give the consumer a moment to start consuming.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the consumer's queue was never declared");
}

/// Deletes the test consumer's queues (durable: they would outlive the test).
async fn delete_queues(name: &str, policy: &RetryPolicy) {
    let (_conn, channel) = relay::open(&amqp_url()).await.unwrap();
    let mut queues = vec![amqp::queue(name, name), amqp::parked_queue(name, name)];
    queues.extend((1..policy.max_attempts.max(2)).map(|a| amqp::retry_queue(name, name, policy.backoff(a))));
    for queue in queues {
        let _ = channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    }
}

async fn parked_count(name: &str) -> u32 {
    let (_conn, channel) = relay::open(&amqp_url()).await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(amqp::parked_queue(name, name).into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_a_relay_that_dies_before_its_checkpoint_publishes_again_and_the_effect_happens_once() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let recorder = Recorder::new();
    let policy = fast_policy(3);
    listen(&amqp_url(), &pool, &recorder, policy, &stop).await;

    let start = bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap();
    converse(&db.store, &recorder, &["one", "two", "three", "four", "five"]).await;
    // The first relay publishes the six events, has them confirmed, and dies before its checkpoint.
    let mut tailer = netia::tail::Tailer::new(db.store.clone(), start);
    let mut events = Vec::new();
    while events.len() < 6 {
        events.extend(tailer.next_batch().await.unwrap());
    }
    let (connection, channel) = relay::open(&amqp_url()).await.unwrap();
    relay::publish(&channel, recorder.name, &events).await.unwrap();
    connection.close(200, "crash".into()).await.unwrap();

    // The next relay starts from the stored checkpoint and publishes them again.
    let next = relay::Relay::new(db.store.clone(), pool.clone(), amqp_url()).with_prefix(recorder.name);
    tokio::spawn(next.run(stop.subscribe()));
    let effects = recorder.until(6).await;
    assert_eq!(effects.len(), 6, "{effects:?}");
    assert!(
        effects.values().all(|n| *n == 1),
        "an effect happened twice: {effects:?}"
    );
    let duplicates = format!("netia_consumer_duplicates_total{{consumer=\"{}\"}}", recorder.name);
    for _ in 0..100 {
        if counted(&duplicates) >= 6.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted(&duplicates) >= 6.0, "the repeats were not delivered");
    let _ = stop.send(true);
    delete_queues(recorder.name, &policy).await;
    db.cleanup().await;
}

/// A proxy to RabbitMQ that the test can cut.
fn amqp_through(proxy: &TcpProxy) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_500_messages_posted_during_an_outage_all_arrive_once() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let recorder = Recorder::new();
    let policy = fast_policy(3);
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    listen(&amqp_through(&proxy), &pool, &recorder, policy, &stop).await;
    let topology: Vec<Arc<dyn Consumer>> = vec![recorder.clone()];
    let relay = relay::Relay::new(db.store.clone(), pool.clone(), amqp_through(&proxy))
        .with_prefix(recorder.name)
        .with_topology(topology, policy);
    tokio::spawn(relay.run(stop.subscribe()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.cut();
    let bodies: Vec<String> = (0..500).map(|i| format!("message {i}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    // Posting does not depend on RabbitMQ: every write is accepted during the outage.
    converse(&db.store, &recorder, &bodies).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        recorder.effects().is_empty(),
        "nothing can arrive while RabbitMQ is cut off"
    );
    proxy.restore();

    let effects = recorder.until(501).await;
    assert_eq!(effects.len(), 501, "the creation and the 500 messages");
    assert!(effects.values().all(|n| *n == 1), "an effect happened twice");
    let _ = stop.send(true);
    delete_queues(recorder.name, &policy).await;
    db.cleanup().await;
}

/// A relay that runs while no consumer has declared its queue yet (the node started with RabbitMQ
/// down, and the consumers have not reconnected) declares the queues itself before publishing: the
/// events wait there, and the consumer gets every one when it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_events_relayed_before_any_consumer_listens_are_not_lost() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let recorder = Recorder::new();
    let policy = fast_policy(3);
    let topology: Vec<Arc<dyn Consumer>> = vec![recorder.clone()];
    let relay = relay::Relay::new(db.store.clone(), pool.clone(), amqp_url())
        .with_prefix(recorder.name)
        .with_topology(topology, policy);
    bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap(); // as the server does at start
    tokio::spawn(relay.run(stop.subscribe()));
    converse(&db.store, &recorder, &["one", "two", "three"]).await;
    // The relay has published them all (its checkpoint is at the head) before anyone listens.
    let head = db.store.head().await.unwrap();
    for _ in 0..200 {
        if bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap() >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap() >= head,
        "the relay did not catch up"
    );
    listen(&amqp_url(), &pool, &recorder, policy, &stop).await;
    let effects = recorder.until(4).await;
    assert_eq!(effects.len(), 4, "the creation and three messages: {effects:?}");
    let _ = stop.send(true);
    delete_queues(recorder.name, &policy).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_a_poison_event_is_parked_after_its_attempts_and_the_queue_keeps_flowing() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let recorder = Recorder::new();
    // An earlier node ran with another BUS_RETRY_BASE_MS: its retry queues exist with other TTLs,
    // and this node's consumer must still start (no 406) and retry through its own.
    let earlier = RetryPolicy {
        base: Duration::from_millis(30),
        ..fast_policy(3)
    };
    {
        let (_conn, channel) = relay::open(&amqp_url()).await.unwrap();
        let consumer: Arc<dyn Consumer> = recorder.clone();
        amqp::declare(&channel, recorder.name, consumer.as_ref(), &earlier)
            .await
            .unwrap();
    }
    let policy = fast_policy(3);
    listen(&amqp_url(), &pool, &recorder, policy, &stop).await;
    let topology: Vec<Arc<dyn Consumer>> = vec![recorder.clone()];
    let relay = relay::Relay::new(db.store.clone(), pool.clone(), amqp_url())
        .with_prefix(recorder.name)
        .with_topology(topology, policy);
    tokio::spawn(relay.run(stop.subscribe()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    converse(&db.store, &recorder, &["before", "poison", "after"]).await;
    let effects = recorder.until(3).await;
    assert_eq!(effects.len(), 3, "creation, before and after are handled: {effects:?}");
    assert_parked(&pool, recorder.name, 3).await;
    let poison_attempts: Vec<u32> = recorder
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| !effects.contains_key(id))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(poison_attempts, [3], "the poison event is tried three times");
    assert_eq!(parked_count(recorder.name).await, 1, "the parking queue holds it");
    let _ = stop.send(true);
    delete_queues(recorder.name, &policy).await;
    delete_queues(recorder.name, &earlier).await;
    db.cleanup().await;
}

/// One parked event for `consumer`, after `attempts` attempts.
async fn assert_parked(pool: &AnyPool, consumer: &str, attempts: i64) {
    let mut rows: Vec<(String, i64)> = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as("SELECT event_id, attempts FROM consumer_parked WHERE consumer = $1")
            .bind(consumer)
            .fetch_all(pool)
            .await
            .unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_embedded_consumers_retry_park_and_resume_without_repeating() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let pool = read_models(&db).await;
    let recorder = Recorder::new();
    let policy = fast_policy(3);
    let start = |stop: &watch::Sender<bool>| {
        let embedded = bus::embedded::Embedded {
            store: db.store.clone(),
            db: pool.clone(),
            policy,
        };
        let consumer: Arc<dyn Consumer> = recorder.clone();
        tokio::spawn(embedded.run(consumer, stop.subscribe()))
    };
    let (stop, _) = watch::channel(false);
    let running = start(&stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    converse(&db.store, &recorder, &["before", "poison", "after"]).await;
    let effects = recorder.until(3).await;
    assert_eq!(effects.len(), 3, "{effects:?}");
    assert_parked(&pool, recorder.name, 3).await;

    // Stopped and started again: what was handled is not handled again; new events are.
    let _ = stop.send(true);
    running.await.unwrap();
    let (stop, _) = watch::channel(false);
    start(&stop);
    let id = converse(&db.store, &recorder, &["later"]).await;
    let effects = recorder.until(5).await;
    assert_eq!(
        effects.len(),
        5,
        "a second conversation's creation and message: {effects:?} ({id})"
    );
    assert!(
        effects.values().all(|n| *n == 1),
        "an effect happened twice: {effects:?}"
    );
    let _ = stop.send(true);
    db.cleanup().await;
}

/// Bound to conversation events but concerned by none of them (as the outbound webhooks are
/// when no subscription wants them): every one is an event it passes over. Counts its handlings.
struct Unconcerned(&'static str, std::sync::atomic::AtomicU32);

#[async_trait]
impl Consumer for Unconcerned {
    fn name(&self) -> &'static str {
        self.0
    }

    fn bindings(&self) -> Vec<String> {
        vec!["conversation.#".into()]
    }

    async fn concerns(&self, _event: &RecordedEvent) -> bool {
        false
    }

    async fn handle(&self, _event: &RecordedEvent) -> Result<(), Failure> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Under a stream of events a consumer does not want, its checkpoint moves at most about once a
/// second (a transaction each), not once per event; and once the stream stops, it reaches the end
/// of the log anyway, within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_embedded_consumers_move_past_unwanted_events_about_once_a_second() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let pool = read_models(&db).await;
    let name = format!("test_{}", Uuid::now_v7().simple());
    let name: &'static str = Box::leak(name.into_boxed_str());
    let checkpoint_name = format!("consumer:{name}");
    let embedded = bus::embedded::Embedded {
        store: db.store.clone(),
        db: pool.clone(),
        policy: fast_policy(3),
    };
    let (stop, _) = watch::channel(false);
    let consumer = Arc::new(Unconcerned(name, Default::default()));
    let running = tokio::spawn(embedded.run(consumer.clone(), stop.subscribe()));
    let position = || async {
        let mut conn = pool.acquire().await.unwrap();
        netia_projections::Checkpoints::find(&mut conn, &checkpoint_name)
            .await
            .unwrap()
    };
    // Started (at the head), and moved once past the events written meanwhile.
    for _ in 0..100 {
        if position().await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(position().await.is_some(), "the consumer never started");

    // 2 s of conversation events, one every ~40 ms, each its own batch; the checkpoint watched
    // every 10 ms meanwhile.
    let writing = {
        let store = db.store.clone();
        tokio::spawn(async move {
            let bus = CommandBus::new(store);
            let (id, account, customer) = (ConversationId::new(), AccountId::new(), CustomerId::new());
            let meta = Metadata::new(Actor::Customer { customer_id: customer }).with_account(account);
            let now = chrono::Utc::now();
            bus.execute::<Conversation>(id, common::open_conversation(id, account, customer, now), &meta)
                .await
                .unwrap();
            for i in 0..50 {
                let body = format!("message {i}");
                let command = common::message(Author::Customer { customer_id: customer }, &body, false, None, now);
                bus.execute::<Conversation>(id, command, &meta).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut seen = HashSet::new();
    while !writing.is_finished() {
        seen.insert(position().await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writing.await.unwrap();
    assert!(
        seen.len() <= 5,
        "the checkpoint moved {} times in ~2 s of unwanted events: {seen:?}",
        seen.len()
    );

    // Nothing more comes: the held-back move is made all the same.
    let head = db.store.head().await.unwrap();
    let mut reached = false;
    for _ in 0..150 {
        if position().await == Some(head) {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reached,
        "the checkpoint stayed at {:?}, the log ends at {head:?}",
        position().await
    );
    assert_eq!(
        consumer.1.load(Ordering::SeqCst),
        0,
        "handled an event it is not concerned by"
    );
    let _ = stop.send(true);
    running.await.unwrap();
    db.cleanup().await;
}

/// Counts its calls; takes 300 ms; fails while `failures` is above zero.
struct Slow {
    calls: std::sync::atomic::AtomicU32,
    failures: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Consumer for Slow {
    fn name(&self) -> &'static str {
        "test_slow"
    }

    fn bindings(&self) -> Vec<String> {
        vec!["#".into()]
    }

    async fn handle(&self, _event: &RecordedEvent) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            Err(Failure::Retry("not yet".into()))
        } else {
            Ok(())
        }
    }
}

/// Claim before act: two copies of one event delivered at once have one effect (the other is told
/// to look again, then finds it done); a failed attempt releases its claim; a claim whose holder
/// died is taken over once its time is up.
async fn two_copies_of_an_event_at_once_have_one_effect(db: &TestDb) {
    let pool = read_models(db).await;
    let recorder = Recorder::new();
    converse(&db.store, &recorder, &["a", "b", "c"]).await;
    let events = db
        .store
        .read_all(netia_events::Checkpoint::default(), 10)
        .await
        .unwrap();
    let policy = fast_policy(3);
    let slow = Slow {
        calls: 0.into(),
        failures: 0.into(),
    };
    let event = &events[0];
    let (one, two) = tokio::join!(
        bus::process(&pool, &slow, event, 1, &policy),
        bus::process(&pool, &slow, event, 1, &policy)
    );
    let mut outcomes = [one.unwrap(), two.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, bus::Outcome::Busy(_)));
    assert!(
        matches!(outcomes, [bus::Outcome::Handled, bus::Outcome::Busy(_)]),
        "{outcomes:?}"
    );
    assert_eq!(slow.calls.load(Ordering::SeqCst), 1, "one effect");
    assert_eq!(
        bus::process(&pool, &slow, event, 1, &policy).await.unwrap(),
        bus::Outcome::Duplicate
    );

    // A failure lets the retry claim it.
    slow.failures.store(1, Ordering::SeqCst);
    let event = &events[1];
    assert!(matches!(
        bus::process(&pool, &slow, event, 1, &policy).await.unwrap(),
        bus::Outcome::RetryAfter(_)
    ));
    assert_eq!(
        bus::process(&pool, &slow, event, 2, &policy).await.unwrap(),
        bus::Outcome::Handled
    );

    // A holder that died mid-effect: its claim ran out a second ago.
    let event = &events[2];
    let past = netia_events::chain::format_time(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
    sqlx::query(
        "INSERT INTO consumer_processed (consumer, event_id, processed_at, state, claimed_until) \
         VALUES ('test_slow', $1, $2, 'claimed', $2)",
    )
    .bind(event.event_id.to_string())
    .bind(&past)
    .execute(&pool)
    .await
    .unwrap();
    let calls = slow.calls.load(Ordering::SeqCst);
    assert_eq!(
        bus::process(&pool, &slow, event, 1, &policy).await.unwrap(),
        bus::Outcome::Handled
    );
    assert_eq!(slow.calls.load(Ordering::SeqCst), calls + 1);
}

mod claims {
    use super::*;
    on_both_backends!(two_copies_of_an_event_at_once_have_one_effect);
}

/// Records when it handles each event of the watched conversations; takes 150 ms an event.
struct Ordered {
    watch: Arc<Recorder>,
    handled: Mutex<Vec<(String, i64, std::time::Instant, std::time::Instant)>>,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Consumer for Ordered {
    fn name(&self) -> &'static str {
        self.watch.name
    }

    fn bindings(&self) -> Vec<String> {
        vec!["conversation.#".into()]
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        if !self.watch.watched.lock().unwrap().contains(&event.stream_id) {
            return Ok(());
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let entry = (
            event.stream_id.clone(),
            event.version,
            started,
            std::time::Instant::now(),
        );
        self.handled.lock().unwrap().push(entry);
        Ok(())
    }
}

/// Concurrent consumers, ordered per conversation: with BUS_CONCURRENCY 8, four conversations'
/// events are handled side by side, while each conversation's are handled one at a time, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_consumers_handle_conversations_side_by_side_and_each_in_order() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let ordered = Arc::new(Ordered {
        watch: Recorder::new(),
        handled: Mutex::new(Vec::new()),
        running: 0.into(),
        peak: 0.into(),
    });
    let policy = fast_policy(3);
    let consumer: Arc<dyn Consumer> = ordered.clone();
    let relay = relay::Relay::new(db.store.clone(), pool.clone(), amqp_url())
        .with_prefix(ordered.watch.name)
        .with_topology(vec![consumer.clone()], policy);
    bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..4 {
        converse(&db.store, &ordered.watch, &["one", "two", "three"]).await;
    }
    // Queued before the consumer starts, so that it has all sixteen to choose from.
    tokio::spawn(relay.run(stop.subscribe()));
    let head = db.store.head().await.unwrap();
    while bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap() < head {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::spawn(amqp::run(
        amqp_url(),
        ordered.watch.name.to_owned(),
        pool.clone(),
        consumer,
        policy,
        stop.subscribe(),
    ));
    for _ in 0..400 {
        if ordered.handled.lock().unwrap().len() >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let handled = ordered.handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 16, "four conversations of four events");
    let mut by_stream: HashMap<String, Vec<(i64, std::time::Instant, std::time::Instant)>> = HashMap::new();
    for (stream, version, from, to) in handled {
        by_stream.entry(stream).or_default().push((version, from, to));
    }
    for (stream, events) in &by_stream {
        // `handled` is in order of finishing: versions must rise, each starting after the last ended.
        assert!(
            events.windows(2).all(|w| w[0].0 < w[1].0 && w[1].1 >= w[0].2),
            "{stream} handled out of order or overlapping: {events:?}"
        );
    }
    let peak = ordered.peak.load(Ordering::SeqCst);
    assert!(peak >= 2, "conversations were handled one at a time (peak {peak})");
    eprintln!(
        "16 events of 4 conversations at 150 ms each: peak {peak} at once, {:?} in all",
        started.elapsed()
    );
    let _ = stop.send(true);
    delete_queues(ordered.watch.name, &policy).await;
    db.cleanup().await;
}

/// A lease whose database session is terminated (a failover, an operator, a proxy's idle timeout)
/// is known lost within two seconds, and another node then takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_lease_whose_session_is_terminated_is_lost_within_two_seconds() {
    use netia::lease;
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let name = format!("test-lease-{}", Uuid::now_v7().simple());
    let held = lease::acquire(&pool, netia::store::Backend::Postgres, &name).await;
    assert!(!held.is_lost());
    // Another node waits for it meanwhile.
    let (other_pool, other_name) = (pool.clone(), name.clone());
    let waiter = tokio::spawn(async move {
        let lease = lease::acquire(&other_pool, netia::store::Backend::Postgres, &other_name).await;
        (std::time::Instant::now(), lease)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "one holder at a time");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(lease::lock_key(&name))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the lease's session");
    let cut = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("the holder learns it lost the lease");
    let noticed = cut.elapsed();
    assert!(noticed <= Duration::from_millis(2500), "lost after {noticed:?}");
    let (taken_at, taken) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(!taken.is_lost());
    eprintln!(
        "lease lost noticed after {noticed:?}; taken over after {:?}",
        taken_at - cut
    );
    db.cleanup().await;
}

/// Two deployments on one vhost: a relay publishing under one prefix never reaches a consumer of
/// the same name under another; and an event that this deployment's log does not hold (a leftover
/// message of another database) is parked, never acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_deployments_sharing_a_vhost_never_consume_each_others_events() {
    let Some(db) = TestDb::postgres().await else { return };
    let pool = read_models(&db).await;
    let (stop, _) = watch::channel(false);
    let recorder = Recorder::new();
    let policy = fast_policy(3);
    let (ours, theirs) = (format!("ours_{}", recorder.name), format!("theirs_{}", recorder.name));
    let consumer: Arc<dyn Consumer> = recorder.clone();
    // Their deployment's consumer, with the same name, is listening; ours is not yet.
    let theirs_stop = stop.subscribe();
    tokio::spawn(amqp::run(
        amqp_url(),
        theirs.clone(),
        pool.clone(),
        consumer.clone(),
        policy,
        theirs_stop,
    ));
    let relay = relay::Relay::new(db.store.clone(), pool.clone(), amqp_url())
        .with_prefix(&ours)
        .with_topology(vec![consumer.clone()], policy);
    bus::start_at(&pool, db.store.as_ref(), relay::NAME).await.unwrap();
    tokio::spawn(relay.run(stop.subscribe()));
    converse(&db.store, &recorder, &["one", "two"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(recorder.effects().is_empty(), "their consumer took our events");
    tokio::spawn(amqp::run(
        amqp_url(),
        ours.clone(),
        pool.clone(),
        consumer.clone(),
        policy,
        stop.subscribe(),
    ));
    assert_eq!(recorder.until(3).await.len(), 3, "ours gets them all");

    // A message of another database on our exchange: parked, not handled.
    let foreign = {
        let mut tailer = netia::tail::Tailer::new(db.store.clone(), netia_events::Checkpoint::default());
        let mut event = tailer.next_batch().await.unwrap().remove(0);
        event.event_id = Uuid::now_v7();
        event.stream_id = ConversationId::new().to_string();
        recorder.watched.lock().unwrap().insert(event.stream_id.clone());
        event
    };
    let (_conn, channel) = relay::open(&amqp_url()).await.unwrap();
    relay::publish(&channel, &ours, std::slice::from_ref(&foreign))
        .await
        .unwrap();
    let mut parked = None;
    for _ in 0..100 {
        parked = netia::bus::parked::get(&pool, recorder.name, foreign.event_id)
            .await
            .unwrap();
        if parked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked = parked.expect("the foreign event is parked");
    assert!(
        parked.error.contains("not in this deployment's log"),
        "{}",
        parked.error
    );
    assert!(
        !recorder.attempts.lock().unwrap().contains_key(&foreign.event_id),
        "never handled"
    );
    let _ = stop.send(true);
    for prefix in [&ours, &theirs] {
        let mut queues = vec![
            amqp::queue(prefix, recorder.name),
            amqp::parked_queue(prefix, recorder.name),
        ];
        queues.extend((1..3).map(|a| amqp::retry_queue(prefix, recorder.name, policy.backoff(a))));
        for queue in queues {
            let _ = channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
        }
    }
    db.cleanup().await;
}
