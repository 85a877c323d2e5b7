//! Opening the event store: migrations (as the owner when `DATABASE_MIGRATE_URL` is set) and the
//! check that this node links appends the way the log already is (ADR 0021).

use std::sync::Arc;

use anyhow::Context;
use netia_events::chain::Chain;
use secrecy::ExposeSecret;

use crate::settings::Settings;
use crate::store::{self, EventStore};

/// Opens the event store named by the settings, migrating it unless told not to, and checks that
/// `AUDIT_KEY` matches the key the log is linked with (none for none).
///
/// Errors: the database cannot be opened or migrated; the log is keyed and `AUDIT_KEY` is missing
/// or another key; `AUDIT_KEY` is set and the log holds plain links (run `netia audit rekey`).
pub async fn open_store(settings: &Settings, migrate: bool) -> anyhow::Result<Arc<dyn EventStore>> {
    let store = open_store_unchecked(settings, migrate, settings.audit.chain.clone()).await?;
    check_chain(store.as_ref()).await?;
    shred(settings, store).await
}

/// The `subject_keys` row that checks a node's key (no customer has this id).
const KEY_CHECK: &str = "netia:key-check";

/// `store` with personal fields sealed under per-customer keys (ADR 0023), when this deployment
/// has a secret key (`NETIA_SECRET_KEY`, or SQLite's key file); as it is, with a warning, when not.
async fn shred(settings: &Settings, store: Arc<dyn EventStore>) -> anyhow::Result<Arc<dyn EventStore>> {
    let sealer = crate::secrets::sealer_of(settings).context("cannot read or create the secret key")?;
    let url = settings.database_url.expose_secret();
    // Two connections: a node reads a customer's key once (then holds it until an erasure), and
    // every pooled connection counts against the database's limit, on every node.
    let keys = crate::projector::read_model_pool(url, 2)
        .await
        .with_context(|| format!("cannot open the database for data keys ({})", redact(url)))?;
    // A key-check row (a random key wrapped under the deployment's key, never erased) tells
    // whether this node's key is the one the data keys are wrapped with, even once every customer
    // has been erased; the first live data key does for logs sealed before it existed.
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subject_keys")
        .fetch_one(&keys)
        .await
        .context("cannot read the data keys (subject_keys)")?;
    let wrapped: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT subject, wrapped_key FROM subject_keys WHERE wrapped_key IS NOT NULL \
         ORDER BY CASE WHEN subject = $1 THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(KEY_CHECK)
    .fetch_optional(&keys)
    .await
    .context("cannot read the data keys (subject_keys)")?;
    let source = if settings.secret_key.is_some() {
        "NETIA_SECRET_KEY".to_owned()
    } else {
        format!(
            "the key file beside the SQLite database ({url}.key, made anew if it was missing; restore the one the \
             data was sealed with, or set NETIA_SECRET_KEY to it)",
            url = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default()
        )
    };
    match (&wrapped, sealer.has_key()) {
        _ if rows > 0 && !sealer.has_key() => anyhow::bail!(
            "this log holds personal data sealed under NETIA_SECRET_KEY, which is not set on this node (docs/adr/0023)"
        ),
        (Some((subject, Some(key))), true) if !store::ShreddingStore::key_opens(&sealer, subject, key) => {
            anyhow::bail!(
                "{source} is not the key this log's personal data is sealed under (every node must use the same key; \
                 docs/adr/0023)"
            )
        }
        (_, false) => {
            tracing::warn!(
                "NETIA_SECRET_KEY is not set: personal data is stored in the clear and cannot be erased (docs/adr/0023)"
            );
            return Ok(store);
        }
        _ => {}
    }
    let mut check = [0u8; 32];
    crate::secrets::fill_random(&mut check);
    let check = sealer.seal(&check, &format!("subject-key:{KEY_CHECK}"))?;
    sqlx::query("INSERT INTO subject_keys (subject, wrapped_key) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING")
        .bind(KEY_CHECK)
        .bind(check)
        .execute(&keys)
        .await
        .context("cannot record the key check (subject_keys)")?;
    // Two more for the log's followers, which must not wait behind the requests' lookups.
    let followers_keys = crate::projector::read_model_pool(url, 2)
        .await
        .with_context(|| format!("cannot open the database for data keys ({})", redact(url)))?;
    Ok(Arc::new(
        store::ShreddingStore::new(store, keys, sealer).with_followers_keys(followers_keys),
    ))
}

/// [`open_store`] linking with `chain`, without comparing it with the log's (for `audit rekey`).
pub async fn open_store_unchecked(
    settings: &Settings,
    migrate: bool,
    chain: Chain,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let url = settings.database_url.expose_secret();
    if migrate && let Some(owner) = &settings.audit.migrate_url {
        let app_tables: Vec<&str> = crate::projector::projections()
            .iter()
            .flat_map(|p| p.tables().iter().copied())
            .chain(["projection_checkpoints"])
            .collect();
        store::migrate_as_owner(owner.expose_secret(), url, &app_tables)
            .await
            .with_context(|| {
                format!(
                    "database migration as the owner ({}) failed",
                    redact(owner.expose_secret())
                )
            })?;
    }
    let store = store::connect_with_chain(url, settings.database_max_connections, chain)
        .await
        .with_context(|| format!("cannot open the database ({})", redact(url)))?;
    if migrate && settings.audit.migrate_url.is_none() {
        store.migrate().await.context("database migration failed")?;
    }
    if migrate {
        tracing::info!("database schema is up to date");
    }
    Ok(store)
}

/// Compares the store's chain with the key id the log records; an empty log takes the store's key.
async fn check_chain(store: &dyn EventStore) -> anyhow::Result<()> {
    let recorded = store
        .chain_marker()
        .await
        .context("cannot read which chain the log uses (audit_chain)")?;
    match (store.chain(), recorded) {
        (Chain::Plain, None) => Ok(()),
        (Chain::Keyed(key), Some(id)) if key.id() == id => Ok(()),
        (Chain::Plain, Some(id)) => anyhow::bail!(
            "the log's chain is keyed (HMAC-SHA256, key id {id}): set AUDIT_KEY to that key (docs/adr/0021)"
        ),
        (Chain::Keyed(key), Some(id)) => anyhow::bail!(
            "AUDIT_KEY (key id {}) is not the key the log is linked with (key id {id}); to rotate keys, set \
             AUDIT_KEY_PREVIOUS to the old key and run `netia audit rekey` with every node stopped",
            key.id()
        ),
        (Chain::Keyed(key), None) => {
            if store
                .mark_keyed_if_empty(key)
                .await
                .context("cannot record the chain's key")?
            {
                tracing::info!(key_id = %key.id(), "the new log is linked with HMAC-SHA256 under AUDIT_KEY");
                Ok(())
            } else {
                anyhow::bail!(
                    "AUDIT_KEY is set but the log's links are plain SHA-256: stop every node and run \
                     `netia audit rekey` once (with AUDIT_KEY set) to relink it (docs/adr/0021)"
                )
            }
        }
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://…@{host}")
        }
        _ => url.to_owned(),
    }
}
