//! Consumers of effects without a vendor of their own (outbound [`webhooks`]), and [`effects`]: every
//! consumer and scheduled-job handler a deployment's settings turn on.

pub mod webhooks;

use std::sync::Arc;

use crate::realtime::hub::Hub;
use crate::settings::Settings;
use crate::store::EventStore;

/// Consumers of events and handlers of delayed jobs.
pub type Effects = (
    Vec<Arc<dyn crate::bus::Consumer>>,
    Vec<Arc<dyn crate::scheduler::JobHandler>>,
);

/// The consumers and scheduled-job handlers these settings turn on (the LLM reply with an LLM
/// configured, reply emails with SMTP, Slack with `SLACK_*`, Gmail with `GOOGLE_*`, SMS and outbound webhooks always), for the server and for `netia bus parked replay`. `hub`
/// carries the bot's typing to sockets, when there are sockets; `sealer` is the one the node's
/// API uses (an in-memory database's key exists once per process).
pub fn effects(
    settings: &Settings,
    store: &Arc<dyn EventStore>,
    pool: &sqlx::AnyPool,
    hub: Option<Arc<Hub>>,
    sealer: &crate::secrets::Sealer,
) -> anyhow::Result<Effects> {
    let mut consumers: Vec<Arc<dyn crate::bus::Consumer>> = Vec::new();
    if let Some(llm) = &settings.llm {
        consumers.push(Arc::new(crate::llm::LlmReply {
            bus: crate::command_bus::CommandBus::new(store.clone()),
            store: store.clone(),
            client: Arc::new(crate::llm::OpenAi::new(llm.clone())),
            settings: llm.clone(),
            hub: hub.clone(),
        }));
    } else {
        tracing::info!("LLM auto-reply off: neither OPENAI_API_KEY nor LLM_BASE_URL is set");
    }
    let app = crate::app::App::new(store.clone(), pool.clone())
        .with_sealer(sealer.clone())
        .with_webhooks(settings.webhooks)
        .with_channels(settings);
    if let Some(slack) = &app.slack {
        consumers.push(Arc::new(crate::channels::slack::outbound::SlackConsumer {
            client: slack.client.clone(),
            public_url: settings.public_url.clone(),
            app: app.clone(),
        }));
    }
    if app.gmail.is_some() {
        consumers.push(Arc::new(crate::channels::gmail::outbound::GmailConsumer {
            app: app.clone(),
        }));
    }
    consumers.push(Arc::new(crate::channels::twilio::outbound::SmsConsumer {
        app: app.clone(),
    }));
    consumers.push(Arc::new(crate::consumers::webhooks::WebhookConsumer::new(
        app.clone(),
        settings.retry.max_attempts,
    )?));
    let mut jobs: Vec<Arc<dyn crate::scheduler::JobHandler>> = Vec::new();
    if let Some(email) = &settings.email {
        consumers.push(Arc::new(crate::channels::email::outbound::EmailReplyConsumer::new(
            app.clone(),
            email,
        )?));
        consumers.push(Arc::new(crate::channels::email::agents::AgentNotifyScheduler {
            db: pool.clone(),
            delay: email.agent_notify_delay,
        }));
        jobs.push(Arc::new(crate::channels::email::agents::AgentNotificationJob::new(
            app, email,
        )?));
        consumers.push(Arc::new(crate::email::ReplyEmailScheduler {
            db: pool.clone(),
            delay: email.reply_delay,
        }));
        let job = crate::email::ReplyEmailJob::new(
            crate::command_bus::CommandBus::new(store.clone()),
            store.clone(),
            email.clone(),
        )?;
        jobs.push(Arc::new(job));
    }
    Ok((consumers, jobs))
}

/// The metadata of what a consumer records about `event` (its effect, or its failure): caused
/// by it, in its account.
pub fn effect_metadata(component: &str, event: &netia_events::RecordedEvent) -> netia_events::Metadata {
    let meta = netia_events::Metadata::system(component).caused_by(event);
    match event
        .metadata
        .get("account_id")
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse().ok())
    {
        Some(account) => meta.with_account(account),
        None => meta,
    }
}

/// The conversation an event of a conversation stream belongs to, as it is now: the id is
/// permanent trouble when malformed, reading the log is worth a retry.
pub async fn conversation_of(
    app: &crate::app::App,
    event: &netia_events::RecordedEvent,
) -> Result<(netia_events::ConversationId, netia_commands::Conversation), crate::bus::Failure> {
    use crate::bus::Failure;
    let conversation_id: netia_events::ConversationId = event
        .stream_id
        .parse()
        .map_err(|_| Failure::Permanent("not a conversation id".into()))?;
    let conversation = app
        .state_of::<netia_commands::Conversation>(conversation_id)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    Ok((conversation_id, conversation))
}

/// The claim of a consumer whose handling only schedules a job under a key of the event's own
/// ([`crate::scheduler::schedule`]: `ON CONFLICT DO NOTHING`, and done jobs are kept): a delivery that takes an
/// event over from a holder that died schedules nothing twice, so a dead node's claims should not
/// hold its events back for [`crate::bus::CLAIM_TTL`]. Bounds one decode and one insert.
pub const SCHEDULING_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(20);

/// The events that may carry a reply for the customer ([`reply_of`]): what the channels' outbound
/// consumers bind.
pub fn reply_bindings() -> Vec<String> {
    vec![
        "conversation.AgentMessagePosted".into(),
        "conversation.SlackMessageReceived".into(),
    ]
}

/// The reply an event carries, if it is one for the customer: an agent's public message, or a
/// message an agent or external agent wrote in Slack.
pub fn reply_of(decoded: &netia_events::conversation::ConversationEvent) -> Option<(netia_events::MessageId, &str)> {
    use netia_events::conversation::ConversationEvent;
    match decoded {
        ConversationEvent::AgentMessagePosted(m) => Some((m.message_id, &m.body)),
        ConversationEvent::SlackMessageReceived(m) if !m.author.is_customer() => Some((m.message_id, &m.body)),
        _ => None,
    }
}

/// Records `command` on the conversation of `event` (as `component`, caused by `event`): a
/// consumer's effect (`Err` is worth a retry) or, from `parked`, its failure.
pub async fn record(
    app: &crate::app::App,
    component: &str,
    event: &netia_events::RecordedEvent,
    command: netia_commands::ConversationCommand,
) -> Result<(), crate::bus::Failure> {
    let conversation_id: netia_events::ConversationId = event
        .stream_id
        .parse()
        .map_err(|_| crate::bus::Failure::Permanent("not a conversation id".into()))?;
    app.bus
        .execute::<netia_commands::Conversation>(conversation_id, command, &effect_metadata(component, event))
        .await
        .map_err(|e| crate::bus::Failure::Retry(e.to_string()))?;
    Ok(())
}

/// What `parked` records for a reply a channel could not deliver: `failed(trigger, message, error)`
/// on the reply's conversation, logged when even that fails.
pub async fn record_undelivered(
    app: &crate::app::App,
    component: &str,
    event: &netia_events::RecordedEvent,
    failure: &crate::bus::Failure,
    failed: impl FnOnce(uuid::Uuid, netia_events::MessageId, String) -> netia_commands::ConversationCommand,
) {
    use netia_events::DomainEvent;
    let decoded = netia_events::conversation::ConversationEvent::decode(event).ok();
    let Some((message_id, _)) = decoded.as_ref().and_then(reply_of) else {
        return;
    };
    let command = failed(event.event_id, message_id, failure.to_string());
    if let Err(e) = record(app, component, event, command).await {
        tracing::error!(conversation = %event.stream_id, component, error = %e, "cannot record an undelivered reply");
    }
}
