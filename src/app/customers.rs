//! Customers: creating one and changing its identity, with its external id unique per account.

use chrono::Utc;
use netia_commands::{
    Customer, CustomerCommand, CustomerError, Decide, ExternalId, ExternalIdCommand, ExternalIdError,
};
use netia_events::customer::CustomerIdentity;
use netia_events::external_id::{ExternalIdEvent, stream_id};
use netia_events::{AccountId, CustomerId, DomainEvent, Metadata, RecordedEvent, StreamRef};
use serde_json::{Map, Value};

use super::{App, AppError};
use crate::command_bus::{CommandBus, CommandError};
use crate::store::{StoreError, StreamBound};
use netia_projections::CustomerProjection;

/// A claim whose customer was never created (its creator crashed in between) is taken over after
/// this long; a younger one may be a creation still under way.
const ORPHAN_CLAIM_AGE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Rounds of claim / check / take over before giving up on a contended id.
const CLAIM_ROUNDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CustomerUseCaseError {
    /// The customer aggregate refused (validation, not found, deleted).
    #[error(transparent)]
    Customer(CommandError<CustomerError>),
    /// Another customer of the account holds this external id.
    #[error("external_id {external_id:?} already belongs to customer {holder}")]
    ExternalIdTaken { external_id: String, holder: CustomerId },
    #[error("claiming the external id: {0}")]
    Claim(CommandError<ExternalIdError>),
    /// The widget's identity claim was refused (identity verification), or could not be checked.
    #[error(transparent)]
    Verification(#[from] super::verification::VerificationError),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<CommandError<CustomerError>> for CustomerUseCaseError {
    fn from(e: CommandError<CustomerError>) -> Self {
        Self::Customer(e)
    }
}

/// What the widget's customer call did.
#[derive(Debug)]
pub struct WidgetCustomer {
    pub customer_id: CustomerId,
    /// A new customer (`false`: a verified external id brought back its customer).
    pub created: bool,
    pub events: Vec<RecordedEvent>,
}

/// The widget's customer: `identity` is judged against the account's identity verification
/// ([`super::verification::check_claim`]). With a valid `user_hash` for an external id that a
/// verified customer already holds, that customer comes back (its identity and metadata updated,
/// vouched for); an unverified holder stays [`CustomerUseCaseError::ExternalIdTaken`] (an agent
/// may delete it); otherwise customer `new_id` is created, verified or not. `meta_for` gives the metadata of
/// the writes made as a customer.
pub async fn join_from_widget(
    app: &App,
    new_id: CustomerId,
    account_id: AccountId,
    identity: CustomerIdentity,
    metadata: Map<String, Value>,
    user_hash: Option<&str>,
    meta_for: impl Fn(CustomerId) -> Metadata,
) -> Result<WidgetCustomer, CustomerUseCaseError> {
    let account = app.state_of::<netia_commands::Account>(account_id).await?;
    let claim = super::verification::check_claim(
        app,
        account_id,
        &account,
        identity.external_id.as_deref(),
        identity.email.as_deref(),
        user_hash,
    )?;
    let verified = claim == super::verification::Claim::Verified;
    let created = create_customer(
        app,
        new_id,
        account_id,
        identity.clone(),
        metadata.clone(),
        verified,
        &meta_for(new_id),
    )
    .await;
    match created {
        Ok(events) => Ok(WidgetCustomer {
            customer_id: new_id,
            created: true,
            events,
        }),
        // Only into a customer the account already vouches for: one that took the id unverified
        // (before verification was required, say) may be someone else holding a token for it.
        Err(CustomerUseCaseError::ExternalIdTaken { holder, .. })
            if verified && app.state_of::<Customer>(holder).await?.verified =>
        {
            let meta = meta_for(holder);
            let mut events = identify_customer(app, holder, identity, true, &meta).await?;
            let update = CustomerCommand::UpdateMetadata { changes: metadata };
            events.extend(app.bus.execute::<Customer>(holder, update, &meta).await?.events);
            Ok(WidgetCustomer {
                customer_id: holder,
                created: false,
                events,
            })
        }
        Err(e) => Err(e),
    }
}

/// Creates customer `customer_id` of `account_id`. An `external_id` (trimmed, as the customer
/// keeps it) is claimed first, so that two concurrent creations with one external id give one
/// customer and one [`CustomerUseCaseError::ExternalIdTaken`]. `verified`: the account vouches
/// for the identity. Returns the appended events.
pub async fn create_customer(
    app: &App,
    customer_id: CustomerId,
    account_id: AccountId,
    identity: CustomerIdentity,
    metadata: Map<String, Value>,
    verified: bool,
    meta: &Metadata,
) -> Result<Vec<RecordedEvent>, CustomerUseCaseError> {
    let command = CustomerCommand::Create {
        customer_id,
        account_id,
        identity,
        metadata,
        verified,
    };
    // Refusals (bad email, metadata too large) come before anything is claimed.
    let decided = Customer::default()
        .decide(&command)
        .map_err(|e| CustomerUseCaseError::Customer(CommandError::Domain(e)))?;
    let external_id = decided.iter().find_map(|e| match e {
        netia_events::customer::CustomerEvent::CustomerCreated(c) => c.identity.external_id.clone(),
        _ => None,
    });
    let bus = &app.bus;
    if let Some(external_id) = &external_id {
        claim(app, account_id, external_id, customer_id, meta).await?;
    }
    match bus.execute::<Customer>(customer_id, command, meta).await {
        Ok(executed) => Ok(executed.events),
        Err(e) => {
            // Not when the append may have happened: the customer would hold an unclaimed id.
            if let Some(external_id) = external_id.as_ref().filter(|_| !outcome_unknown(&e)) {
                release(bus, account_id, external_id, customer_id, meta).await;
            }
            Err(e.into())
        }
    }
}

/// Sets the given identity fields of `customer_id` (`verified`: the account vouches for them). A
/// new external id is claimed first and the old one released after.
pub async fn identify_customer(
    app: &App,
    customer_id: CustomerId,
    identity: CustomerIdentity,
    verified: bool,
    meta: &Metadata,
) -> Result<Vec<RecordedEvent>, CustomerUseCaseError> {
    let bus = &app.bus;
    let (before, _) = bus.load::<Customer>(customer_id).await?;
    let account_id = before
        .account_id
        .ok_or(CustomerUseCaseError::Customer(CommandError::Domain(
            CustomerError::NotFound,
        )))?;
    // Refusals (a bad email, a blank external id) come before anything is claimed.
    let command = CustomerCommand::Identify {
        identity: identity.clone(),
        verified,
    };
    before
        .decide(&command)
        .map_err(|e| CustomerUseCaseError::Customer(CommandError::Domain(e)))?;
    let wanted = identity.external_id.as_ref().map(|s| s.trim().to_owned());
    let changes_id = wanted.is_some() && wanted != before.identity.external_id;
    if changes_id && let Some(external_id) = &wanted {
        claim(app, account_id, external_id, customer_id, meta).await?;
    }
    let executed = bus.execute::<Customer>(customer_id, command, meta).await;
    match (&executed, changes_id) {
        (Ok(_), true) => {
            if let Some(old) = &before.identity.external_id {
                release(bus, account_id, old, customer_id, meta).await;
            }
        }
        (Err(e), true) if !outcome_unknown(e) => {
            if let Some(new) = &wanted {
                release(bus, account_id, new, customer_id, meta).await;
            }
        }
        _ => {}
    }
    Ok(executed?.events)
}

/// Lets a deleted customer's external id go, so that a new customer may take it.
pub async fn release_external_id(bus: &CommandBus, customer: &Customer, customer_id: CustomerId, meta: &Metadata) {
    if let (Some(account_id), Some(external_id)) = (customer.account_id, &customer.identity.external_id) {
        release(bus, account_id, external_id, customer_id, meta).await;
    }
}

/// Whether a failed append may have been stored after all (the connection failed mid-append).
fn outcome_unknown<E: std::error::Error>(e: &CommandError<E>) -> bool {
    matches!(e, CommandError::Store(StoreError::OutcomeUnknown(_)))
}

/// Customers created before claims existed hold their external ids without a claim: the first
/// claim of such an id is made on their behalf, from the customer read model (checked against
/// the customer's own stream), so that a newcomer cannot take it.
async fn claim_for_legacy_holder(
    app: &App,
    account_id: AccountId,
    external_id: &str,
    newcomer: CustomerId,
    meta: &Metadata,
) -> Result<(), CustomerUseCaseError> {
    let stream = stream_id(account_id, external_id);
    let (_, version) = app
        .bus
        .load::<ExternalId>(&stream)
        .await
        .map_err(CustomerUseCaseError::Claim)?;
    if version > 0 {
        return Ok(()); // claimed (or released) before: the claims decide
    }
    let found = {
        let mut conn = app.db.acquire().await.map_err(AppError::from)?;
        CustomerProjection::by_external_id(&mut conn, account_id, external_id)
            .await
            .map_err(AppError::from)?
    };
    let Some(holder) = found.and_then(|row| row.id.parse::<CustomerId>().ok()) else {
        return Ok(());
    };
    if holder == newcomer {
        return Ok(());
    }
    let (customer, _) = app.bus.load::<Customer>(holder).await?;
    if customer.deleted || customer.identity.external_id.as_deref() != Some(external_id) {
        return Ok(());
    }
    let command = ExternalIdCommand::Claim {
        account_id,
        external_id: external_id.to_owned(),
        customer_id: holder,
    };
    match app.bus.execute::<ExternalId>(&stream, command, meta).await {
        Ok(_) | Err(CommandError::Conflict { .. } | CommandError::Domain(_)) => Ok(()),
        Err(e) => Err(CustomerUseCaseError::Claim(e)),
    }
}

async fn claim(
    app: &App,
    account_id: AccountId,
    external_id: &str,
    customer_id: CustomerId,
    meta: &Metadata,
) -> Result<(), CustomerUseCaseError> {
    claim_for_legacy_holder(app, account_id, external_id, customer_id, meta).await?;
    let bus = &app.bus;
    let stream = stream_id(account_id, external_id);
    let command = ExternalIdCommand::Claim {
        account_id,
        external_id: external_id.to_owned(),
        customer_id,
    };
    for _ in 0..CLAIM_ROUNDS {
        match bus.execute::<ExternalId>(&stream, command.clone(), meta).await {
            Ok(_) => return Ok(()),
            // Someone claimed or released at the same moment: decide again on what they wrote.
            Err(CommandError::Conflict { .. }) => continue,
            Err(CommandError::Domain(ExternalIdError::Taken { holder })) => {
                if !holder_is_gone(bus, &stream, holder, external_id).await? {
                    return Err(CustomerUseCaseError::ExternalIdTaken {
                        external_id: external_id.to_owned(),
                        holder,
                    });
                }
                let release = ExternalIdCommand::Release { customer_id: holder };
                bus.execute::<ExternalId>(&stream, release, meta)
                    .await
                    .map_err(CustomerUseCaseError::Claim)?;
            }
            Err(e) => return Err(CustomerUseCaseError::Claim(e)),
        }
    }
    Err(CustomerUseCaseError::Claim(CommandError::Conflict {
        stream: StreamRef::new(ExternalIdEvent::STREAM_TYPE, stream),
    }))
}

/// Whether `holder` no longer needs `external_id`: deleted; or — if its claim is older than
/// [`ORPHAN_CLAIM_AGE`], so that no creation or change in flight is mistaken — never created (its
/// creator crashed between the claim and the creation) or now known by another external id (two
/// changes raced, or a release failed).
async fn holder_is_gone(
    bus: &CommandBus,
    stream: &str,
    holder: CustomerId,
    external_id: &str,
) -> Result<bool, CustomerUseCaseError> {
    let (customer, _) = bus.load::<Customer>(holder).await?;
    if customer.deleted {
        return Ok(true);
    }
    if customer.id.is_some() && customer.identity.external_id.as_deref() == Some(external_id) {
        return Ok(false);
    }
    let events = bus
        .store()
        .read_stream(&StreamRef::new(ExternalIdEvent::STREAM_TYPE, stream), StreamBound::All)
        .await
        .map_err(|e| CustomerUseCaseError::Claim(CommandError::Store(e)))?;
    Ok(events
        .last()
        .is_some_and(|claim| Utc::now() - claim.recorded_at > ORPHAN_CLAIM_AGE))
}

/// Best effort: a release that fails leaves a claim that [`holder_is_gone`] takes over later.
async fn release(bus: &CommandBus, account_id: AccountId, external_id: &str, customer_id: CustomerId, meta: &Metadata) {
    let stream = stream_id(account_id, external_id);
    let command = ExternalIdCommand::Release { customer_id };
    if let Err(e) = bus.execute::<ExternalId>(&stream, command, meta).await {
        tracing::warn!(customer = %customer_id, error = %e, "could not release an external id");
    }
}
