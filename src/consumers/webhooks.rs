//! The outbound webhook consumer (`netia.webhooks`): each event a subscription wants is delivered
//! by [`crate::app::webhooks::deliver_event`]; a failed delivery is retried by the bus with its
//! backoff (`BUS_RETRY_BASE_MS`, doubling) and parked after `BUS_MAX_ATTEMPTS`, the delivery log
//! saying `parked` then.

use std::time::Duration;

use async_trait::async_trait;
use netia_events::RecordedEvent;

use crate::app::App;
use crate::app::webhooks::deliver_event;
use crate::app::webhooks::delivery::{DELIVERY_TIMEOUT, Sender};
use crate::bus::{Consumer, Failure};

pub struct WebhookConsumer {
    app: App,
    sender: Sender,
    /// The bus's attempts (`BUS_MAX_ATTEMPTS`): a delivery failing its last is logged as parked.
    max_attempts: u32,
}

impl WebhookConsumer {
    /// The consumer; fails when its HTTP client cannot be built (TLS did not initialise).
    pub fn new(app: App, max_attempts: u32) -> Result<Self, reqwest::Error> {
        let sender = Sender::new(app.webhooks.allow_private)?;
        Ok(Self {
            app,
            sender,
            max_attempts,
        })
    }
}

#[async_trait]
impl Consumer for WebhookConsumer {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn bindings(&self) -> Vec<String> {
        crate::app::webhooks::payload::BINDINGS
            .iter()
            .map(|b| (*b).to_owned())
            .collect()
    }

    /// Deliveries to one event's subscriptions go out at once, each bounded by [`DELIVERY_TIMEOUT`].
    fn claim_ttl(&self) -> Duration {
        DELIVERY_TIMEOUT * 3
    }

    async fn concerns(&self, event: &RecordedEvent) -> bool {
        crate::app::webhooks::wanted(&self.app, event).await
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), Failure> {
        deliver_event(&self.app, &self.sender, event, self.max_attempts)
            .await
            .map_err(|e| Failure::Retry(e.to_string()))
    }
}
