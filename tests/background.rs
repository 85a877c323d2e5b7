//! Background work: the scheduler (snooze wake-ups, the hourly archive caught up once after downtime,
//! delayed jobs with retries) and reply emails over a real SMTP listener on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use common::TestDb;
use common::smtp::{Smtp, header};
use netia::command_bus::CommandBus;
use netia::email::{EmailSettings, ReplyEmailJob};
use netia::projector::Projector;
use netia::scheduler::{JobError, JobHandler, MAX_JOB_ATTEMPTS, Scheduler, schedule};
use netia::store::StreamBound;
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::Author;
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata, StreamRef};
use serde_json::{Value, json};
use sqlx::AnyPool;

async fn read_models(db: &TestDb) -> AnyPool {
    let pool = netia::projector::read_model_pool(&db.url, 5).await.unwrap();
    for projection in netia::projector::projections() {
        Projector::new(db.store.clone(), pool.clone(), projection)
            .setup()
            .await
            .unwrap();
    }
    pool
}

async fn catch_up(db: &TestDb, pool: &AnyPool) {
    for projection in netia::projector::projections() {
        Projector::new(db.store.clone(), pool.clone(), projection)
            .catch_up()
            .await
            .unwrap();
    }
}

fn system() -> Metadata {
    Metadata::new(Actor::System {
        component: "test".into(),
    })
}

async fn status(db: &TestDb, id: ConversationId) -> Conversation {
    CommandBus::new(db.store.clone())
        .load::<Conversation>(id)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn sqlite_the_scheduler_wakes_snoozed_conversations_and_archives_old_closed_ones_once_per_hour() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let pool = read_models(&db).await;
    let bus = CommandBus::new(db.store.clone());
    let now = Utc::now();
    let (account, customer) = (AccountId::new(), CustomerId::new());
    let snoozed = ConversationId::new();
    bus.execute::<Conversation>(
        snoozed,
        common::open_conversation(snoozed, account, customer, now),
        &system(),
    )
    .await
    .unwrap();
    let until = now + TimeDelta::minutes(5);
    bus.execute::<Conversation>(snoozed, ConversationCommand::Snooze { until, at: now }, &system())
        .await
        .unwrap();
    let old = ConversationId::new();
    let long_ago = now - TimeDelta::days(20);
    bus.execute::<Conversation>(
        old,
        common::open_conversation(old, account, customer, long_ago),
        &system(),
    )
    .await
    .unwrap();
    bus.execute::<Conversation>(old, ConversationCommand::Close { at: long_ago }, &system())
        .await
        .unwrap();
    let recent = ConversationId::new();
    bus.execute::<Conversation>(
        recent,
        common::open_conversation(recent, account, customer, long_ago),
        &system(),
    )
    .await
    .unwrap();
    bus.execute::<Conversation>(
        recent,
        ConversationCommand::Close {
            at: now - TimeDelta::days(2),
        },
        &system(),
    )
    .await
    .unwrap();
    catch_up(&db, &pool).await;

    let scheduler = Scheduler {
        store: db.store.clone(),
        db: pool.clone(),
        handlers: Vec::new(),
    };
    scheduler.tick(now).await.unwrap();
    assert!(
        matches!(
            status(&db, snoozed).await.status,
            netia_commands::conversation::Status::Snoozed { .. }
        ),
        "not due yet"
    );
    assert!(status(&db, old).await.archived, "closed 20 days ago: archived");
    assert!(!status(&db, recent).await.archived, "closed 2 days ago: kept");

    scheduler.tick(until + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(
        status(&db, snoozed).await.status,
        netia_commands::conversation::Status::Open
    );

    // The hourly archive: not again within the hour; once (not five times) after five hours down.
    let runs = || async {
        sqlx::query_scalar::<_, String>("SELECT last_run_at FROM scheduler_runs WHERE job = 'archive'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let first = runs().await;
    scheduler.tick(now + TimeDelta::minutes(10)).await.unwrap();
    assert_eq!(runs().await, first);
    let later = now + TimeDelta::hours(5);
    scheduler.tick(later).await.unwrap();
    assert_eq!(runs().await, netia_events::chain::format_time(later));
    db.cleanup().await;
}

/// Counts its runs; fails the first `failures` of them.
struct Counting {
    runs: AtomicU32,
    failures: u32,
}

#[async_trait]
impl JobHandler for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }

    async fn run(&self, _payload: &Value) -> Result<(), JobError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.failures {
            Err(JobError::Handler(format!("failure {n}").into()))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn sqlite_delayed_jobs_run_once_when_due_and_failures_are_retried_then_given_up() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let pool = read_models(&db).await;
    let now = Utc::now();
    let flaky = Arc::new(Counting {
        runs: AtomicU32::new(0),
        failures: 1,
    });
    let scheduler = Scheduler {
        store: db.store.clone(),
        db: pool.clone(),
        handlers: vec![flaky.clone()],
    };
    let due = now + TimeDelta::minutes(1);
    schedule(&pool, "job-1", "counting", &json!({}), due).await.unwrap();
    schedule(&pool, "job-1", "counting", &json!({}), now).await.unwrap(); // same id: ignored
    scheduler.tick(now).await.unwrap();
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 0, "not due yet");
    scheduler.tick(due).await.unwrap();
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 1, "ran, and failed");
    scheduler.tick(due).await.unwrap();
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 1, "retried only after its backoff");
    scheduler.tick(due + TimeDelta::hours(1)).await.unwrap();
    scheduler.tick(due + TimeDelta::hours(2)).await.unwrap();
    assert_eq!(
        flaky.runs.load(Ordering::SeqCst),
        2,
        "succeeded on the retry, then never again"
    );

    // A job that always fails is given up after MAX_JOB_ATTEMPTS, with its error kept.
    let broken = Arc::new(Counting {
        runs: AtomicU32::new(0),
        failures: u32::MAX,
    });
    let scheduler = Scheduler {
        store: db.store.clone(),
        db: pool.clone(),
        handlers: vec![broken.clone()],
    };
    schedule(&pool, "job-2", "counting", &json!({}), now).await.unwrap();
    for day in 0..30 {
        scheduler.tick(now + TimeDelta::days(day)).await.unwrap();
    }
    assert_eq!(i64::from(broken.runs.load(Ordering::SeqCst)), MAX_JOB_ATTEMPTS);
    let (error, done): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT error, done_at FROM scheduled_jobs WHERE id = 'job-2'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(error.unwrap().starts_with("failure") && done.is_some());
    db.cleanup().await;
}

/// A customer with an email address, in a new conversation of `account`: (customer, conversation).
async fn customer_in_conversation(
    bus: &CommandBus,
    account: AccountId,
    meta: &Metadata,
) -> (CustomerId, ConversationId) {
    let (customer, id) = (CustomerId::new(), ConversationId::new());
    let identity = CustomerIdentity {
        email: Some("ada@example.com".into()),
        name: Some("Ada".into()),
        ..CustomerIdentity::default()
    };
    let create = CustomerCommand::Create {
        customer_id: customer,
        account_id: account,
        identity,
        metadata: Default::default(),
        verified: true,
    };
    bus.execute::<Customer>(customer, create, meta).await.unwrap();
    bus.execute::<Conversation>(id, common::open_conversation(id, account, customer, Utc::now()), meta)
        .await
        .unwrap();
    (customer, id)
}

/// The reply-email job, sending through `smtp` at once.
fn reply_job(smtp: &Smtp, bus: &CommandBus, db: &TestDb) -> ReplyEmailJob {
    let settings = EmailSettings {
        smtp_url: smtp.url().into(),
        from: "Acme Support <help@acme.test>".parse().unwrap(),
        reply_delay: Duration::from_secs(0),
        agent_notify_delay: Duration::from_secs(120),
    };
    ReplyEmailJob::new(bus.clone(), db.store.clone(), settings).unwrap()
}

#[tokio::test]
async fn sqlite_unseen_replies_are_emailed_threaded_and_seen_ones_are_not() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let smtp = Smtp::start().await;
    let bus = CommandBus::new(db.store.clone());
    let (account, agent, meta) = common::register_account(&bus).await;
    let (customer, id) = customer_in_conversation(&bus, account, &meta).await;
    let say = |author: Author, body: &'static str| {
        let bus = bus.clone();
        let meta = meta.clone();
        async move {
            let command = common::message(author, body, false, None, Utc::now());
            bus.execute::<Conversation>(id, command, &meta).await.unwrap();
        }
    };
    let job = reply_job(&smtp, &bus, &db);
    let payload = json!({"conversation_id": id.to_string()});

    say(Author::Customer { customer_id: customer }, "Where is my order?").await;
    say(Author::Agent { user_id: agent }, "It left the warehouse today.").await;
    say(Author::Agent { user_id: agent }, "Tracking number: 1Z999.").await;
    job.run(&payload).await.unwrap();
    job.run(&payload).await.unwrap(); // nothing new: no second email
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let first = &sent[0];
    assert_eq!(header(first, "To"), Some("ada@example.com"));
    assert!(header(first, "From").unwrap().contains("help@acme.test"));
    assert_eq!(header(first, "Subject"), Some("New reply from Acme"));
    assert!(first.contains("It left the warehouse today.") && first.contains("Tracking number: 1Z999."));
    assert!(
        !first.contains("Where is my order?"),
        "the customer's own message is not sent back"
    );
    let first_id = header(first, "Message-ID").unwrap().to_owned();
    assert!(header(first, "In-Reply-To").is_none());

    say(Author::Agent { user_id: agent }, "It arrives tomorrow.").await;
    job.run(&payload).await.unwrap();
    let sent = smtp.messages();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].contains("It arrives tomorrow.") && !sent[1].contains("1Z999"));
    assert_eq!(header(&sent[1], "In-Reply-To"), Some(first_id.as_str()), "threaded");
    assert_eq!(header(&sent[1], "References"), Some(first_id.as_str()));

    // Seen in the widget: no email.
    say(Author::Agent { user_id: agent }, "Anything else?").await;
    let seen = ConversationCommand::MarkSeenByCustomer {
        customer_id: customer,
        at: Utc::now(),
    };
    bus.execute::<Conversation>(id, seen, &meta).await.unwrap();
    job.run(&payload).await.unwrap();
    assert_eq!(smtp.messages().len(), 2);

    // A reply an agent typed in the conversation's Slack thread is emailed like any other.
    let from_slack = ConversationCommand::ReceiveSlackMessage {
        message_id: netia_events::MessageId::new(),
        author: Author::Agent { user_id: agent },
        body: "Answered from Slack.".into(),
        slack_event_id: "Ev0EMAIL000001".into(),
        slack_ts: Some("1700000000.000200".into()),
        at: Utc::now(),
    };
    bus.execute::<Conversation>(id, from_slack, &meta).await.unwrap();
    job.run(&payload).await.unwrap();
    let sent = smtp.messages();
    assert_eq!(sent.len(), 3);
    assert!(sent[2].contains("Answered from Slack."), "{}", sent[2]);

    let stream = StreamRef::new("conversation", id.to_string());
    let recorded = db
        .store
        .read_stream(&stream, StreamBound::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "EmailNotificationSent")
        .count();
    assert_eq!(recorded, 3, "each email is recorded as an event");
    db.cleanup().await;
}

/// Through a running server: an agent's reply over REST reaches the customer's mailbox after
/// REPLY_EMAIL_DELAY (1 s here), sent by the scheduler.
async fn a_running_server_emails_unseen_replies(db: &TestDb) {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let api = common::api::Api::start_with(
        db,
        &[
            ("SMTP_URL", &url),
            ("REPLY_EMAIL_DELAY", "1"),
            ("EMAIL_FROM", "help@acme.test"),
        ],
    )
    .await;
    let admin = api.register("agent@example.com").await;
    // Only a verified address gets reply emails: Ada's site signs her id with the identity
    // secret; Mallory types Ada's colleague's address without a hash.
    let (status, body) = api
        .post("/api/identity_verification/secret", Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    let open = |identity: Value| {
        let (api, account) = (&api, admin.account_id.clone());
        async move {
            let mut customer = json!({"account_id": account});
            customer
                .as_object_mut()
                .unwrap()
                .extend(identity.as_object().unwrap().clone());
            let (status, body) = api.post("/api/customers", None, customer).await;
            assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
            let (id, token) = (
                body["data"]["id"].as_str().unwrap(),
                body["data"]["token"].as_str().unwrap(),
            );
            let (status, body) = api
                .post(
                    "/api/conversations",
                    Some(token),
                    json!({"account_id": account, "customer_id": id}),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
            body["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    let hash = netia::app::verification::user_hash(&secret, "ada-1");
    let conversation = open(json!({"external_id": "ada-1", "email": "ada@example.com", "user_hash": hash})).await;
    let unverified = open(json!({"email": "bob@example.com"})).await;
    let (status, _) = api
        .post(
            &format!("/api/conversations/{unverified}/messages"),
            Some(&admin.token),
            json!({"body": "For Bob's eyes"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let request_id = uuid::Uuid::now_v7().to_string();
    let response = api
        .http
        .post(format!("{}/api/conversations/{conversation}/messages", api.base))
        .bearer_auth(&admin.token)
        .header("x-request-id", &request_id)
        .json(&json!({"body": "We shipped it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    for _ in 0..100 {
        if !smtp.messages().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both replies were due at once; give the unverified one time to (wrongly) go out too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1, "only to the verified address: {sent:?}");
    assert_eq!(header(&sent[0], "To"), Some("ada@example.com"));
    assert!(sent[0].contains("We shipped it"));
    // One chain: the request, the reply it wrote, the email's record caused by that reply.
    let mut recorded = None;
    let mut history = Value::Null;
    for _ in 0..100 {
        (_, history) = api
            .get(&format!("/api/conversations/{conversation}/history"), &admin.token)
            .await;
        let entries = history["data"].as_array().unwrap();
        let reply = entries
            .iter()
            .find(|e| e["event_type"] == "AgentMessagePosted")
            .cloned();
        let email = entries
            .iter()
            .find(|e| e["event_type"] == "EmailNotificationSent")
            .cloned();
        if let (Some(reply), Some(email)) = (reply, email) {
            recorded = Some((reply, email));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (reply, email) = recorded.unwrap_or_else(|| panic!("no email recorded: {history}"));
    assert_eq!(
        reply["correlation_id"],
        request_id.as_str(),
        "the request's id: {history}"
    );
    assert_eq!(email["causation_id"], reply["event_id"]);
    assert_eq!(email["correlation_id"], request_id.as_str());
}

mod server {
    use super::*;
    on_both_backends!(a_running_server_emails_unseen_replies);
}

/// A header's value with folded continuation lines joined (RFC 5322 §2.2.3).
fn unfolded(message: &str, name: &str) -> Option<String> {
    let mut lines = message
        .lines()
        .skip_while(|l| l.split_once(':').is_none_or(|(key, _)| !key.eq_ignore_ascii_case(name)));
    let first = lines.next()?.split_once(':')?.1.trim().to_owned();
    let rest: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .map(str::trim)
        .collect();
    Some(
        std::iter::once(first.as_str())
            .chain(rest)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Field report 3: three agent replies with a customer answer between each; every email names
/// the whole thread in References (RFC 5322 §3.6.4), not only its parent.
async fn reply_emails_name_the_whole_thread(db: &TestDb) {
    let smtp = Smtp::start().await;
    let bus = CommandBus::new(db.store.clone());
    let (account, agent, meta) = common::register_account(&bus).await;
    let (customer, id) = customer_in_conversation(&bus, account, &meta).await;
    let job = reply_job(&smtp, &bus, db);
    let payload = json!({"conversation_id": id.to_string()});
    for (i, (reply, answer)) in [("Reply one", "Thanks"), ("Reply two", "Ok"), ("Reply three", "Bye")]
        .into_iter()
        .enumerate()
    {
        let command = common::message(Author::Agent { user_id: agent }, reply, false, None, Utc::now());
        bus.execute::<Conversation>(id, command, &meta).await.unwrap();
        job.run(&payload).await.unwrap();
        assert_eq!(smtp.messages().len(), i + 1);
        let command = common::message(
            Author::Customer { customer_id: customer },
            answer,
            false,
            None,
            Utc::now(),
        );
        bus.execute::<Conversation>(id, command, &meta).await.unwrap();
    }
    let sent = smtp.messages();
    let ids: Vec<String> = sent.iter().map(|m| unfolded(m, "Message-ID").unwrap()).collect();
    assert_eq!(unfolded(&sent[0], "References"), None);
    assert_eq!(unfolded(&sent[1], "References"), Some(ids[0].clone()));
    assert_eq!(unfolded(&sent[2], "In-Reply-To"), Some(ids[1].clone()));
    assert_eq!(
        unfolded(&sent[2], "References"),
        Some(format!("{} {}", ids[0], ids[1])),
        "the whole chain, oldest first"
    );
}

mod threads {
    use super::*;
    on_both_backends!(reply_emails_name_the_whole_thread);
}

/// Retention: handled-delivery records and finished jobs older than the cutoff go; recent ones,
/// pending jobs (however old) and parked deliveries stay.
async fn old_bookkeeping_is_pruned_and_nothing_else(db: &TestDb) {
    let pool = read_models(db).await;
    let old = netia_events::chain::format_time(Utc::now() - TimeDelta::days(40));
    let recent = netia_events::chain::format_time(Utc::now() - TimeDelta::days(1));
    for (event, at) in [("e-old", &old), ("e-recent", &recent)] {
        sqlx::query("INSERT INTO consumer_processed (consumer, event_id, processed_at) VALUES ('llm_reply', $1, $2)")
            .bind(event)
            .bind(at.clone())
            .execute(&pool)
            .await
            .unwrap();
    }
    for (id, done) in [
        ("done-old", Some(&old)),
        ("done-recent", Some(&recent)),
        ("pending-old", None),
    ] {
        sqlx::query(
            "INSERT INTO scheduled_jobs (id, kind, payload, due_at, attempts, done_at) VALUES ($1, 'x', '{}', $2, 1, $3)",
        )
        .bind(id)
        .bind(old.clone())
        .bind(done.cloned())
        .execute(&pool)
        .await
        .unwrap();
    }
    netia::bus::park(&pool, "llm_reply", "e-parked", 5, "down")
        .await
        .unwrap();
    let pruned = netia::retention::prune(&pool, Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!((pruned.processed, pruned.jobs), (1, 1));
    let processed: Vec<String> = sqlx::query_scalar("SELECT event_id FROM consumer_processed ORDER BY event_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(processed, ["e-recent"]);
    let jobs: Vec<String> = sqlx::query_scalar("SELECT id FROM scheduled_jobs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, ["done-recent", "pending-old"]);
    assert_eq!(netia::bus::parked::list(&pool, None).await.unwrap().len(), 1);
    let again = netia::retention::prune(&pool, Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!((again.processed, again.jobs), (0, 0));
}

mod retention {
    use super::*;
    on_both_backends!(old_bookkeeping_is_pruned_and_nothing_else);
}

/// Takes 300 ms a run, and counts them.
struct SlowJob {
    runs: AtomicU32,
}

#[async_trait]
impl JobHandler for SlowJob {
    fn kind(&self) -> &'static str {
        "slow"
    }

    async fn run(&self, _payload: &Value) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

/// Two schedulers at once (a deposed lease holder still ticking, say): each due job is claimed row
/// by row and runs once; a claim whose scheduler died runs again once the claim is over.
async fn two_schedulers_run_each_job_once(db: &TestDb) {
    let pool = read_models(db).await;
    let job = Arc::new(SlowJob {
        runs: AtomicU32::new(0),
    });
    let scheduler = Scheduler {
        store: db.store.clone(),
        db: pool.clone(),
        handlers: vec![job.clone()],
    };
    let now = Utc::now();
    for i in 0..5 {
        schedule(&pool, &format!("slow-{i}"), "slow", &json!({}), now)
            .await
            .unwrap();
    }
    let other = scheduler.clone();
    let (a, b) = tokio::join!(scheduler.tick(now), other.tick(now));
    a.unwrap();
    b.unwrap();
    assert_eq!(job.runs.load(Ordering::SeqCst), 5, "five jobs, five runs");
    // A scheduler that died mid-job left its claim: the job runs again only after the claim.
    schedule(&pool, "slow-orphan", "slow", &json!({}), now).await.unwrap();
    sqlx::query("UPDATE scheduled_jobs SET claimed_until = $1 WHERE id = 'slow-orphan'")
        .bind(netia_events::chain::format_time(now + TimeDelta::minutes(5)))
        .execute(&pool)
        .await
        .unwrap();
    scheduler.tick(now + TimeDelta::minutes(1)).await.unwrap();
    assert_eq!(job.runs.load(Ordering::SeqCst), 5, "still claimed");
    scheduler.tick(now + TimeDelta::minutes(6)).await.unwrap();
    assert_eq!(job.runs.load(Ordering::SeqCst), 6, "taken over after the claim");
}

mod job_claims {
    use super::*;
    on_both_backends!(two_schedulers_run_each_job_once);
}

/// Two `netia serve` nodes on PostgreSQL, both able to run the scheduler, with eight reply emails
/// due: the session holding the scheduler's lease is terminated (`pg_terminate_backend`, as a
/// failover or a proxy's idle timeout would) while they come due. The other node takes over, and
/// each email is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_each_reply_email_is_sent_once_when_the_scheduler_lease_is_cut() {
    use common::nodes::{free_port, serve_with};
    let Some(db) = TestDb::postgres().await else { return };
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let vars = [
        ("SMTP_URL", url.as_str()),
        ("REPLY_EMAIL_DELAY", "2"),
        ("EMAIL_FROM", "help@acme.test"),
    ];
    let (port_a, port_b) = (free_port(), free_port());
    let _a = serve_with(&db, port_a, &vars).await;
    let _b = serve_with(&db, port_b, &vars).await;
    let api = common::api::Api {
        base: format!("http://127.0.0.1:{port_a}"),
        http: reqwest::Client::new(),
    };
    reply_to_verified_customers(&api, 8).await;
    // Cut the scheduler's lease session before the emails are due.
    let admin_pool = sqlx::postgres::PgPool::connect(&db.url).await.unwrap();
    let mut terminated = Vec::new();
    for _ in 0..100 {
        terminated = sqlx::query_scalar::<_, bool>(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(netia::lease::lock_key("scheduler"))
        .fetch_all(&admin_pool)
        .await
        .unwrap();
        if !terminated.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(terminated, [true], "the scheduler's lease session");
    assert_each_emailed_once(&smtp, 8).await;
    admin_pool.close().await;
    db.cleanup().await;
}

/// A node started while RabbitMQ is unreachable (a cut proxy in front of it) takes writes; its
/// relay cannot publish and nothing is lost: once RabbitMQ is reachable, the relay declares the
/// consumers' queues before it publishes the backlog, and every reply email goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_a_node_started_while_rabbitmq_is_down_loses_nothing() {
    use common::nodes::{free_port, serve_with};
    let Some(db) = TestDb::postgres().await else { return };
    let smtp = Smtp::start().await;
    let proxy = common::proxy::TcpProxy::start("127.0.0.1:5672").await;
    proxy.cut();
    let (smtp_url, amqp) = (smtp.url(), format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port));
    let vars = [
        ("SMTP_URL", smtp_url.as_str()),
        ("REPLY_EMAIL_DELAY", "1"),
        ("EMAIL_FROM", "help@acme.test"),
        ("AMQP_URL", amqp.as_str()),
    ];
    let port = free_port();
    let _node = serve_with(&db, port, &vars).await;
    let api = common::api::Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    reply_to_verified_customers(&api, 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        smtp.messages().is_empty(),
        "nothing can be consumed while RabbitMQ is away"
    );
    proxy.restore();
    assert_each_emailed_once(&smtp, 5).await;
    db.cleanup().await;
}

/// Registers an account through `api` and has its agent reply to `n` customers verified by the
/// identity secret (`c<i>@example.com`), so that `n` reply emails come due.
async fn reply_to_verified_customers(api: &common::api::Api, n: usize) {
    let admin = api.register("agent@example.com").await;
    let (_, body) = api
        .post("/api/identity_verification/secret", Some(&admin.token), json!({}))
        .await;
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    for i in 0..n {
        let id = format!("customer-{i}");
        let customer = json!({"account_id": admin.account_id, "external_id": id, "email": format!("c{i}@example.com"),
            "user_hash": netia::app::verification::user_hash(&secret, &id)});
        let (status, body) = api.post("/api/customers", None, customer).await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        let (customer_id, token) = (
            body["data"]["id"].as_str().unwrap(),
            body["data"]["token"].as_str().unwrap(),
        );
        let (_, body) = api
            .post(
                "/api/conversations",
                Some(token),
                json!({"account_id": admin.account_id, "customer_id": customer_id}),
            )
            .await;
        let conversation = body["data"]["id"].as_str().unwrap();
        let (status, _) = api
            .post(
                &format!("/api/conversations/{conversation}/messages"),
                Some(&admin.token),
                json!({"body": "Shipped"}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "writes go on whatever the broker");
    }
}

/// Waits (30 s at most) for `n` emails, then 3 s more for a duplicate: exactly one to each of
/// `c0@example.com` … `c<n-1>@example.com`.
async fn assert_each_emailed_once(smtp: &Smtp, n: usize) {
    for _ in 0..300 {
        if smtp.messages().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // a duplicate would arrive meanwhile
    let mut to: Vec<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| header(m, "To").map(str::to_owned))
        .collect();
    to.sort();
    let expected: Vec<String> = (0..n).map(|i| format!("c{i}@example.com")).collect();
    assert_eq!(to, expected, "each email once");
}
