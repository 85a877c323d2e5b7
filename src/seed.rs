//! `netia seed-demo`: a realistic, reproducible history for demos, projection tests and benchmarks.
//! Aggregates decide in memory (the same rules as the server) and streams are appended in small
//! interleaved batches, so the log looks like many conversations happening at once.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use cqrs_es::Aggregate;
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand, Decide};
use netia_events::conversation::{Author, MessageFormat, Priority, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{
    AccountId, Actor, ConversationId, CustomerId, DomainEvent, EventId, MessageId, Metadata, NewEvent, StreamRef,
    UserId,
};

use crate::store::{EventStore, StoreError};

/// Events appended per stream at a time.
const CHUNK: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedReport {
    pub account_id: AccountId,
    pub agents: Vec<UserId>,
    pub conversations: usize,
    pub events: usize,
    pub seconds: f64,
}

struct Thread {
    id: ConversationId,
    customer_id: CustomerId,
    state: Conversation,
    version: i64,
    last_customer_event: Option<uuid::Uuid>,
    pending: Vec<NewEvent>,
}

/// Writes about `events` events over `conversations` conversations of one new account.
pub async fn seed_demo(
    store: Arc<dyn EventStore>,
    events: usize,
    conversations: usize,
    seed: u64,
) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let account_id = AccountId::new();
    let inbox_id = netia_events::InboxId::new();
    let agents: Vec<UserId> = (0..3).map(|_| UserId::new()).collect();
    let conversations = conversations.max(1);
    let mut written = 0;
    let mut threads = Vec::with_capacity(conversations);
    for i in 0..conversations {
        let customer_id = CustomerId::new();
        let meta = Metadata::new(Actor::Customer { customer_id }).with_account(account_id);
        let create = CustomerCommand::Create {
            customer_id,
            account_id,
            identity: CustomerIdentity {
                name: Some(format!("Customer {i}")),
                email: Some(format!("customer{i}@example.com")),
                ..Default::default()
            },
            metadata: [(
                "browser".to_owned(),
                serde_json::json!(["Firefox", "Chrome", "Safari"][i % 3]),
            )]
            .into_iter()
            .collect(),
            verified: false,
        };
        let decided = Customer::default().decide(&create).unwrap_or_default();
        let stream = StreamRef::new("customer", customer_id);
        store
            .append(
                &stream,
                0,
                netia_events::codec::encode(&decided, &serde_json::to_value(&meta)?)?
                    .into_iter()
                    .map(|e| e.with_subject(Some(customer_id.to_string())))
                    .collect(),
            )
            .await?;
        written += decided.len();

        let id = ConversationId::new();
        let mut thread = Thread {
            id,
            customer_id,
            state: Conversation::default(),
            version: 0,
            last_customer_event: None,
            pending: Vec::new(),
        };
        let create = ConversationCommand::Create {
            conversation_id: id,
            account_id,
            customer_id,
            inbox_id,
            source: Source::Chat,
            subject: Some(format!("Question {i}")),
            at: Utc::now(),
        };
        step(&mut thread, create, &meta);
        threads.push(thread);
    }
    while written < events {
        for thread in &mut threads {
            for _ in 0..CHUNK {
                let (command, actor) = next_command(&mut rng, thread, &agents);
                step(thread, command, &Metadata::new(actor).with_account(account_id));
            }
            let batch = std::mem::take(&mut thread.pending);
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            let appended = store
                .append(&StreamRef::new("conversation", thread.id), thread.version, batch)
                .await?;
            thread.version = appended.last().map_or(thread.version, |e| e.version);
            written += n;
            if written >= events {
                break;
            }
        }
    }
    Ok(SeedReport {
        account_id,
        agents,
        conversations,
        events: written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decides a command on the in-memory conversation and queues its events (refusals are skipped).
fn step(thread: &mut Thread, command: ConversationCommand, meta: &Metadata) {
    let Ok(decided) = thread.state.decide(&command) else {
        return;
    };
    let Ok(metadata) = serde_json::to_value(meta) else {
        return;
    };
    for event in decided {
        let Ok(payload) = event.to_payload() else { return };
        let new = NewEvent::new(event.event_type(), event.event_version(), payload, metadata.clone())
            .with_subject(Some(thread.customer_id.to_string()));
        if matches!(
            event,
            netia_events::conversation::ConversationEvent::CustomerMessagePosted(_)
        ) {
            thread.last_customer_event = Some(new.event_id);
        }
        thread.pending.push(new);
        thread.state.apply(event);
    }
}

fn next_command(rng: &mut fastrand::Rng, thread: &Thread, agents: &[UserId]) -> (ConversationCommand, Actor) {
    let now = Utc::now();
    let agent = agents[rng.usize(..agents.len())];
    let customer_id = thread.customer_id;
    let message = |author: Author, private: bool, body: String| ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author,
        body,
        format: MessageFormat::Text,
        private,
        client_message_id: Some(EventId::new().to_string()),
        attachments: Vec::new(),
        at: now,
    };
    let roll = rng.u32(..100);
    let as_agent = Actor::Agent { user_id: agent };
    match roll {
        0..45 => (
            message(
                Author::Customer { customer_id },
                false,
                format!("Customer question #{}", rng.u32(..10_000)),
            ),
            Actor::Customer { customer_id },
        ),
        45..75 => (
            message(
                Author::Agent { user_id: agent },
                false,
                "Thanks, looking into it.".into(),
            ),
            as_agent,
        ),
        75..80 => (
            message(Author::Agent { user_id: agent }, true, "Internal note".into()),
            as_agent,
        ),
        80..85 => match thread.last_customer_event {
            Some(trigger) => (
                ConversationCommand::PostBotReply {
                    message_id: MessageId::new(),
                    body: "Here is an article that may help.".into(),
                    trigger_event_id: trigger,
                    reply_to: None,
                    fallback: false,
                    at: now,
                },
                Actor::Bot,
            ),
            None => (ConversationCommand::Tag { tag: "new".into() }, as_agent),
        },
        85..88 => (
            ConversationCommand::Tag {
                tag: ["billing", "shipping", "bug", "vip"][rng.usize(..4)].into(),
            },
            as_agent,
        ),
        88..90 => (
            ConversationCommand::SetPriority {
                priority: if rng.bool() {
                    Priority::Priority
                } else {
                    Priority::Normal
                },
            },
            as_agent,
        ),
        90..93 => (ConversationCommand::Assign { assignee: Some(agent) }, as_agent),
        93..95 => (ConversationCommand::MarkRead { user_id: agent }, as_agent),
        95..98 => (ConversationCommand::Close { at: now }, as_agent),
        98 => (
            ConversationCommand::Snooze {
                until: now + Duration::hours(1),
                at: now,
            },
            as_agent,
        ),
        _ => (ConversationCommand::Reopen { at: now }, as_agent),
    }
}
