//! The demo account's history: what the first embedded start writes so that a newcomer's inbox,
//! reporting page and history view show Netia at work at once (issue 19). Two dozen conversations
//! of a bike shop over the last few days, written through the command bus like any other history:
//! customers asking, the bot answering from the shop's context, handoffs when a customer asks for a
//! person, agents replying and leaving notes, conversations assigned, prioritised, tagged, snoozed
//! and closed. `netia seed-demo` is the other generator: volume for benchmarks, not a story.

use chrono::{DateTime, Duration, Utc};
use netia_commands::{Conversation, ConversationCommand, Customer, CustomerCommand};
use netia_events::conversation::{Author, HandoffReason, MessageFormat, Priority, Source};
use netia_events::customer::CustomerIdentity;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, InboxId, MessageId, Metadata, UserId};
use serde_json::json;

use crate::app::attachments::AttachmentStore;

mod photo;
use crate::command_bus::{CommandBus, CommandError};

/// One thing that happens in a demo conversation, two minutes after the previous one.
enum Step {
    /// The customer writes.
    Says(&'static str),
    /// The customer sends a photo (a drawn PNG, stored like any upload) with this caption.
    Photo(&'static str),
    /// The bot answers the customer's last message (Markdown).
    Bot(&'static str),
    /// The customer asked for a person: the bot stops.
    Handoff,
    /// The demo agent replies.
    Agent(&'static str),
    /// The demo agent leaves a note for colleagues.
    Note(&'static str),
    AssignToMe,
    Urgent,
    Tag(&'static str),
    /// The demo agent read the conversation.
    Read,
    /// Snoozed until tomorrow.
    Snooze,
    Close,
}

use Step::*;

/// A customer, when their conversation started (minutes ago), from which page, and what happened.
struct Story {
    name: &'static str,
    email: &'static str,
    minutes_ago: i64,
    page: &'static str,
    steps: &'static [Step],
}

const STORIES: &[Story] = &[
    Story {
        name: "Ada Lovelace",
        email: "ada@example.com",
        minutes_ago: 6,
        page: "/e-bikes/city-e5",
        steps: &[
            Says("Hi! Does the City E5 come with a frame size for someone 1.65 m tall?"),
            Bot(
                "Yes: the **City E5** comes in S (1.55–1.70 m), M and L. For 1.65 m we recommend **S**; you can try both sizes in the shop.",
            ),
            Says("Great, can I reserve one for Saturday?"),
        ],
    },
    Story {
        name: "Grace Hopper",
        email: "grace@example.com",
        minutes_ago: 14,
        page: "/repairs",
        steps: &[
            Says("My rear brake squeaks terribly since the rain. Is that a quick fix?"),
            Photo("This is the brake, if it helps."),
            Bot(
                "Usually yes: wet pads pick up grit. A brake check takes about 20 minutes and costs €15. Would you like to book one?",
            ),
            Says("I'd rather talk to a person please"),
            Handoff,
        ],
    },
    Story {
        name: "Alan Turing",
        email: "alan@example.com",
        minutes_ago: 25,
        page: "/checkout",
        steps: &[
            Says("The checkout page says my card was declined but my bank says the payment went through."),
            Urgent,
            Tag("billing"),
            AssignToMe,
            Note("Payment provider shows an authorisation without capture — checking with them."),
            Agent(
                "Sorry about that, Alan. The payment was only reserved, not taken; it will be released within 3 days. I'll place the order for you manually.",
            ),
        ],
    },
    Story {
        name: "Margaret Hamilton",
        email: "margaret@example.com",
        minutes_ago: 41,
        page: "/accessories/locks",
        steps: &[
            Says("Which lock do you recommend for an e-bike parked at the station all day?"),
            Bot(
                "For all-day parking we recommend a **folding lock rated 15/15** plus a cable for the front wheel. The Abus Bordo 6500 is in stock.",
            ),
            Says("Thanks, that's exactly what I needed!"),
            Close,
        ],
    },
    Story {
        name: "Katherine Johnson",
        email: "katherine@example.com",
        minutes_ago: 58,
        page: "/orders",
        steps: &[
            Says("Where is my order #4417? It was supposed to arrive yesterday."),
            AssignToMe,
            Tag("shipping"),
            Agent("Hi Katherine, the carrier shows it at your local depot; it goes out for delivery this afternoon."),
            Says("Okay, thanks for checking."),
            Read,
        ],
    },
    Story {
        name: "Linus Torvalds",
        email: "linus@example.com",
        minutes_ago: 75,
        page: "/e-bikes/trekking-t8",
        steps: &[
            Says("What's the real-world range of the T8 with the 625 Wh battery?"),
            Bot(
                "On mixed terrain in Tour mode riders typically get **90–120 km**; in Turbo on hills, closer to 50 km.",
            ),
        ],
    },
    Story {
        name: "Barbara Liskov",
        email: "barbara@example.com",
        minutes_ago: 95,
        page: "/repairs",
        steps: &[
            Says("Can you replace a broken spoke while I wait?"),
            Agent("Yes, usually within 30 minutes. Come by any time before 5 pm."),
            Close,
        ],
    },
    Story {
        name: "Dennis Ritchie",
        email: "dennis@example.com",
        minutes_ago: 130,
        page: "/returns",
        steps: &[
            Says("I want to return a helmet, it's too small. How does it work?"),
            Bot(
                "You can return unused items within **30 days**: bring it to the shop with the receipt, or use the return form on the order page.",
            ),
            Says("I bought it online, can I still bring it to the shop?"),
            Bot("Yes, online purchases can be returned in the shop too."),
            Close,
        ],
    },
    Story {
        name: "Hedy Lamarr",
        email: "hedy@example.com",
        minutes_ago: 170,
        page: "/e-bikes/cargo-c2",
        steps: &[
            Says("Is the Cargo C2 approved for two child seats?"),
            Bot("The Cargo C2 carries up to **two children** in its box with the bench and belts fitted."),
            Says("Can I talk to someone about financing?"),
            Handoff,
            AssignToMe,
            Tag("sales"),
        ],
    },
    Story {
        name: "Edsger Dijkstra",
        email: "edsger@example.com",
        minutes_ago: 240,
        page: "/service-plans",
        steps: &[
            Says("Does the yearly service plan include brake pads?"),
            Agent("It includes the labour and one set of pads a year; further pads are at cost."),
            Says("Perfect, I'll sign up next week."),
            Snooze,
        ],
    },
    Story {
        name: "Frances Allen",
        email: "frances@example.com",
        minutes_ago: 300,
        page: "/orders",
        steps: &[
            Says("I ordered the wrong colour. Can I still change it?"),
            AssignToMe,
            Agent("Done: your order now has the graphite frame. Same delivery date."),
            Says("You're the best, thank you!"),
            Close,
        ],
    },
    Story {
        name: "John McCarthy",
        email: "john@example.com",
        minutes_ago: 420,
        page: "/repairs",
        steps: &[
            Says("The display of my bike shows error 503. What does it mean?"),
            Bot(
                "Error 503 means the speed sensor lost its magnet signal. Check that the spoke magnet is aligned with the sensor.",
            ),
            Says("That fixed it, wow."),
            Close,
        ],
    },
    Story {
        name: "Radia Perlman",
        email: "radia@example.com",
        minutes_ago: 600,
        page: "/",
        steps: &[
            Says("Are you open on public holidays?"),
            Bot("We're closed on public holidays; on the day before, we close at 2 pm."),
        ],
    },
    Story {
        name: "Ken Thompson",
        email: "ken@example.com",
        minutes_ago: 900,
        page: "/e-bikes",
        steps: &[
            Says("Do you offer test rides for e-bikes?"),
            Bot("Yes! Test rides are free, Tuesday to Saturday. Bring an ID; helmets are provided."),
            Says("Can I book one for tomorrow at 10?"),
            Agent("Booked: tomorrow 10:00, City E5 in size M. See you then!"),
            Close,
        ],
    },
    Story {
        name: "Sophie Wilson",
        email: "sophie@example.com",
        minutes_ago: 1_300,
        page: "/warranty",
        steps: &[
            Says("My battery only charges to 80% after two years. Is that covered by the warranty?"),
            Urgent,
            Tag("warranty"),
            Handoff,
            AssignToMe,
            Note("Batteries: 2-year warranty, 60% capacity threshold. Ask for the diagnostic report."),
            Agent("Hi Sophie, could you bring the bike in for a battery diagnostic? It's free and takes 10 minutes."),
        ],
    },
    Story {
        name: "Donald Knuth",
        email: "don@example.com",
        minutes_ago: 1_800,
        page: "/accessories",
        steps: &[
            Says("Do you sell pannier bags that fit the T8 rack?"),
            Agent("Yes, all Ortlieb QL2.1 bags fit. We have them in black and red."),
            Close,
        ],
    },
    Story {
        name: "Annie Easley",
        email: "annie@example.com",
        minutes_ago: 2_400,
        page: "/orders",
        steps: &[
            Says("Can I pick up my online order in the shop instead of delivery?"),
            Bot("Yes: choose **click & collect** at checkout, or reply with your order number and we'll switch it."),
            Says("Order #4390, please switch it."),
            Handoff,
        ],
    },
    Story {
        name: "Tim Berners-Lee",
        email: "tim@example.com",
        minutes_ago: 3_000,
        page: "/e-bikes/city-e5",
        steps: &[
            Says("Is the City E5 available with a belt drive?"),
            Agent("Not this year, sorry — the Trekking T8 has one, though."),
            Says("Good to know, thanks."),
            Close,
        ],
    },
    Story {
        name: "Shafi Goldwasser",
        email: "shafi@example.com",
        minutes_ago: 3_900,
        page: "/repairs",
        steps: &[
            Says("How long does a full service take at the moment?"),
            Bot(
                "A full service currently takes **2 working days**; drop-offs before 10 am are often ready the next day.",
            ),
        ],
    },
    Story {
        name: "Vint Cerf",
        email: "vint@example.com",
        minutes_ago: 4_800,
        page: "/gift-cards",
        steps: &[
            Says("Do gift cards expire?"),
            Bot("Gift cards are valid for **3 years** from purchase."),
            Close,
        ],
    },
    Story {
        name: "Lynn Conway",
        email: "lynn@example.com",
        minutes_ago: 5_600,
        page: "/orders",
        steps: &[
            Says("I was charged twice for the same order."),
            Urgent,
            Tag("billing"),
            AssignToMe,
            Agent("I'm sorry, Lynn — I've refunded the duplicate charge. You'll see it in 3–5 days."),
            Close,
        ],
    },
];

/// Writes the demo history into `account_id` (inbox `inbox_id`, agent `agent_id`): returns how many
/// conversations it wrote.
///
/// # Errors
/// Whatever the command bus reports (the store unavailable); a refusal by an aggregate is a bug in
/// the stories and reported the same way.
pub async fn write_history(
    bus: &CommandBus,
    files: Option<&AttachmentStore>,
    account_id: AccountId,
    inbox_id: InboxId,
    agent_id: UserId,
) -> Result<usize, String> {
    let now = Utc::now();
    // Oldest first, so that the log's order matches the stories' times.
    for (i, story) in STORIES.iter().enumerate().rev() {
        tell(bus, files, story, i, now, (account_id, inbox_id, agent_id))
            .await
            .map_err(|e| format!("demo conversation of {}: {e}", story.name))?;
    }
    Ok(STORIES.len())
}

async fn tell(
    bus: &CommandBus,
    files: Option<&AttachmentStore>,
    story: &Story,
    i: usize,
    now: DateTime<Utc>,
    (account_id, inbox_id, agent_id): (AccountId, InboxId, UserId),
) -> Result<(), String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let customer_id = CustomerId::new();
    let as_customer = Metadata::new(Actor::Customer { customer_id }).with_account(account_id);
    let as_agent = Metadata::new(Actor::Agent { user_id: agent_id }).with_account(account_id);
    let as_bot = Metadata::new(Actor::Bot).with_account(account_id);
    let browser = [
        "Firefox 133 on Linux",
        "Safari 18 on macOS",
        "Chrome 131 on Windows",
        "Safari on iPhone",
    ][i % 4];
    let create = CustomerCommand::Create {
        customer_id,
        account_id,
        identity: CustomerIdentity {
            name: Some(story.name.to_owned()),
            email: Some(story.email.to_owned()),
            ..CustomerIdentity::default()
        },
        metadata: [
            (
                "current_url".to_owned(),
                json!(format!("https://shop.example.com{}", story.page)),
            ),
            ("browser".to_owned(), json!(browser)),
        ]
        .into_iter()
        .collect(),
        verified: false,
    };
    bus.execute::<Customer>(customer_id, create, &as_customer)
        .await
        .map_err(|e| error(&e))?;
    let id = ConversationId::new();
    let mut at = now - Duration::minutes(story.minutes_ago);
    let open = ConversationCommand::Create {
        conversation_id: id,
        account_id,
        customer_id,
        inbox_id,
        source: Source::Chat,
        subject: None,
        at,
    };
    bus.execute::<Conversation>(id, open, &as_customer)
        .await
        .map_err(|e| error(&e))?;
    let mut last_customer_message: Option<(uuid::Uuid, MessageId)> = None;
    for step in story.steps {
        at += Duration::minutes(2).min((now - at) / 2);
        let post = |author: Author, body: &str, private: bool| ConversationCommand::PostMessage {
            message_id: MessageId::new(),
            author,
            body: body.to_owned(),
            format: MessageFormat::Text,
            private,
            client_message_id: None,
            attachments: Vec::new(),
            at,
        };
        let (command, meta) = match step {
            Says(body) => (post(Author::Customer { customer_id }, body, false), &as_customer),
            Photo(caption) => {
                let mut command = post(Author::Customer { customer_id }, caption, false);
                if let (Some(files), ConversationCommand::PostMessage { attachments, .. }) = (files, &mut command) {
                    let name = "brake.png".to_owned();
                    let (photo, _) =
                        crate::app::attachments::store(files, account_id, id, name, photo::brake_disc().into())
                            .await
                            .map_err(|e| error(&e))?;
                    attachments.push(photo);
                }
                (command, &as_customer)
            }
            Agent(body) => (post(Author::Agent { user_id: agent_id }, body, false), &as_agent),
            Note(body) => (post(Author::Agent { user_id: agent_id }, body, true), &as_agent),
            Bot(body) => {
                let Some((trigger_event_id, message)) = last_customer_message else {
                    return Err("a bot reply before any customer message".into());
                };
                let reply = ConversationCommand::PostBotReply {
                    message_id: MessageId::new(),
                    body: (*body).to_owned(),
                    trigger_event_id,
                    reply_to: Some(message),
                    fallback: false,
                    at,
                };
                (reply, &as_bot)
            }
            Handoff => {
                let reason = HandoffReason::CustomerAsked;
                (ConversationCommand::HandToHuman { reason, at }, &as_bot)
            }
            AssignToMe => (
                ConversationCommand::Assign {
                    assignee: Some(agent_id),
                },
                &as_agent,
            ),
            Urgent => (
                ConversationCommand::SetPriority {
                    priority: Priority::Priority,
                },
                &as_agent,
            ),
            Tag(tag) => (ConversationCommand::Tag { tag: (*tag).to_owned() }, &as_agent),
            Read => (ConversationCommand::MarkRead { user_id: agent_id }, &as_agent),
            Snooze => {
                let until = now + Duration::hours(20);
                (ConversationCommand::Snooze { until, at }, &as_agent)
            }
            Close => (ConversationCommand::Close { at }, &as_agent),
        };
        let executed = bus.execute::<Conversation>(id, command, meta).await;
        let executed = executed.map_err(|e: CommandError<_>| error(&e))?;
        if matches!(step, Says(_) | Photo(_)) {
            last_customer_message = executed.events.iter().find_map(|e| {
                let message = e.payload.get("message_id")?.as_str()?.parse().ok()?;
                (e.event_type == "CustomerMessagePosted").then_some((e.event_id, message))
            });
        }
    }
    Ok(())
}
