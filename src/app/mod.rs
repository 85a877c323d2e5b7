//! The application layer: Netia's use cases, written against the log, the command bus and the read
//! models — never against HTTP or the socket. Every entry point (REST handlers, socket actions,
//! consumers, and next the channel webhooks) calls these functions with typed input and gets a
//! typed result or a typed error ([`AppError`] or a use case's own), which the entry point turns
//! into its own answer (a status, a refused push, a retry).

pub mod accounts;
pub mod attachments;
pub mod conversations;
pub mod customers;
pub mod erasure;
pub mod export;
pub mod gmail;
pub mod identity;
pub mod inbound_email;
pub mod slack;
pub mod team;
pub mod twilio;
pub mod verification;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use sqlx::AnyPool;

use crate::command_bus::{CommandBus, CommandError};
use crate::store::EventStore;

/// How long a write waits for its read model before answering (read-your-writes).
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(3);

/// What the use cases work with: the log, commands on it, the read models, and the local
/// projectors' progress (for read-your-writes).
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn EventStore>,
    pub bus: CommandBus,
    /// Read models and credentials.
    pub db: AnyPool,
    pub progress: crate::projector::Progress,
    /// Seals and opens secrets kept in the log (identity secrets, channel credentials).
    pub sealer: crate::secrets::Sealer,
    /// What outbound webhooks may reach.
    pub webhooks: webhooks::WebhookPolicy,
    /// The deployment's Slack app, when `SLACK_*` is set.
    pub slack: Option<Arc<slack::SlackApp>>,
    /// The deployment's Google client, when `GOOGLE_*` is set.
    pub gmail: Option<Arc<gmail::GmailApp>>,
    /// `NETIA_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// Twilio's REST API (`TWILIO_API_BASE_URL`).
    pub twilio: crate::channels::twilio::client::TwilioClient,
    /// `INBOUND_EMAIL_DOMAIN`: inbound addresses are `<local part>@<domain>`.
    pub inbound_email_domain: Option<String>,
    /// Where attachment files are kept (`ATTACHMENTS_URL`); `None` until a server opens it.
    pub attachments: Option<attachments::AttachmentStore>,
}

/// Failures shared by the use cases. Refusals by an aggregate come as the use case's
/// `CommandError<…>`; these are the rest.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The thing does not exist, or belongs to another account (the two are not told apart).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Written, but its read model did not show it within [`READ_YOUR_WRITES`].
    #[error("{0}")]
    NotReadableYet(&'static str),
    #[error("reading a read model: {0}")]
    ReadModel(#[from] netia_projections::ProjectionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The log holds an event that does not decode (or could not be encoded).
    #[error("reading the log: {0}")]
    Log(String),
    /// The log could not be read.
    #[error("reading the log: {0}")]
    Store(#[source] crate::store::StoreError),
}

impl App {
    pub fn new(store: Arc<dyn EventStore>, db: AnyPool) -> Self {
        Self {
            bus: CommandBus::new(store.clone()),
            store,
            db,
            progress: crate::projector::Progress::default(),
            sealer: crate::secrets::Sealer::unavailable(),
            webhooks: webhooks::WebhookPolicy::default(),
            slack: None,
            gmail: None,
            public_url: None,
            twilio: crate::channels::twilio::client::TwilioClient::new(crate::channels::twilio::client::API_BASE_URL),
            inbound_email_domain: None,
            attachments: None,
        }
    }

    /// Keeps attachment files in `store`.
    pub fn with_attachments(mut self, store: attachments::AttachmentStore) -> Self {
        self.attachments = Some(store);
        self
    }

    /// Lets outbound webhooks reach what `policy` allows.
    pub fn with_webhooks(mut self, policy: webhooks::WebhookPolicy) -> Self {
        self.webhooks = policy;
        self
    }

    /// Uses the deployment's channels: its Slack app, its public URL, Twilio's API.
    pub fn with_channels(mut self, settings: &crate::settings::Settings) -> Self {
        self.slack = settings.slack.clone().map(slack::SlackApp::new);
        self.gmail = settings.gmail.clone().map(gmail::GmailApp::new);
        self.public_url = settings.public_url.clone();
        self.twilio = crate::channels::twilio::client::TwilioClient::new(&settings.twilio_api_base_url);
        self.inbound_email_domain = settings.inbound_email_domain.clone();
        self
    }

    /// Uses this deployment's key for secrets.
    pub fn with_sealer(mut self, sealer: crate::secrets::Sealer) -> Self {
        self.sealer = sealer;
        self
    }

    /// Uses the local projectors' progress for read-your-writes.
    pub fn with_progress(mut self, progress: crate::projector::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// An aggregate's current state (the default state if it was never created).
    pub async fn state_of<A>(&self, id: impl std::fmt::Display) -> Result<A, AppError>
    where
        A: netia_commands::Decide + Clone + 'static,
        A::Event: netia_events::DomainEvent,
    {
        self.bus
            .load::<A>(id)
            .await
            .map(|(state, _)| state)
            .map_err(|e: CommandError<A::Error>| match e {
                CommandError::Store(e) => AppError::Store(e),
                other => AppError::Log(other.to_string()),
            })
    }

    /// Waits (bounded) until the named read model has applied `events`, so that the caller reads
    /// its own write. Returns even when the projector is slow: the write itself has succeeded.
    pub async fn caught_up(&self, projection: &str, events: &[RecordedEvent]) {
        self.applied(projection, events).await;
    }

    /// Waits (bounded) until the named read model has applied everything committed before this
    /// call: a reader catching up after a reconnect (a restart, say) must not get a page that is
    /// missing what was written while it was away.
    pub async fn caught_up_with_log(&self, projection: &str) {
        match self.store.head().await {
            Ok(head) if head != Checkpoint::default() => {
                self.wait_for(projection, head).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(projection, error = %e, "cannot read the log head"),
        }
    }

    /// Like [`caught_up`](Self::caught_up), and says whether the read model has applied `events`
    /// (false: it is still behind, or its progress could not be read).
    pub async fn applied(&self, projection: &str, events: &[RecordedEvent]) -> bool {
        match events.iter().map(RecordedEvent::checkpoint).max() {
            Some(last) => self.wait_for(projection, last).await,
            None => true,
        }
    }

    async fn wait_for(&self, projection: &str, at: Checkpoint) -> bool {
        match self.progress.wait_for(&self.db, projection, at, READ_YOUR_WRITES).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    projection,
                    "read model did not catch up within the read-your-writes bound"
                );
                false
            }
            Err(e) => {
                tracing::warn!(projection, error = %e, "cannot wait for the read model");
                false
            }
        }
    }
}

/// Creates a conversation with `create` unless it exists (another message of its thread, number
/// or first email created it meanwhile, perhaps on another node).
pub(crate) async fn open_conversation(
    app: &App,
    conversation_id: netia_events::ConversationId,
    create: netia_commands::ConversationCommand,
    meta: &netia_events::Metadata,
) -> Result<(), CommandError<netia_commands::ConversationError>> {
    match app
        .bus
        .execute::<netia_commands::Conversation>(conversation_id, create, meta)
        .await
    {
        Ok(_) | Err(CommandError::Domain(netia_commands::ConversationError::AlreadyExists)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The customer of a channel sender `key` (an address or number; `kind` e.g. `sms-customer`),
/// and, with `conversation_kind`, their conversation: stable ids, so that two messages arriving at
/// once on two nodes find the same ones. Ids are derived under the deployment's key
/// ([`crate::secrets::Sealer::keyed_digest`], so an id does not confirm a guessed address); a
/// customer already stored under the unkeyed id of earlier versions ([`derived_id`]) keeps it.
/// Once the customer derived from `key` was erased (ADR 0023), the next generation
/// (`<key>\0erased-<n>`) is used, so the sender's next message starts a new customer instead of
/// writing into an erased one.
pub(crate) async fn channel_customer(
    app: &App,
    account_id: netia_events::AccountId,
    kind: &str,
    conversation_kind: Option<&str>,
    key: &str,
) -> Result<(netia_events::CustomerId, Option<netia_events::ConversationId>), AppError> {
    use netia_commands::Customer;
    let account = account_id.to_string();
    let mut derivation = key.to_owned();
    let mut generation = 0;
    loop {
        let legacy = netia_events::CustomerId(derived_id(account_id, kind, &derivation));
        let legacy_state = app.state_of::<Customer>(legacy).await?;
        let keyed = |kind: &str| {
            app.sealer
                .keyed_digest(&[&account, kind, &derivation])
                .map(|digest| uuid_of(&digest))
        };
        let (customer, state, keyed_ids) = match keyed(kind) {
            Some(id) if legacy_state.account_id.is_none() => {
                let id = netia_events::CustomerId(id);
                (id, app.state_of::<Customer>(id).await?, true)
            }
            _ => (legacy, legacy_state, false),
        };
        generation += 1;
        if !state.erased || generation > 1_000 {
            let conversation = conversation_kind.map(|conversation_kind| {
                netia_events::ConversationId(match keyed(conversation_kind) {
                    Some(id) if keyed_ids => id,
                    _ => derived_id(account_id, conversation_kind, &derivation),
                })
            });
            return Ok((customer, conversation));
        }
        derivation = format!("{key}\u{0}erased-{generation}");
    }
}

/// A UUIDv8 from the first 16 bytes of a digest.
fn uuid_of(digest: &[u8]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// A stable id for what `key` names within `account` (an email's conversation, a Gmail thread;
/// channel customers of earlier versions): a UUIDv8 from SHA-256 of the three.
pub(crate) fn derived_id(account_id: netia_events::AccountId, kind: &str, key: &str) -> uuid::Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(account_id.to_string())
        .chain_update([0])
        .chain_update(kind)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
