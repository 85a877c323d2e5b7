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
/// configured, reply emails with SMTP, Slack with `SLACK_*`, outbound webhooks always), for the server and for `netia bus parked replay`. `hub`
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
    consumers.push(Arc::new(crate::consumers::webhooks::WebhookConsumer::new(
        app,
        settings.retry.max_attempts,
    )?));
    let mut jobs: Vec<Arc<dyn crate::scheduler::JobHandler>> = Vec::new();
    if let Some(email) = &settings.email {
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
