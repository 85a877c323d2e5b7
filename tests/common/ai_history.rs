//! Conversation histories for the AI outcomes tests, written through the command bus.

use chrono::{DateTime, Duration, Utc};
use netia::command_bus::CommandBus;
use netia_commands::{Conversation, ConversationCommand};
use netia_events::conversation::{Author, HandoffReason, MessageFormat, Source};
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, Metadata, UserId};

/// One conversation's history, step by step (seconds after it opened).
pub enum Step {
    Customer(i64),
    Bot(i64),
    Fallback(i64),
    Agent(i64),
    Handoff(i64, HandoffReason),
    Close(i64),
    Reopen(i64),
}

/// Writes a conversation opened at `opened` in `account` through the command bus.
pub async fn conversation(bus: &CommandBus, account: AccountId, opened: DateTime<Utc>, steps: &[Step]) {
    let id = ConversationId::new();
    let customer_id = CustomerId::new();
    let meta = Metadata::system("test");
    let run = |cmd: ConversationCommand| {
        let meta = meta.clone();
        async move { bus.execute::<Conversation>(id, cmd, &meta).await.unwrap() }
    };
    let at = |s: i64| opened + Duration::seconds(s);
    run(ConversationCommand::Create {
        conversation_id: id,
        account_id: account,
        customer_id,
        inbox_id: InboxId::new(),
        source: Source::Chat,
        subject: None,
        at: opened,
    })
    .await;
    let post = |author, s| ConversationCommand::PostMessage {
        message_id: MessageId::new(),
        author,
        body: "words".into(),
        format: MessageFormat::Text,
        private: false,
        client_message_id: None,
        attachments: Vec::new(),
        at: at(s),
    };
    let mut trigger = None;
    for step in steps {
        match step {
            Step::Customer(s) => {
                let written = run(post(Author::Customer { customer_id }, *s)).await;
                trigger = Some(written.events[0].event_id);
            }
            Step::Bot(s) | Step::Fallback(s) => {
                let written = run(ConversationCommand::PostBotReply {
                    message_id: MessageId::new(),
                    body: "bot".into(),
                    trigger_event_id: trigger.take().expect("a customer message to answer"),
                    reply_to: None,
                    fallback: matches!(step, Step::Fallback(_)),
                    at: at(*s),
                })
                .await;
                assert_eq!(written.events.len(), 1, "the bot reply was refused");
            }
            Step::Agent(s) => {
                run(post(Author::Agent { user_id: UserId::new() }, *s)).await;
            }
            Step::Handoff(s, reason) => {
                run(ConversationCommand::HandToHuman {
                    reason: *reason,
                    at: at(*s),
                })
                .await;
            }
            Step::Close(s) => {
                run(ConversationCommand::Close { at: at(*s) }).await;
            }
            Step::Reopen(s) => {
                run(ConversationCommand::Reopen { at: at(*s) }).await;
            }
        }
    }
}

/// Seven conversations over two days (2026-04-01 and 2026-04-02) whose AI outcomes were computed by
/// hand (`tests/ai_outcomes.rs` has the numbers).
pub async fn write_histories(bus: &CommandBus, account: AccountId) {
    use Step::*;
    let day1: DateTime<Utc> = "2026-04-01T09:00:00Z".parse().unwrap();
    let day2: DateTime<Utc> = "2026-04-02T15:30:00Z".parse().unwrap();
    // Day 1. Resolved by the bot alone.
    conversation(bus, account, day1, &[Customer(1), Bot(3), Close(60)]).await;
    // The customer asked for a person at 2 s; an agent answered 60 s later.
    let asked = [Customer(1), Handoff(2, HandoffReason::CustomerAsked), Agent(62)];
    conversation(bus, account, day1, &asked).await;
    // The model failed on the second message (fallback at 10 s); an agent answered 30 s later.
    let failed = [Customer(1), Bot(2), Customer(8), Fallback(10), Agent(40)];
    conversation(bus, account, day1, &failed).await;
    // No bot at all.
    conversation(bus, account, day1, &[Customer(1), Agent(5)]).await;
    // Day 2. An agent stepped in after the bot answered.
    conversation(bus, account, day2, &[Customer(1), Bot(2), Agent(30)]).await;
    // Resolved by the bot, reopened a day later, closed again.
    let reopened = [Customer(1), Bot(2), Close(10), Reopen(86_400), Close(86_500)];
    conversation(bus, account, day2, &reopened).await;
    // The model handed over at 5 s; an agent answered 120 s later.
    let model = [
        Customer(1),
        Bot(2),
        Customer(4),
        Handoff(5, HandoffReason::Model),
        Agent(125),
    ];
    conversation(bus, account, day2, &model).await;
}
