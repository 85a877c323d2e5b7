//! Data keys (ADR 0023): made, wrapped, stored in `subject_keys`, read and cached per node.

use std::sync::Arc;
use std::time::Instant;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use netia_events::RecordedEvent;
use netia_events::personal;
use sqlx::AnyPool;

use super::{DataKey, KEY_CACHE_TTL, MAX_CACHED_KEYS, PREFIX, ShreddingStore};
use crate::store::{Backend, StoreError};

impl ShreddingStore {
    /// The key this node holds for `subject`. Live keys are kept until an erasure: every node's
    /// tailers (broadcaster, projectors, relay) read the `CustomerErased` event within moments and
    /// forget the key then; an absent key (`Gone` without a row) is looked up again after
    /// [`KEY_CACHE_TTL`].
    pub(super) fn cached(&self, subject: &str) -> Option<DataKey> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(subject)
            .filter(|(key, at)| matches!(key, DataKey::Live(_)) || at.elapsed() < KEY_CACHE_TTL)
            .map(|(key, _)| key.clone())
    }

    pub(super) fn remember(&self, subject: &str, key: DataKey) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(subject.to_owned(), (key, Instant::now()));
    }

    fn unwrap_key(&self, subject: &str, wrapped: &str) -> Result<DataKey, StoreError> {
        let key = self
            .sealer
            .open(wrapped, &key_context(subject))
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(|| {
                StoreError::Keys(format!(
                    "the data key of customer {subject} does not open with NETIA_SECRET_KEY (another key, or altered)"
                ))
            })?;
        Ok(DataKey::Live(Arc::new(Aes256Gcm::new((&key).into()))))
    }

    /// `subject`'s key for reading: `Gone` when erased or missing.
    pub(super) async fn key_for_reading(&self, subject: &str) -> Result<DataKey, StoreError> {
        if let Some(key) = self.cached(subject) {
            return Ok(key);
        }
        Ok(self.load_key(subject).await?.unwrap_or(DataKey::Gone))
    }

    /// `subject`'s key as `subject_keys` holds it (remembered): `None` when it has no row.
    async fn load_key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT wrapped_key FROM subject_keys WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.keys)
            .await
            .map_err(keys_unreachable)?;
        let Some((wrapped,)) = row else {
            return Ok(None);
        };
        let key = match wrapped {
            Some(wrapped) => self.unwrap_key(subject, &wrapped)?,
            None => DataKey::Gone,
        };
        self.remember(subject, key.clone());
        Ok(Some(key))
    }

    /// `subject`'s key for writing: created on its first event; `Gone` once erased. A key this
    /// node holds is used whatever its age: if another node erased it meanwhile, what is sealed
    /// with it cannot be opened either.
    ///
    /// A subject this node does not hold is most often new altogether (its first event with
    /// something to seal, which is on the path of a customer's first message), so the key is
    /// made first and offered to `subject_keys` in the statement that reads the row when one is
    /// there already (made by another node, or erased): one round trip on PostgreSQL either way.
    pub(super) async fn key_for_writing(&self, subject: &str) -> Result<DataKey, StoreError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((DataKey::Live(key), _)) = cache.get(subject) {
                return Ok(DataKey::Live(key.clone()));
            }
        }
        let mut fresh = [0u8; 32];
        crate::secrets::fill_random(&mut fresh);
        let wrapped = self
            .sealer
            .seal(&fresh, &key_context(subject))
            .map_err(|e| StoreError::Keys(e.to_string()))?;
        // Both statements answer the row's key when the row is ours; PostgreSQL's also answers an
        // existing row's (its snapshot does not see the row it inserts, so at most one branch
        // answers). Another node inserting at the same moment can leave both empty: read again.
        let sql = match self.inner.backend() {
            Backend::Postgres => {
                "WITH made AS (INSERT INTO subject_keys (subject, wrapped_key) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO NOTHING RETURNING wrapped_key) \
                 SELECT wrapped_key FROM made \
                 UNION ALL SELECT wrapped_key FROM subject_keys WHERE subject = $1"
            }
            Backend::Sqlite => {
                "INSERT INTO subject_keys (subject, wrapped_key) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO NOTHING RETURNING wrapped_key"
            }
        };
        let row: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(subject)
            .bind(&wrapped)
            .fetch_optional(&self.keys)
            .await
            .map_err(keys_unreachable)?;
        let key = match row {
            Some((Some(stored),)) if stored == wrapped => DataKey::Live(Arc::new(Aes256Gcm::new((&fresh).into()))),
            Some((Some(stored),)) => self.unwrap_key(subject, &stored)?,
            Some((None,)) => DataKey::Gone,
            None => return Ok(self.load_key(subject).await?.unwrap_or(DataKey::Gone)),
        };
        self.remember(subject, key.clone());
        Ok(key)
    }

    /// Reads, in one query per 500, the keys of the subjects whose sealed fields `events` hold
    /// and this node does not hold yet: a tailer's batch then costs one round trip, not one per
    /// customer (a node reading what another node wrote meets many customers new to it).
    pub(super) async fn load_keys_of(&self, events: &mut [RecordedEvent], keys: &AnyPool) -> Result<(), StoreError> {
        let mut missing = std::collections::BTreeSet::new();
        for event in events.iter_mut() {
            for field in personal::fields(&event.event_type) {
                personal::visit(&mut event.payload, field.path, &mut |value| {
                    if let Some((subject, _)) = value
                        .as_str()
                        .and_then(|t| t.strip_prefix(PREFIX))
                        .and_then(|rest| rest.split_once(':'))
                        && self.cached(subject).is_none()
                    {
                        missing.insert(subject.to_owned());
                    }
                });
            }
        }
        let missing: Vec<String> = missing.into_iter().collect();
        for chunk in missing.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT subject, wrapped_key FROM subject_keys WHERE subject IN ({list})");
            let mut query = sqlx::query_as::<_, (String, Option<String>)>(&sql);
            for subject in chunk {
                query = query.bind(subject.clone());
            }
            for (subject, wrapped) in query.fetch_all(keys).await.map_err(keys_unreachable)? {
                let key = match wrapped {
                    Some(wrapped) => self.unwrap_key(&subject, &wrapped)?,
                    None => DataKey::Gone,
                };
                self.remember(&subject, key);
            }
        }
        Ok(())
    }
}

/// A failure of `subject_keys`' pool, named as such: [`StoreError::Unavailable`] when the database
/// cannot be used right now (the same read may succeed later), else the database error.
fn keys_unreachable(e: sqlx::Error) -> StoreError {
    if crate::store::database_unavailable(&e) {
        StoreError::Unavailable(format!("data keys: {e}"))
    } else {
        StoreError::Database(e)
    }
}

pub(super) fn key_context(subject: &str) -> String {
    format!("subject-key:{subject}")
}
