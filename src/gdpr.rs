//! `netia gdpr …`: personal data from the command line (ADR 0023).

use anyhow::Context;
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
            // The read models' tables, on a database no server has opened yet.
            for projection in crate::projector::projections() {
                crate::projector::Projector::new(store.clone(), pool.clone(), projection)
                    .setup()
                    .await?;
            }
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
        GdprAction::SealExisting { anchor } => {
            let store = crate::startup::open_store(settings, settings.migrate).await?;
            if !store.seals_personal_data() {
                anyhow::bail!("NETIA_SECRET_KEY is not set: there is no key to seal personal data with");
            }
            if let Some(path) = &anchor {
                crate::audit::rekey::anchor_into(store.stored(), path)
                    .await
                    .context("anchoring the chain before the rewrite")?;
            }
            let owner = settings.audit.migrate_url.as_ref().map(|u| u.expose_secret());
            let done = store.seal_existing(owner).await?;
            if let Some(path) = &anchor {
                crate::audit::rekey::anchor_into(store.stored(), path)
                    .await
                    .context("anchoring the chain after the rewrite")?;
            }
            println!(
                "sealed the personal fields of {} event(s) in place; relinked {} events in {} streams ({})",
                done.rewritten, done.events, done.streams, done.to
            );
            Ok(())
        }
    }
}
