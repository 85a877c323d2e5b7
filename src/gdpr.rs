//! `netia gdpr …`: personal data from the command line (ADR 0023).

use secrecy::ExposeSecret;

use crate::cli::GdprAction;
use crate::settings::Settings;

/// Runs a `netia gdpr` action against the deployment `settings` name.
///
/// Errors: the database cannot be opened; the customer does not exist; the deployment does not
/// seal personal data (no `NETIA_SECRET_KEY` on PostgreSQL).
pub async fn run(settings: &Settings, action: GdprAction) -> anyhow::Result<()> {
    match action {
        GdprAction::Erase { customer, json } => {
            let store = crate::startup::open_store(settings, settings.migrate).await?;
            let pool = crate::projector::read_model_pool(settings.database_url.expose_secret(), 2).await?;
            let files = crate::app::attachments::AttachmentStore::open(&settings.attachments)?;
            let app = crate::app::App::new(store, pool)
                .with_attachments(files)
                .with_sealer(crate::secrets::sealer_of(settings)?);
            let meta = netia_events::Metadata::new(netia_events::Actor::System {
                component: "netia gdpr erase".into(),
            });
            let erased = crate::app::erasure::erase_customer(&app, customer, None, &meta).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&erased)?);
            } else {
                let what = if erased.newly_erased {
                    "erased"
                } else {
                    "was already erased; side copies cleared again"
                };
                println!(
                    "customer {} {what} at {}: {} conversation(s), {} event(s) sealed for good, {} file(s) and {} email \
                     original(s) deleted, {} side cop(ies) cleared",
                    erased.customer_id,
                    erased.erased_at.to_rfc3339(),
                    erased.conversations,
                    erased.events,
                    erased.files_deleted,
                    erased.email_originals_deleted,
                    erased.side_copies_cleared,
                );
                println!(
                    "read models forget them as soon as the projectors (a running server or `netia project`) reach the erasure"
                );
            }
            Ok(())
        }
    }
}
