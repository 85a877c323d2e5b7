//! Crypto-shredding at the store boundary (ADR 0023): [`ShreddingStore`] wraps the event store,
//! seals every personal field of an event ([`netia_events::personal::fields`]) with its subject's
//! data key before the append, and opens them on every read. The inner store, its hash chain and
//! `audit verify` only ever see ciphertext; destroying a subject's key ([`EventStore::erase_subject`])
//! makes every one of its fields read as `[erased]` (or empty), everywhere, for good.
//!
//! A sealed field is the JSON string `sealed:v1:<subject>:<base64url(nonce ‖ AES-256-GCM(JSON value))>`
//! (12-byte random nonce, NIST SP 800-38D); its associated data is `<event id>:<field>:<subject>`,
//! so a sealed value moved to another event or field does not open. Data keys are 256 random bits
//! per subject, kept in `subject_keys` wrapped under `NETIA_SECRET_KEY` ([`Sealer`]), and cached
//! per node for [`KEY_CACHE_TTL`]: another node's erasure takes effect here within that time, or
//! at once when this node reads the `CustomerErased` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use netia_events::chain::{BrokenLink, Chain, ChainKey};
use netia_events::personal::{self, PersonalField};
use netia_events::{Checkpoint, NewEvent, RecordedEvent, StreamRef};
use serde_json::Value;
use sqlx::AnyPool;
use tokio::sync::watch;

use super::{Backend, EventStore, Rekeyed, StoreError, StreamBound};
use crate::secrets::Sealer;

/// How long a node trusts a data key it read (or its absence) before reading `subject_keys` again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 12;
/// Cached keys beyond this are all dropped at once (they are read again on demand).
const MAX_CACHED_KEYS: usize = 100_000;

/// A subject's data key as this node knows it.
#[derive(Clone)]
enum DataKey {
    Live(Arc<Aes256Gcm>),
    /// Erased, or never had one (a sealed value naming it cannot be opened).
    Gone,
}

/// The event store with personal fields sealed (see the module documentation).
pub struct ShreddingStore {
    inner: Arc<dyn EventStore>,
    keys: AnyPool,
    /// Where the log's followers (projectors, relay, broadcaster: [`EventStore::read_all`]) read
    /// the keys of the customers new to this node: beside, not behind, the requests' lookups.
    followers_keys: AnyPool,
    sealer: Sealer,
    cache: Mutex<HashMap<String, (DataKey, Instant)>>,
}

impl ShreddingStore {
    /// Wraps `inner`, keeping data keys in `keys` (the same database's `subject_keys`) wrapped by
    /// `sealer`, which must have a key.
    pub fn new(inner: Arc<dyn EventStore>, keys: AnyPool, sealer: Sealer) -> Self {
        Self {
            inner,
            followers_keys: keys.clone(),
            keys,
            sealer,
            cache: Mutex::default(),
        }
    }

    /// Reads the keys that [`EventStore::read_all`] needs through `pool` instead of the requests'
    /// (after PostgreSQL restarts, a crowd of retrying clients queues for those).
    pub fn with_followers_keys(mut self, pool: AnyPool) -> Self {
        self.followers_keys = pool;
        self
    }

    /// How many personal fields of `event`, as stored, hold something in the clear: not sealed,
    /// not empty, not already the erased value (events written before sealing was on).
    pub fn fields_in_clear(event: &RecordedEvent) -> usize {
        let mut clear = 0;
        let mut payload = event.payload.clone();
        for field in personal::fields(&event.event_type) {
            personal::visit(&mut payload, field.path, &mut |value| {
                let sealed = value.as_str().is_some_and(|t| t.starts_with(PREFIX));
                if !sealed && !is_empty_container(value) && *value != field.erased.value() {
                    clear += 1;
                }
            });
        }
        clear
    }

    /// Whether `wrapped`, `subject`'s data key as `subject_keys` holds it, opens with `sealer`.
    pub fn key_opens(sealer: &Sealer, subject: &str, wrapped: &str) -> bool {
        sealer.open(wrapped, &key_context(subject)).is_ok()
    }

    /// Seals the personal fields of `event` in place; returns the payload callers see (the plain
    /// one). [`StoreError::SubjectErased`] when there is something to seal and the subject's key
    /// was destroyed.
    async fn seal(&self, event: &mut NewEvent) -> Result<Value, StoreError> {
        let fields = personal::fields(&event.event_type);
        let plain = event.payload.clone();
        let Some(subject) = event.subject.clone().filter(|_| !fields.is_empty()) else {
            return Ok(plain);
        };
        // Nothing to seal (a customer created without identity, a message without a client id
        // or files): no key needed.
        let mut anything = false;
        for field in fields {
            personal::visit(&mut event.payload, field.path, &mut |value| {
                anything |= !is_empty_container(value);
            });
        }
        if !anything {
            return Ok(plain);
        }
        let key = self.key_for_writing(&subject).await?;
        // Nothing new is recorded about an erased person: what would be sealed could never be
        // read (an agent's reply would be stored as `[erased]` and answered as if saved).
        if let DataKey::Gone = key {
            return Err(StoreError::SubjectErased(subject));
        }
        // Nothing to hide in an empty list or object (most messages have no attachments).
        seal_fields(
            &mut event.payload,
            event.event_id,
            fields,
            &subject,
            &key,
            &|value, _| is_empty_container(value),
        )?;
        Ok(plain)
    }

    /// Opens the sealed fields of `event` in place.
    async fn open(&self, event: &mut RecordedEvent) -> Result<(), StoreError> {
        if event.event_type == "CustomerErased" {
            self.remember(&event.stream_id, DataKey::Gone);
        }
        for field in personal::fields(&event.event_type) {
            let mut sealed = Vec::new();
            personal::visit(&mut event.payload, field.path, &mut |value| {
                if let Some(text) = value.as_str().and_then(|t| t.strip_prefix(PREFIX)) {
                    sealed.push(text.to_owned());
                }
            });
            let mut opened = Vec::with_capacity(sealed.len());
            for text in &sealed {
                opened.push(self.open_value(event, field, text).await?);
            }
            let mut opened = opened.into_iter();
            personal::visit(&mut event.payload, field.path, &mut |value| {
                if value.as_str().is_some_and(|t| t.starts_with(PREFIX))
                    && let Some(v) = opened.next()
                {
                    *value = v;
                }
            });
        }
        // A typed form decoded from the sealed payload (a copy decoded before it was opened).
        event.decoded.forget();
        Ok(())
    }

    async fn open_value(&self, event: &RecordedEvent, field: &PersonalField, text: &str) -> Result<Value, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            position: event.global_position,
            reason: format!("sealed field {}: {reason}", field.path),
        };
        let Some((subject, body)) = text
            .split_once(':')
            .filter(|(subject, _)| uuid::Uuid::try_parse(subject).is_ok())
        else {
            // Text written in the clear (before sealing, or without a key) that merely starts
            // like a sealed value.
            return Ok(Value::String(format!("{PREFIX}{text}")));
        };
        let cipher = match self.key_for_reading(subject).await? {
            DataKey::Gone => return Ok(field.erased.value()),
            DataKey::Live(cipher) => cipher,
        };
        let context = seal_context(event.event_id, field, subject);
        let Some(plain) = decrypt(&cipher, body, &context) else {
            // Altered, moved from another event, or text written in the clear before sealing
            // that only looks sealed: shown as stored (the chain tells whether it was altered),
            // rather than stopping every reader of the log at this event.
            tracing::warn!(
                position = event.global_position,
                field = field.path,
                "a sealed-looking field does not open with its customer's key; shown as stored"
            );
            return Ok(Value::String(format!("{PREFIX}{text}")));
        };
        serde_json::from_slice(&plain).map_err(|_| corrupt("not JSON inside"))
    }

    async fn open_all(&self, mut events: Vec<RecordedEvent>, keys: &AnyPool) -> Result<Vec<RecordedEvent>, StoreError> {
        self.load_keys_of(&mut events, keys).await?;
        for event in &mut events {
            self.open(event).await?;
        }
        Ok(events)
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn seal_context(event_id: uuid::Uuid, field: &PersonalField, subject: &str) -> String {
    format!("{event_id}:{}:{subject}", field.path)
}

fn seal_value(cipher: &Aes256Gcm, value: &Value, context: &str, subject: &str) -> Result<String, StoreError> {
    let plain = serde_json::to_vec(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut nonce = [0u8; NONCE_BYTES];
    crate::secrets::fill_random(&mut nonce);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| StoreError::Invalid("a personal field is too large to seal".into()))?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    Ok(format!("{PREFIX}{subject}:{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[async_trait]
impl EventStore for ShreddingStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn append(
        &self,
        stream: &StreamRef,
        expected_version: i64,
        mut events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut seen = Vec::with_capacity(events.len());
        for event in &mut events {
            seen.push(self.seal(event).await?);
        }
        let mut recorded = self.inner.append(stream, expected_version, events).await?;
        for (event, payload) in recorded.iter_mut().zip(seen) {
            event.payload = payload;
            event.decoded.forget();
        }
        Ok(recorded)
    }

    async fn read_stream(&self, stream: &StreamRef, bound: StreamBound) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, bound).await?;
        self.open_all(events, &self.keys).await
    }

    async fn stream_version(&self, stream: &StreamRef) -> Result<i64, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        match self.inner.read_event(event_id).await? {
            Some(mut event) => {
                self.open(&mut event).await?;
                Ok(Some(event))
            }
            None => Ok(None),
        }
    }

    async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(after, limit).await?;
        self.open_all(events, &self.followers_keys).await
    }

    async fn read_all_payloads(&self, after: Checkpoint, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all_payloads(after, limit).await?;
        self.open_all(events, &self.followers_keys).await
    }

    fn log_mark(&self) -> Option<super::LogMark> {
        self.inner.log_mark()
    }

    async fn stream_since(
        &self,
        stream: &StreamRef,
        version: i64,
        mark: &super::LogMark,
    ) -> Result<Option<(Vec<RecordedEvent>, super::LogMark)>, StoreError> {
        match self.inner.stream_since(stream, version, mark).await? {
            Some((events, mark)) => Ok(Some((self.open_all(events, &self.keys).await?, mark))),
            None => Ok(None),
        }
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }

    async fn lag(&self, after: Checkpoint) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        self.inner.lag(after).await
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.inner.wake()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn streams(&self) -> Result<Vec<StreamRef>, StoreError> {
        self.inner.streams().await
    }

    /// The chain covers what is stored (the ciphertext), so it is checked on the inner store.
    async fn verify_stream(&self, stream: &StreamRef) -> Result<Option<BrokenLink>, StoreError> {
        self.inner.verify_stream(stream).await
    }

    fn chain(&self) -> &Chain {
        self.inner.chain()
    }

    async fn chain_marker(&self) -> Result<Option<String>, StoreError> {
        self.inner.chain_marker().await
    }

    async fn mark_keyed_if_empty(&self, key: &ChainKey) -> Result<bool, StoreError> {
        self.inner.mark_keyed_if_empty(key).await
    }

    async fn rekey(&self, from: &Chain, to: &ChainKey, owner_url: Option<&str>) -> Result<Rekeyed, StoreError> {
        self.inner.rekey(from, to, owner_url).await
    }

    fn stored(&self) -> &dyn EventStore {
        self.inner.stored()
    }

    async fn rewrite(&self, owner_url: Option<&str>, rewrite: super::Rewrite<'_>) -> Result<Rekeyed, StoreError> {
        self.inner.rewrite(owner_url, rewrite).await
    }

    async fn seal_existing(&self, owner_url: Option<&str>) -> Result<Rekeyed, StoreError> {
        // Every customer's key first (created where missing): the rewrite itself cannot wait on
        // the database, it runs inside the transaction that holds the append lock.
        let mut keys = HashMap::new();
        for stream in self.inner.streams().await? {
            if stream.stream_type == "customer" {
                let key = self.key_for_writing(&stream.stream_id).await?;
                keys.insert(stream.stream_id, key);
            }
        }
        let mut conversations: HashMap<String, String> = HashMap::new();
        let mut reseal = |event: &RecordedEvent| reseal(event, &keys, &mut conversations);
        self.inner.rewrite(owner_url, &mut reseal).await
    }

    fn seals_personal_data(&self) -> bool {
        true
    }

    async fn erase_subject(&self, subject: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subject_keys (subject, wrapped_key, erased_at) VALUES ($1, NULL, CURRENT_TIMESTAMP) \
             ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, \
             erased_at = COALESCE(subject_keys.erased_at, CURRENT_TIMESTAMP)",
        )
        .bind(subject)
        .execute(&self.keys)
        .await?;
        self.remember(subject, DataKey::Gone);
        Ok(())
    }
}

mod keys;
mod reseal;
#[cfg(test)]
mod tests;

use keys::key_context;
use reseal::{decrypt, reseal, seal_fields};
