//! `netia audit rekey`: relinks the log with HMAC-SHA256 under `AUDIT_KEY` (ADR 0021).

use std::path::Path;

use anyhow::Context;
use netia_events::chain::Chain;
use secrecy::ExposeSecret;

use crate::settings::Settings;
use crate::startup::open_store_unchecked;
use crate::store::Rekeyed;

/// Relinks every stream from the chain the log records (plain, or `AUDIT_KEY_PREVIOUS`) to
/// `AUDIT_KEY`, anchoring the old chain before and the new one after into `anchor_file` if given.
///
/// Errors: `AUDIT_KEY` unset; the log is keyed with a key other than `AUDIT_KEY_PREVIOUS`; a link
/// does not verify (nothing changes); the database refuses (not the owner).
pub async fn rekey(settings: &Settings, anchor_file: Option<&Path>) -> anyhow::Result<Option<Rekeyed>> {
    let Chain::Keyed(to) = &settings.audit.chain else {
        anyhow::bail!("AUDIT_KEY is not set: it is the key to relink the log with (base64 of 32 bytes)");
    };
    let probe = open_store_unchecked(settings, settings.migrate, Chain::Plain).await?;
    let from = match probe.chain_marker().await? {
        None => Chain::Plain,
        Some(id) if id == to.id() => return Ok(None),
        Some(id) => match &settings.audit.previous_key {
            Some(previous) if previous.id() == id => Chain::Keyed(previous.clone()),
            _ => anyhow::bail!(
                "the log is linked with key id {id}: set AUDIT_KEY_PREVIOUS to that key to rotate from it"
            ),
        },
    };
    drop(probe);
    if let Some(path) = anchor_file {
        let before = open_store_unchecked(settings, false, from.clone()).await?;
        anchor_into(before.as_ref(), path)
            .await
            .context("anchoring the old chain")?;
    }
    let store = open_store_unchecked(settings, false, from.clone()).await?;
    let owner = settings.audit.migrate_url.as_ref().map(|u| u.expose_secret());
    let rekeyed = store.rekey(&from, to, owner).await?;
    drop(store);
    if let Some(path) = anchor_file {
        let after = open_store_unchecked(settings, false, settings.audit.chain.clone()).await?;
        anchor_into(after.as_ref(), path)
            .await
            .context("anchoring the new chain")?;
    }
    Ok(Some(rekeyed))
}

/// Appends an anchor of `store`'s heads (and Merkle root) to the file at `path`.
pub(crate) async fn anchor_into(store: &dyn crate::store::EventStore, path: &Path) -> anyhow::Result<()> {
    match super::anchor::anchor(store).await? {
        Ok(anchor) => Ok(super::anchor::append(path, &anchor)?),
        Err(report) => anyhow::bail!("{} stream(s) failed verification", report.broken.len()),
    }
}
