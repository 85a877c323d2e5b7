//! Conversation rules, one per test: given past events, when a command, then events or a refusal.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use netia_events::conversation::*;
use netia_events::{AccountId, ConversationId, CustomerId, InboxId, MessageId, UserId};
use uuid::Uuid;

use super::{Conversation, ConversationCommand, ConversationError};
use crate::Commutes;
use crate::validate::{MAX_BODY_CHARS, MAX_KEY_CHARS};

type ConversationTest = TestFramework<Conversation>;

const CONVERSATION: ConversationId = ConversationId(Uuid::from_u128(1));
const ACCOUNT: AccountId = AccountId(Uuid::from_u128(2));
const CUSTOMER: CustomerId = CustomerId(Uuid::from_u128(3));
const OTHER_CUSTOMER: CustomerId = CustomerId(Uuid::from_u128(4));
const AGENT: UserId = UserId(Uuid::from_u128(5));
const OTHER_AGENT: UserId = UserId(Uuid::from_u128(6));
const INBOX: InboxId = InboxId(Uuid::from_u128(7));
const TRIGGER: Uuid = Uuid::from_u128(8);
const OTHER_TRIGGER: Uuid = Uuid::from_u128(9);

/// A fixed instant, `minutes` after the first one.
fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(minutes)
}

/// The moment every command under test is decided.
fn now() -> DateTime<Utc> {
    at(60)
}

fn message(n: u128) -> MessageId {
    MessageId(Uuid::from_u128(100 + n))
}

/// The id every command under test gives its new message.
fn new_message() -> MessageId {
    message(99)
}

fn customer() -> Author {
    Author::Customer { customer_id: CUSTOMER }
}

fn agent() -> Author {
    Author::Agent { user_id: AGENT }
}

// ----- events -----

fn created() -> ConversationEvent {
    ConversationEvent::ConversationCreated(ConversationCreated {
        conversation_id: CONVERSATION,
        account_id: ACCOUNT,
        customer_id: CUSTOMER,
        inbox_id: Some(INBOX),
        source: Source::Chat,
        subject: Some("Order #42".to_owned()),
        created_at: at(0),
    })
}

fn customer_posted(n: u128, key: Option<&str>) -> ConversationEvent {
    ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
        message_id: message(n),
        customer_id: CUSTOMER,
        body: "Where is my order?".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: key.map(str::to_owned),
        sent_at: at(1),
    })
}

fn agent_posted(n: u128, key: Option<&str>) -> ConversationEvent {
    ConversationEvent::AgentMessagePosted(AgentMessagePosted {
        message_id: message(n),
        user_id: AGENT,
        body: "On its way.".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: key.map(str::to_owned),
        sent_at: at(2),
    })
}

fn note_added(n: u128, key: Option<&str>) -> ConversationEvent {
    ConversationEvent::PrivateNoteAdded(PrivateNoteAdded {
        message_id: message(n),
        user_id: AGENT,
        body: "VIP customer".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: key.map(str::to_owned),
        sent_at: at(2),
    })
}

fn bot_posted(n: u128, trigger: Uuid) -> ConversationEvent {
    ConversationEvent::BotMessagePosted(BotMessagePosted {
        message_id: message(n),
        body: "Let me check.".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Markdown,
        trigger_event_id: trigger,
        fallback: false,
        sent_at: at(3),
    })
}

fn closed(minutes: i64) -> ConversationEvent {
    ConversationEvent::ConversationClosed(ConversationClosed { closed_at: at(minutes) })
}

fn snoozed(until: DateTime<Utc>) -> ConversationEvent {
    ConversationEvent::ConversationSnoozed(ConversationSnoozed { until })
}

fn archived() -> ConversationEvent {
    ConversationEvent::ConversationArchived(ConversationArchived { archived_at: at(30) })
}

fn reopened_by_customer() -> ConversationEvent {
    ConversationEvent::ConversationReopened(ConversationReopened {
        reason: ReopenReason::CustomerMessage,
        reopened_at: now(),
    })
}

// ----- commands and the events they produce -----

fn post(author: Author, body: &str, private: bool, key: Option<&str>) -> ConversationCommand {
    ConversationCommand::PostMessage {
        message_id: new_message(),
        author,
        body: body.to_owned(),
        format: netia_events::conversation::MessageFormat::Text,
        private,
        client_message_id: key.map(str::to_owned),
        attachments: Vec::new(),
        at: now(),
    }
}

fn customer_says(body: &str) -> ConversationCommand {
    post(customer(), body, false, None)
}

fn customer_message_posted(body: &str) -> ConversationEvent {
    ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
        message_id: new_message(),
        customer_id: CUSTOMER,
        body: body.to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: None,
        sent_at: now(),
    })
}

fn agent_message_posted(body: &str) -> ConversationEvent {
    ConversationEvent::AgentMessagePosted(AgentMessagePosted {
        message_id: new_message(),
        user_id: AGENT,
        body: body.to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: None,
        sent_at: now(),
    })
}

fn bot_reply(trigger: Uuid) -> ConversationCommand {
    ConversationCommand::PostBotReply {
        message_id: new_message(),
        body: "Your order ships today.".to_owned(),
        trigger_event_id: trigger,
        reply_to: None,
        fallback: false,
        at: now(),
    }
}

fn bot_message_posted(trigger: Uuid) -> ConversationEvent {
    ConversationEvent::BotMessagePosted(BotMessagePosted {
        message_id: new_message(),
        body: "Your order ships today.".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Markdown,
        trigger_event_id: trigger,
        fallback: false,
        sent_at: now(),
    })
}

fn receive_email(author: Author, email_message_id: &str) -> ConversationCommand {
    ConversationCommand::ReceiveEmail {
        message_id: new_message(),
        author,
        body: "Any news?".to_owned(),
        subject: Some("Re: Order #42".to_owned()),
        email_message_id: email_message_id.to_owned(),
        in_reply_to: Some("<first@example.com>".to_owned()),
        gmail: None,
        at: now(),
    }
}

fn email_received(author: Author, email_message_id: &str) -> ConversationEvent {
    ConversationEvent::EmailMessageReceived(EmailMessageReceived {
        message_id: new_message(),
        author,
        body: "Any news?".to_owned(),
        subject: Some("Re: Order #42".to_owned()),
        email_message_id: email_message_id.to_owned(),
        in_reply_to: Some("<first@example.com>".to_owned()),
        gmail: None,
        sent_at: now(),
    })
}

fn receive_slack(author: Author, slack_event_id: &str) -> ConversationCommand {
    ConversationCommand::ReceiveSlackMessage {
        message_id: new_message(),
        author,
        body: "Looking into it".to_owned(),
        slack_event_id: slack_event_id.to_owned(),
        slack_ts: Some("1700000000.000100".to_owned()),
        at: now(),
    }
}

fn slack_received(author: Author, slack_event_id: &str) -> ConversationEvent {
    ConversationEvent::SlackMessageReceived(SlackMessageReceived {
        message_id: new_message(),
        author,
        body: "Looking into it".to_owned(),
        slack_event_id: slack_event_id.to_owned(),
        slack_ts: Some("1700000000.000100".to_owned()),
        sent_at: now(),
    })
}

/// A Slack message received before the command under test is decided.
fn slack_received_earlier(author: Author, slack_event_id: &str) -> ConversationEvent {
    match slack_received(author, slack_event_id) {
        ConversationEvent::SlackMessageReceived(e) => {
            ConversationEvent::SlackMessageReceived(SlackMessageReceived { sent_at: at(2), ..e })
        }
        other => other,
    }
}

fn receive_sms(customer_id: CustomerId, message_sid: &str) -> ConversationCommand {
    ConversationCommand::ReceiveSms {
        message_id: new_message(),
        customer_id,
        body: "Hello?".to_owned(),
        message_sid: message_sid.to_owned(),
        from_number: "+15005550006".to_owned(),
        at: now(),
    }
}

fn sms_received(message_sid: &str) -> ConversationEvent {
    ConversationEvent::SmsMessageReceived(SmsMessageReceived {
        message_id: new_message(),
        customer_id: CUSTOMER,
        body: "Hello?".to_owned(),
        message_sid: message_sid.to_owned(),
        from_number: "+15005550006".to_owned(),
        sent_at: now(),
    })
}

fn create_command(subject: Option<String>) -> ConversationCommand {
    ConversationCommand::Create {
        conversation_id: CONVERSATION,
        account_id: ACCOUNT,
        customer_id: CUSTOMER,
        inbox_id: INBOX,
        source: Source::Chat,
        subject,
        at: at(0),
    }
}

// ----- creation -----

#[test]
fn creating_a_conversation_records_it() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create_command(Some("Order #42".to_owned())))
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_conversation_twice_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(create_command(None))
        .then_expect_error(ConversationError::AlreadyExists);
}

#[test]
fn a_subject_longer_than_255_characters_is_refused() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create_command(Some("s".repeat(256))))
        .then_expect_error(ConversationError::InvalidSubject);
}

#[test]
fn any_command_before_creation_is_refused_as_not_found() {
    let commands = [
        customer_says("Hello"),
        bot_reply(TRIGGER),
        receive_email(customer(), "<a@example.com>"),
        receive_slack(customer(), "Ev1"),
        receive_sms(CUSTOMER, "SM1"),
        ConversationCommand::Close { at: now() },
        ConversationCommand::Reopen { at: now() },
        ConversationCommand::Snooze {
            until: at(120),
            at: now(),
        },
        ConversationCommand::Wake { at: now() },
        ConversationCommand::SetPriority {
            priority: Priority::Priority,
        },
        ConversationCommand::Assign { assignee: Some(AGENT) },
        ConversationCommand::Tag { tag: "billing".into() },
        ConversationCommand::Untag { tag: "billing".into() },
        ConversationCommand::MarkRead { user_id: AGENT },
        ConversationCommand::Archive { at: now() },
    ];
    for command in commands {
        ConversationTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ConversationError::NotFound);
    }
}

// ----- chat messages -----

#[test]
fn a_customer_message_is_posted() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says("Where is my order?"))
        .then_expect_events(vec![customer_message_posted("Where is my order?")]);
}

#[test]
fn a_customer_message_reopens_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(customer_says("Still there?"))
        .then_expect_events(vec![reopened_by_customer(), customer_message_posted("Still there?")]);
}

#[test]
fn a_customer_message_reopens_a_snoozed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(customer_says("Still there?"))
        .then_expect_events(vec![reopened_by_customer(), customer_message_posted("Still there?")]);
}

#[test]
fn a_customer_message_reopens_an_archived_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5), archived()])
        .when(customer_says("Still there?"))
        .then_expect_events(vec![reopened_by_customer(), customer_message_posted("Still there?")]);
}

#[test]
fn an_agent_message_is_posted() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None)])
        .when(post(agent(), "On its way.", false, None))
        .then_expect_events(vec![agent_message_posted("On its way.")]);
}

#[test]
fn an_agent_message_does_not_reopen_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(post(agent(), "One more thing.", false, None))
        .then_expect_events(vec![agent_message_posted("One more thing.")]);
}

#[test]
fn a_private_message_from_an_agent_is_a_private_note() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(agent(), "VIP customer", true, Some("n-1")))
        .then_expect_events(vec![ConversationEvent::PrivateNoteAdded(PrivateNoteAdded {
            message_id: new_message(),
            user_id: AGENT,
            body: "VIP customer".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: Some("n-1".to_owned()),
            sent_at: now(),
        })]);
}

#[test]
fn a_private_note_does_not_reopen_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(post(agent(), "VIP customer", true, None))
        .then_expect_events(vec![ConversationEvent::PrivateNoteAdded(PrivateNoteAdded {
            message_id: new_message(),
            user_id: AGENT,
            body: "VIP customer".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: None,
            sent_at: now(),
        })]);
}

#[test]
fn a_customer_cannot_write_a_private_note() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(customer(), "psst", true, None))
        .then_expect_error(ConversationError::PrivateNoteByCustomer);
}

#[test]
fn a_message_from_another_customer_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(
            Author::Customer {
                customer_id: OTHER_CUSTOMER,
            },
            "Hi",
            false,
            None,
        ))
        .then_expect_error(ConversationError::WrongCustomer);
}

#[test]
fn a_customer_message_with_a_repeated_client_message_id_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, Some("c-1"))])
        .when(post(customer(), "Where is my order?", false, Some("c-1")))
        .then_expect_events(vec![]);
}

#[test]
fn an_agent_message_with_a_repeated_client_message_id_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, Some("a-1"))])
        .when(post(agent(), "On its way.", false, Some("a-1")))
        .then_expect_events(vec![]);
}

#[test]
fn a_private_note_with_a_repeated_client_message_id_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), note_added(1, Some("n-1"))])
        .when(post(agent(), "VIP customer", true, Some("n-1")))
        .then_expect_events(vec![]);
}

#[test]
fn a_repeated_client_message_id_does_not_reopen_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, Some("c-1")), closed(5)])
        .when(post(customer(), "Where is my order?", false, Some("c-1")))
        .then_expect_events(vec![]);
}

#[test]
fn a_new_client_message_id_is_posted_with_the_message() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, Some("c-1"))])
        .when(post(customer(), "And another thing", false, Some("c-2")))
        .then_expect_events(vec![ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
            message_id: new_message(),
            customer_id: CUSTOMER,
            body: "And another thing".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: Some("c-2".to_owned()),
            sent_at: now(),
        })]);
}

#[test]
fn a_blank_client_message_id_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(customer(), "Hi", false, Some("  ")))
        .then_expect_error(ConversationError::InvalidKey { max: MAX_KEY_CHARS });
}

#[test]
fn a_client_message_id_over_200_characters_is_refused() {
    let key = "k".repeat(MAX_KEY_CHARS + 1);
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(customer(), "Hi", false, Some(&key)))
        .then_expect_error(ConversationError::InvalidKey { max: MAX_KEY_CHARS });
}

// ----- message bodies -----

#[test]
fn an_empty_body_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says(""))
        .then_expect_error(ConversationError::EmptyBody);
}

fn receipt(n: u8) -> Attachment {
    Attachment {
        key: format!("{ACCOUNT}/{CONVERSATION}/0190a0a0-0000-7000-8000-00000000000{n}"),
        file_name: "receipt.png".to_owned(),
        content_type: "image/png".to_owned(),
        size: 2048,
        sha256: "ab".repeat(32),
    }
}

fn with_files(mut command: ConversationCommand, files: Vec<Attachment>) -> ConversationCommand {
    if let ConversationCommand::PostMessage { attachments, .. } = &mut command {
        *attachments = files;
    }
    command
}

#[test]
fn a_file_needs_no_caption_and_travels_in_the_event() {
    let ConversationEvent::CustomerMessagePosted(mut expected) = customer_message_posted("") else {
        unreachable!()
    };
    expected.attachments = vec![receipt(1)];
    ConversationTest::with(())
        .given(vec![created()])
        .when(with_files(customer_says(""), vec![receipt(1)]))
        .then_expect_events(vec![ConversationEvent::CustomerMessagePosted(expected)]);
}

#[test]
fn an_agents_note_carries_its_files_too() {
    let ConversationEvent::PrivateNoteAdded(note) = ConversationTest::with(())
        .given(vec![created()])
        .when(with_files(
            post(agent(), "see attached", true, None),
            vec![receipt(1), receipt(2)],
        ))
        .inspect_result()
        .unwrap()
        .remove(0)
    else {
        panic!("a note")
    };
    assert_eq!(note.attachments, vec![receipt(1), receipt(2)]);
}

#[test]
fn attachments_must_be_well_formed_and_few() {
    let mut bad_hash = receipt(1);
    bad_hash.sha256 = "AB".repeat(32);
    let mut empty = receipt(1);
    empty.size = 0;
    let mut no_name = receipt(1);
    no_name.file_name = " ".to_owned();
    for file in [bad_hash, empty, no_name] {
        ConversationTest::with(())
            .given(vec![created()])
            .when(with_files(customer_says("hi"), vec![file]))
            .then_expect_error(ConversationError::InvalidAttachment);
    }
    ConversationTest::with(())
        .given(vec![created()])
        .when(with_files(customer_says("hi"), (0..11).map(|_| receipt(1)).collect()))
        .then_expect_error(ConversationError::TooManyAttachments { max: 10 });
}

#[test]
fn a_whitespace_body_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(agent(), " \n\t ", false, None))
        .then_expect_error(ConversationError::EmptyBody);
}

#[test]
fn a_body_of_20000_characters_is_accepted() {
    let body = "é".repeat(MAX_BODY_CHARS);
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says(&body))
        .then_expect_events(vec![customer_message_posted(&body)]);
}

#[test]
fn a_body_over_20000_characters_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says(&"a".repeat(MAX_BODY_CHARS + 1)))
        .then_expect_error(ConversationError::BodyTooLong { max: MAX_BODY_CHARS });
}

#[test]
fn a_body_with_control_characters_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says("ring the bell\u{7}"))
        .then_expect_error(ConversationError::InvalidBody);
}

#[test]
fn a_body_with_newlines_and_tabs_is_accepted() {
    let body = "line one\r\n\tline two";
    ConversationTest::with(())
        .given(vec![created()])
        .when(customer_says(body))
        .then_expect_events(vec![customer_message_posted(body)]);
}

#[test]
fn a_bot_reply_with_an_empty_body_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::PostBotReply {
            message_id: new_message(),
            body: "   ".to_owned(),
            trigger_event_id: TRIGGER,
            reply_to: None,
            fallback: false,
            at: now(),
        })
        .then_expect_error(ConversationError::EmptyBody);
}

// ----- bot replies -----

#[test]
fn a_bot_reply_is_posted() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None)])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![bot_message_posted(TRIGGER)]);
}

#[test]
fn a_second_bot_reply_to_the_same_trigger_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), bot_posted(2, TRIGGER)])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![]);
}

#[test]
fn a_bot_reply_to_another_trigger_is_posted() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), bot_posted(2, TRIGGER)])
        .when(bot_reply(OTHER_TRIGGER))
        .then_expect_events(vec![bot_message_posted(OTHER_TRIGGER)]);
}

#[test]
fn the_bot_stays_silent_after_an_agent_public_reply() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), agent_posted(2, None)])
        .when(bot_reply(TRIGGER))
        .then_expect_error(ConversationError::HandedToHuman);
}

#[test]
fn a_redelivered_trigger_after_an_agent_reply_is_still_a_no_op() {
    ConversationTest::with(())
        .given(vec![
            created(),
            customer_posted(1, None),
            bot_posted(2, TRIGGER),
            agent_posted(3, None),
        ])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![]);
}

#[test]
fn a_private_note_does_not_hand_the_conversation_to_a_human() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), note_added(2, None)])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![bot_message_posted(TRIGGER)]);
}

#[test]
fn an_agent_or_external_agent_slack_reply_hands_the_conversation_to_a_human() {
    for author in [agent(), external()] {
        let mut reply = slack_received(author, "Ev1");
        if let ConversationEvent::SlackMessageReceived(e) = &mut reply {
            e.message_id = message(2);
        }
        ConversationTest::with(())
            .given(vec![created(), customer_posted(1, None), reply])
            .when(bot_reply(TRIGGER))
            .then_expect_error(ConversationError::HandedToHuman);
    }
}

#[test]
fn an_agent_email_reply_hands_the_conversation_to_a_human() {
    let mut agent_reply = email_received(agent(), "<reply@example.com>");
    if let ConversationEvent::EmailMessageReceived(e) = &mut agent_reply {
        e.message_id = message(2);
    }
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), agent_reply])
        .when(bot_reply(TRIGGER))
        .then_expect_error(ConversationError::HandedToHuman);
}

#[test]
fn a_customer_slack_message_does_not_hand_the_conversation_to_a_human() {
    ConversationTest::with(())
        .given(vec![created(), slack_received_earlier(customer(), "Ev1")])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![bot_message_posted(TRIGGER)]);
}

// ----- channels -----

#[test]
fn an_email_is_received() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_email(customer(), "<a@example.com>"))
        .then_expect_events(vec![email_received(customer(), "<a@example.com>")]);
}

#[test]
fn an_email_with_a_message_id_seen_before_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), email_received(customer(), "<a@example.com>")])
        .when(receive_email(customer(), "<a@example.com>"))
        .then_expect_events(vec![]);
}

#[test]
fn a_customer_email_reopens_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(receive_email(customer(), "<a@example.com>"))
        .then_expect_events(vec![
            reopened_by_customer(),
            email_received(customer(), "<a@example.com>"),
        ]);
}

#[test]
fn an_agent_email_does_not_reopen_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(receive_email(agent(), "<a@example.com>"))
        .then_expect_events(vec![email_received(agent(), "<a@example.com>")]);
}

#[test]
fn an_email_from_another_customer_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_email(
            Author::Customer {
                customer_id: OTHER_CUSTOMER,
            },
            "<a@example.com>",
        ))
        .then_expect_error(ConversationError::WrongCustomer);
}

#[test]
fn an_email_without_a_message_id_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_email(customer(), ""))
        .then_expect_error(ConversationError::InvalidKey { max: MAX_KEY_CHARS });
}

#[test]
fn a_slack_message_is_received() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_slack(customer(), "Ev1"))
        .then_expect_events(vec![slack_received(customer(), "Ev1")]);
}

#[test]
fn a_slack_event_seen_before_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), slack_received(agent(), "Ev1")])
        .when(receive_slack(agent(), "Ev1"))
        .then_expect_events(vec![]);
}

#[test]
fn a_slack_message_from_an_agent_does_not_reopen_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(receive_slack(agent(), "Ev1"))
        .then_expect_events(vec![slack_received(agent(), "Ev1")]);
}

#[test]
fn a_slack_message_from_the_customer_reopens_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(receive_slack(customer(), "Ev1"))
        .then_expect_events(vec![reopened_by_customer(), slack_received(customer(), "Ev1")]);
}

#[test]
fn an_sms_is_received() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_sms(CUSTOMER, "SM1"))
        .then_expect_events(vec![sms_received("SM1")]);
}

#[test]
fn an_sms_with_a_message_sid_seen_before_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), sms_received("SM1")])
        .when(receive_sms(CUSTOMER, "SM1"))
        .then_expect_events(vec![]);
}

#[test]
fn an_sms_reopens_a_closed_conversation() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(receive_sms(CUSTOMER, "SM1"))
        .then_expect_events(vec![reopened_by_customer(), sms_received("SM1")]);
}

#[test]
fn an_sms_from_another_customer_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(receive_sms(OTHER_CUSTOMER, "SM1"))
        .then_expect_error(ConversationError::WrongCustomer);
}

#[test]
fn external_ids_of_different_channels_do_not_collide() {
    ConversationTest::with(())
        .given(vec![created(), slack_received_earlier(customer(), "X1")])
        .when(receive_sms(CUSTOMER, "X1"))
        .then_expect_events(vec![sms_received("X1")]);
}

// ----- status -----

#[test]
fn closing_an_open_conversation_closes_it() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Close { at: now() })
        .then_expect_events(vec![closed(60)]);
}

#[test]
fn closing_a_closed_conversation_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(ConversationCommand::Close { at: now() })
        .then_expect_events(vec![]);
}

#[test]
fn closing_a_snoozed_conversation_closes_it() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Close { at: now() })
        .then_expect_events(vec![closed(60)]);
}

#[test]
fn reopening_a_closed_conversation_reopens_it_for_the_agent() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(ConversationCommand::Reopen { at: now() })
        .then_expect_events(vec![ConversationEvent::ConversationReopened(ConversationReopened {
            reason: ReopenReason::Agent,
            reopened_at: now(),
        })]);
}

#[test]
fn reopening_an_open_conversation_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Reopen { at: now() })
        .then_expect_events(vec![]);
}

#[test]
fn snoozing_until_a_past_time_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Snooze {
            until: at(59),
            at: now(),
        })
        .then_expect_error(ConversationError::SnoozeInPast);
}

#[test]
fn snoozing_until_now_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Snooze {
            until: now(),
            at: now(),
        })
        .then_expect_error(ConversationError::SnoozeInPast);
}

#[test]
fn snoozing_a_conversation_snoozes_it_until_the_given_time() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Snooze {
            until: at(600),
            at: now(),
        })
        .then_expect_events(vec![snoozed(at(600))]);
}

#[test]
fn snoozing_again_until_the_same_time_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Snooze {
            until: at(600),
            at: now(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn snoozing_again_until_another_time_moves_the_snooze() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Snooze {
            until: at(900),
            at: now(),
        })
        .then_expect_events(vec![snoozed(at(900))]);
}

#[test]
fn waking_before_the_snooze_ends_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Wake { at: at(599) })
        .then_expect_events(vec![]);
}

#[test]
fn waking_when_the_snooze_ends_wakes_the_conversation() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Wake { at: at(600) })
        .then_expect_events(vec![ConversationEvent::ConversationWoken(ConversationWoken {
            woken_at: at(600),
        })]);
}

#[test]
fn waking_after_the_snooze_ends_wakes_the_conversation() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(600))])
        .when(ConversationCommand::Wake { at: at(700) })
        .then_expect_events(vec![ConversationEvent::ConversationWoken(ConversationWoken {
            woken_at: at(700),
        })]);
}

#[test]
fn waking_a_conversation_that_is_not_snoozed_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), snoozed(at(30)), reopened_by_customer()])
        .when(ConversationCommand::Wake { at: at(700) })
        .then_expect_events(vec![]);
}

// ----- priority, assignment, tags -----

#[test]
fn setting_a_priority_records_it() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::SetPriority {
            priority: Priority::Priority,
        })
        .then_expect_events(vec![ConversationEvent::PrioritySet(PrioritySet {
            priority: Priority::Priority,
        })]);
}

#[test]
fn setting_the_same_priority_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![
            created(),
            ConversationEvent::PrioritySet(PrioritySet {
                priority: Priority::Priority,
            }),
        ])
        .when(ConversationCommand::SetPriority {
            priority: Priority::Priority,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_new_conversation_already_has_normal_priority() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::SetPriority {
            priority: Priority::Normal,
        })
        .then_expect_events(vec![]);
}

#[test]
fn assigning_an_agent_records_the_assignee() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Assign { assignee: Some(AGENT) })
        .then_expect_events(vec![ConversationEvent::AgentAssigned(AgentAssigned {
            assignee: Some(AGENT),
        })]);
}

#[test]
fn assigning_the_same_agent_again_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![
            created(),
            ConversationEvent::AgentAssigned(AgentAssigned { assignee: Some(AGENT) }),
        ])
        .when(ConversationCommand::Assign { assignee: Some(AGENT) })
        .then_expect_events(vec![]);
}

#[test]
fn unassigning_records_no_assignee() {
    ConversationTest::with(())
        .given(vec![
            created(),
            ConversationEvent::AgentAssigned(AgentAssigned { assignee: Some(AGENT) }),
        ])
        .when(ConversationCommand::Assign { assignee: None })
        .then_expect_events(vec![ConversationEvent::AgentAssigned(AgentAssigned { assignee: None })]);
}

#[test]
fn unassigning_an_unassigned_conversation_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Assign { assignee: None })
        .then_expect_events(vec![]);
}

fn tagged(tag: &str) -> ConversationEvent {
    ConversationEvent::ConversationTagged(ConversationTagged { tag: tag.to_owned() })
}

#[test]
fn tagging_a_conversation_records_the_tag() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Tag { tag: "billing".into() })
        .then_expect_events(vec![tagged("billing")]);
}

#[test]
fn tagging_with_a_tag_already_present_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), tagged("billing")])
        .when(ConversationCommand::Tag { tag: "billing".into() })
        .then_expect_events(vec![]);
}

#[test]
fn a_tag_of_64_characters_is_accepted() {
    let tag = "t".repeat(64);
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::Tag { tag: tag.clone() })
        .then_expect_events(vec![tagged(&tag)]);
}

#[test]
fn an_invalid_tag_is_refused() {
    for tag in ["", "   ", &"t".repeat(65), " billing", "billing ", "bill\ning"] {
        ConversationTest::with(())
            .given(vec![created()])
            .when(ConversationCommand::Tag { tag: tag.to_owned() })
            .then_expect_error(ConversationError::InvalidTag);
    }
}

#[test]
fn untagging_a_present_tag_removes_it() {
    ConversationTest::with(())
        .given(vec![created(), tagged("billing")])
        .when(ConversationCommand::Untag { tag: "billing".into() })
        .then_expect_events(vec![ConversationEvent::ConversationUntagged(ConversationUntagged {
            tag: "billing".to_owned(),
        })]);
}

#[test]
fn untagging_an_absent_tag_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), tagged("billing")])
        .when(ConversationCommand::Untag { tag: "sales".into() })
        .then_expect_events(vec![]);
}

// ----- read state -----

fn read_by(user_id: UserId, last: MessageId) -> ConversationEvent {
    ConversationEvent::ConversationRead(ConversationRead {
        user_id,
        last_message_id: last,
    })
}

#[test]
fn marking_read_records_the_last_message() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), agent_posted(2, None)])
        .when(ConversationCommand::MarkRead { user_id: AGENT })
        .then_expect_events(vec![read_by(AGENT, message(2))]);
}

#[test]
fn marking_read_again_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), read_by(AGENT, message(1))])
        .when(ConversationCommand::MarkRead { user_id: AGENT })
        .then_expect_events(vec![]);
}

#[test]
fn marking_read_after_a_new_message_records_the_new_message() {
    ConversationTest::with(())
        .given(vec![
            created(),
            customer_posted(1, None),
            read_by(AGENT, message(1)),
            bot_posted(2, TRIGGER),
        ])
        .when(ConversationCommand::MarkRead { user_id: AGENT })
        .then_expect_events(vec![read_by(AGENT, message(2))]);
}

#[test]
fn read_state_is_kept_per_agent() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), read_by(AGENT, message(1))])
        .when(ConversationCommand::MarkRead { user_id: OTHER_AGENT })
        .then_expect_events(vec![read_by(OTHER_AGENT, message(1))]);
}

#[test]
fn marking_read_a_conversation_without_messages_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(ConversationCommand::MarkRead { user_id: AGENT })
        .then_expect_events(vec![]);
}

// ----- archiving -----

fn archive_after(closed_minutes: i64, elapsed: Duration) -> ConversationCommand {
    ConversationCommand::Archive {
        at: at(closed_minutes) + elapsed,
    }
}

#[test]
fn archiving_a_conversation_closed_14_days_ago_archives_it() {
    let when = at(5) + Duration::days(14);
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(archive_after(5, Duration::days(14)))
        .then_expect_events(vec![ConversationEvent::ConversationArchived(ConversationArchived {
            archived_at: when,
        })]);
}

#[test]
fn archiving_a_conversation_closed_less_than_14_days_ago_is_refused() {
    ConversationTest::with(())
        .given(vec![created(), closed(5)])
        .when(archive_after(5, Duration::days(14) - Duration::seconds(1)))
        .then_expect_error(ConversationError::ClosedTooRecently { days: 14 });
}

#[test]
fn archiving_an_open_conversation_is_refused() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(archive_after(5, Duration::days(30)))
        .then_expect_error(ConversationError::NotClosed);
}

#[test]
fn archiving_a_reopened_conversation_is_refused() {
    ConversationTest::with(())
        .given(vec![created(), closed(5), reopened_by_customer()])
        .when(archive_after(5, Duration::days(30)))
        .then_expect_error(ConversationError::NotClosed);
}

#[test]
fn archiving_a_snoozed_conversation_is_refused() {
    ConversationTest::with(())
        .given(vec![created(), closed(5), snoozed(at(600))])
        .when(archive_after(5, Duration::days(30)))
        .then_expect_error(ConversationError::NotClosed);
}

#[test]
fn archiving_an_archived_conversation_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), closed(5), archived()])
        .when(archive_after(5, Duration::days(30)))
        .then_expect_events(vec![]);
}

// ----- concurrency -----

#[test]
fn messages_tags_reads_wakes_and_archiving_commute() {
    let commuting = [
        customer_says("Hi"),
        bot_reply(TRIGGER),
        receive_email(customer(), "<a@example.com>"),
        receive_slack(customer(), "Ev1"),
        receive_sms(CUSTOMER, "SM1"),
        ConversationCommand::Tag { tag: "billing".into() },
        ConversationCommand::Untag { tag: "billing".into() },
        ConversationCommand::MarkRead { user_id: AGENT },
        ConversationCommand::Wake { at: now() },
        ConversationCommand::Archive { at: now() },
    ];
    for command in commuting {
        assert!(command.commutes(), "{command:?} should commute");
    }
}

#[test]
fn decisions_a_person_made_against_the_state_do_not_commute() {
    let deciding = [
        create_command(None),
        ConversationCommand::Close { at: now() },
        ConversationCommand::Reopen { at: now() },
        ConversationCommand::Snooze {
            until: at(600),
            at: now(),
        },
        ConversationCommand::SetPriority {
            priority: Priority::Priority,
        },
        ConversationCommand::Assign { assignee: Some(AGENT) },
    ];
    for command in deciding {
        assert!(!command.commutes(), "{command:?} should not commute");
    }
}

// ----- superseded replies and hand-over -----

fn bot_reply_to(n: u128) -> ConversationCommand {
    match bot_reply(TRIGGER) {
        ConversationCommand::PostBotReply {
            message_id,
            body,
            trigger_event_id,
            at,
            ..
        } => ConversationCommand::PostBotReply {
            message_id,
            body,
            trigger_event_id,
            reply_to: Some(message(n)),
            fallback: false,
            at,
        },
        other => other,
    }
}

fn handed(reason: HandoffReason) -> ConversationEvent {
    ConversationEvent::HandedToHuman(HandedToHuman { reason, at: now() })
}

#[test]
fn a_bot_reply_to_a_customer_message_that_is_no_longer_the_latest_is_dropped() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), customer_posted(2, None)])
        .when(bot_reply_to(1))
        .then_expect_events(vec![]);
}

#[test]
fn a_bot_reply_to_the_latest_customer_message_is_posted() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), customer_posted(2, None)])
        .when(bot_reply_to(2))
        .then_expect_events(vec![bot_message_posted(TRIGGER)]);
}

#[test]
fn a_customer_asking_for_a_person_silences_the_bot() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None)])
        .when(ConversationCommand::HandToHuman {
            reason: HandoffReason::CustomerAsked,
            at: now(),
        })
        .then_expect_events(vec![handed(HandoffReason::CustomerAsked)]);
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), handed(HandoffReason::Model)])
        .when(bot_reply(TRIGGER))
        .then_expect_error(ConversationError::HandedToHuman);
}

#[test]
fn handing_over_a_conversation_already_with_a_person_is_a_no_op() {
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, None)])
        .when(ConversationCommand::HandToHuman {
            reason: HandoffReason::Model,
            at: now(),
        })
        .then_expect_events(vec![]);
}

// ----- seen by the customer, emailed replies -----

#[test]
fn the_customer_seeing_new_messages_is_recorded_once() {
    let seen = |n| {
        ConversationEvent::SeenByCustomer(SeenByCustomer {
            customer_id: CUSTOMER,
            up_to: message(n),
            at: now(),
        })
    };
    let mark = || ConversationCommand::MarkSeenByCustomer {
        customer_id: CUSTOMER,
        at: now(),
    };
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, None)])
        .when(mark())
        .then_expect_events(vec![seen(1)]);
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, None), seen(1)])
        .when(mark())
        .then_expect_events(vec![]);
}

#[test]
fn replies_already_emailed_are_not_emailed_again() {
    let record = |ids: Vec<MessageId>| ConversationCommand::RecordEmailNotification {
        message_ids: ids,
        to: "ada@example.com".into(),
        email_message_id: "<1@netia>".into(),
        in_reply_to: None,
        gmail: None,
        at: now(),
    };
    let sent = ConversationEvent::EmailNotificationSent(EmailNotificationSent {
        message_ids: vec![message(1)],
        to: "ada@example.com".into(),
        email_message_id: "<1@netia>".into(),
        in_reply_to: None,
        gmail: None,
        at: now(),
    });
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, None)])
        .when(record(vec![message(1)]))
        .then_expect_events(vec![sent.clone()]);
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, None), sent])
        .when(record(vec![message(1)]))
        .then_expect_events(vec![]);
}

// ----- field reports: rules decided from the state at the moment of the decision -----

fn assigned(user_id: Option<UserId>) -> ConversationEvent {
    ConversationEvent::AgentAssigned(AgentAssigned { assignee: user_id })
}

#[test]
fn the_bot_stays_silent_once_an_agent_is_assigned_while_it_was_thinking() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), assigned(Some(AGENT))])
        .when(bot_reply(TRIGGER))
        .then_expect_error(ConversationError::HandedToHuman);
}

#[test]
fn the_bot_stays_silent_once_an_agent_closed_the_conversation_while_it_was_thinking() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), closed(2)])
        .when(bot_reply(TRIGGER))
        .then_expect_error(ConversationError::HandedToHuman);
}

#[test]
fn the_bot_answers_again_once_the_conversation_is_unassigned() {
    ConversationTest::with(())
        .given(vec![
            created(),
            customer_posted(1, None),
            assigned(Some(AGENT)),
            assigned(None),
        ])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![bot_message_posted(TRIGGER)]);
}

#[test]
fn an_agent_reusing_the_customers_client_message_id_still_posts() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, Some("k-1"))])
        .when(post(agent(), "On its way.", false, Some("k-1")))
        .then_expect_events(vec![ConversationEvent::AgentMessagePosted(AgentMessagePosted {
            message_id: new_message(),
            user_id: AGENT,
            body: "On its way.".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: Some("k-1".to_owned()),
            sent_at: now(),
        })]);
}

#[test]
fn an_agent_message_in_markdown_says_so() {
    let mut command = post(agent(), "**On its way.**", false, None);
    if let ConversationCommand::PostMessage { format, .. } = &mut command {
        *format = netia_events::conversation::MessageFormat::Markdown;
    }
    ConversationTest::with(())
        .given(vec![created()])
        .when(command)
        .then_expect_events(vec![ConversationEvent::AgentMessagePosted(AgentMessagePosted {
            message_id: new_message(),
            user_id: AGENT,
            body: "**On its way.**".to_owned(),
            format: netia_events::conversation::MessageFormat::Markdown,
            attachments: Vec::new(),
            client_message_id: None,
            sent_at: now(),
        })]);
}

#[test]
fn another_agent_reusing_an_agents_client_message_id_still_posts() {
    ConversationTest::with(())
        .given(vec![created(), agent_posted(1, Some("k-1"))])
        .when(post(
            Author::Agent { user_id: OTHER_AGENT },
            "Me too.",
            false,
            Some("k-1"),
        ))
        .then_expect_events(vec![ConversationEvent::AgentMessagePosted(AgentMessagePosted {
            message_id: new_message(),
            user_id: OTHER_AGENT,
            body: "Me too.".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: Some("k-1".to_owned()),
            sent_at: now(),
        })]);
}

fn customer_posted_at(n: u128, sent_at: DateTime<Utc>) -> ConversationEvent {
    ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
        message_id: message(n),
        customer_id: CUSTOMER,
        body: "Where is my order?".to_owned(),
        attachments: Vec::new(),
        format: netia_events::conversation::MessageFormat::Text,
        client_message_id: None,
        sent_at,
    })
}

/// Given a customer message dated `last`, an agent's reply decided at `decided` is dated `dated`.
fn agent_reply_is_dated(last: DateTime<Utc>, decided: DateTime<Utc>, dated: DateTime<Utc>) {
    let mut command = post(agent(), "On its way.", false, None);
    if let ConversationCommand::PostMessage { at, .. } = &mut command {
        *at = decided;
    }
    ConversationTest::with(())
        .given(vec![created(), customer_posted_at(1, last)])
        .when(command)
        .then_expect_events(vec![ConversationEvent::AgentMessagePosted(AgentMessagePosted {
            message_id: new_message(),
            user_id: AGENT,
            body: "On its way.".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Text,
            client_message_id: None,
            sent_at: dated,
        })]);
}

#[test]
fn a_message_decided_with_an_earlier_clock_is_dated_after_the_last_message() {
    let last = now() + Duration::seconds(5);
    agent_reply_is_dated(last, now(), last + Duration::microseconds(1));
}

#[test]
fn a_message_decided_later_within_the_same_microsecond_is_dated_a_microsecond_after() {
    // The read models and the API keep microseconds: a message decided 500 ns after the last one
    // would read back with the same `sent_at`, so stored order and time order would disagree.
    agent_reply_is_dated(
        now() + Duration::nanoseconds(100),
        now() + Duration::nanoseconds(600),
        now() + Duration::microseconds(1),
    );
}

#[test]
fn a_message_decided_in_a_later_microsecond_keeps_its_time_to_the_microsecond() {
    agent_reply_is_dated(
        now() + Duration::nanoseconds(100),
        now() + Duration::nanoseconds(2_600),
        now() + Duration::microseconds(2),
    );
}

#[test]
fn a_bot_reply_decided_with_an_earlier_clock_is_dated_after_the_last_message() {
    let last = now() + Duration::seconds(5);
    ConversationTest::with(())
        .given(vec![created(), customer_posted_at(1, last)])
        .when(bot_reply(TRIGGER))
        .then_expect_events(vec![ConversationEvent::BotMessagePosted(BotMessagePosted {
            message_id: new_message(),
            body: "Your order ships today.".to_owned(),
            attachments: Vec::new(),
            format: netia_events::conversation::MessageFormat::Markdown,
            trigger_event_id: TRIGGER,
            fallback: false,
            sent_at: last + Duration::microseconds(1),
        })]);
}

#[test]
fn a_channel_message_decided_with_an_earlier_clock_is_dated_after_the_last_message() {
    let last = now() + Duration::seconds(5);
    let mut state = Conversation::default();
    for event in [created(), customer_posted_at(1, last)] {
        state.evolve(&event);
    }
    let events = crate::Decide::decide(&state, &receive_sms(CUSTOMER, "SM1")).unwrap();
    let [ConversationEvent::SmsMessageReceived(sms)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(sms.sent_at, last + Duration::microseconds(1));
}

#[test]
fn the_email_thread_lists_every_message_id_in_order() {
    let mut state = Conversation::default();
    state.evolve(&created());
    for id in ["<a@x>", "<b@x>"] {
        state.evolve(&ConversationEvent::EmailNotificationSent(EmailNotificationSent {
            message_ids: vec![message(1)],
            to: "ada@example.com".to_owned(),
            email_message_id: id.to_owned(),
            in_reply_to: None,
            gmail: None,
            at: now(),
        }));
    }
    assert_eq!(state.email_thread, vec!["<a@x>".to_owned(), "<b@x>".to_owned()]);
    assert_eq!(state.last_email_id.as_deref(), Some("<b@x>"));
}

// ----- external agents (a Slack member who is no Netia user) -----

fn external() -> Author {
    Author::ExternalAgent {
        name: "Sam Stranger".to_owned(),
        channel_user_id: "U0STRANGER".to_owned(),
    }
}

#[test]
fn an_external_agent_slack_reply_is_received_under_their_name() {
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None)])
        .when(receive_slack(external(), "Ev1"))
        .then_expect_events(vec![slack_received(external(), "Ev1")]);
}

#[test]
fn an_external_agent_reply_does_not_reopen_a_closed_conversation() {
    let closed = ConversationEvent::ConversationClosed(ConversationClosed { closed_at: at(3) });
    ConversationTest::with(())
        .given(vec![created(), customer_posted(1, None), closed])
        .when(receive_slack(external(), "Ev1"))
        .then_expect_events(vec![slack_received(external(), "Ev1")]);
}

#[test]
fn an_external_agent_cannot_post_outside_a_channel() {
    ConversationTest::with(())
        .given(vec![created()])
        .when(post(external(), "Hi", false, None))
        .then_expect_error(ConversationError::ExternalAgentOutsideChannel);
}

#[test]
fn an_external_agent_needs_a_printable_name_and_an_id() {
    let long = "n".repeat(EXTERNAL_NAME_MAX + 1);
    for (name, id) in [
        ("", "U1"),
        ("  ", "U1"),
        ("Sam\u{7}", "U1"),
        (" Sam", "U1"),
        (long.as_str(), "U1"),
        ("Sam", ""),
    ] {
        let author = Author::ExternalAgent {
            name: name.to_owned(),
            channel_user_id: id.to_owned(),
        };
        ConversationTest::with(())
            .given(vec![created()])
            .when(receive_slack(author, "Ev1"))
            .then_expect_error(ConversationError::InvalidExternalAgent { max: EXTERNAL_NAME_MAX });
    }
}

fn gmail_ids(id: &str, thread: &str) -> Option<netia_events::conversation::GmailMessage> {
    Some(netia_events::conversation::GmailMessage {
        id: id.to_owned(),
        thread_id: thread.to_owned(),
    })
}

#[test]
fn a_gmail_message_is_taken_once_by_its_gmail_id_even_under_another_message_id() {
    let mut first = email_received(customer(), "<m1@mail.example>");
    if let ConversationEvent::EmailMessageReceived(e) = &mut first {
        e.gmail = gmail_ids("18c1", "18c0");
    }
    let mut again = receive_email(customer(), "<other@mail.example>");
    if let ConversationCommand::ReceiveEmail { gmail, .. } = &mut again {
        *gmail = gmail_ids("18c1", "18c0");
    }
    ConversationTest::with(())
        .given(vec![created(), first.clone()])
        .when(again)
        .then_expect_events(vec![]);
    let mut state = Conversation::default();
    state.evolve(&created());
    state.evolve(&first);
    assert_eq!(state.gmail_thread_id.as_deref(), Some("18c0"));
}
