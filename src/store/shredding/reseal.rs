//! Sealing the fields of a payload: on append, and in place for `netia gdpr seal-existing`.

use std::collections::HashMap;

use netia_events::RecordedEvent;
use netia_events::personal::{self, PersonalField};
use serde_json::Value;

use aes_gcm::Aes256Gcm;
use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{DataKey, NONCE_BYTES, PREFIX, is_empty_container, seal_context, seal_value};
use crate::store::StoreError;

/// The payload of `event` with its personal fields that are still in the clear sealed with its
/// subject's key in `keys` (or erased, if that key is gone); `None` when nothing changes.
/// `conversations` learns each conversation's customer from its `ConversationCreated`, which is
/// its first event.
pub(super) fn reseal(
    event: &RecordedEvent,
    keys: &HashMap<String, DataKey>,
    conversations: &mut HashMap<String, String>,
) -> Result<Option<Value>, StoreError> {
    let customer_in = |payload: &Value| payload.get("customer_id").and_then(Value::as_str).map(str::to_owned);
    let subject = match event.stream_type.as_str() {
        "customer" => Some(event.stream_id.clone()),
        "customer_external_id" => customer_in(&event.payload),
        "conversation" => {
            if event.event_type == "ConversationCreated"
                && let Some(customer) = customer_in(&event.payload)
            {
                conversations.insert(event.stream_id.clone(), customer);
            }
            conversations.get(&event.stream_id).cloned()
        }
        _ => None,
    };
    let fields = personal::fields(&event.event_type);
    let Some((subject, key)) = subject.and_then(|s| keys.get(&s).map(|k| (s, k))) else {
        return Ok(None);
    };
    let mut payload = event.payload.clone();
    // Values that open with the subject's key are sealed already; anything else (plain text, even
    // text that only looks sealed) is sealed now.
    let sealed_already = |value: &Value, context: &str| {
        is_empty_container(value)
            || match (key, value.as_str().and_then(|t| t.strip_prefix(PREFIX))) {
                (DataKey::Live(cipher), Some(rest)) => rest
                    .split_once(':')
                    .is_some_and(|(s, body)| s == subject && decrypt(cipher, body, context).is_some()),
                _ => false,
            }
    };
    let changed = seal_fields(&mut payload, event.event_id, fields, &subject, key, &sealed_already)?;
    Ok(changed.then_some(payload))
}

/// Seals (or, when `key` is gone, erases) the values of `fields` in `payload` that `keep` does
/// not keep (it gets the value and its sealing context); whether any changed.
pub(super) fn seal_fields(
    payload: &mut Value,
    event_id: uuid::Uuid,
    fields: &[PersonalField],
    subject: &str,
    key: &DataKey,
    keep: &dyn Fn(&Value, &str) -> bool,
) -> Result<bool, StoreError> {
    let mut changed = false;
    for field in fields {
        let context = seal_context(event_id, field, subject);
        let mut failed = None;
        personal::visit(payload, field.path, &mut |value| {
            if keep(value, &context) {
                return;
            }
            changed = true;
            match key {
                DataKey::Gone => *value = field.erased.value(),
                DataKey::Live(cipher) => match seal_value(cipher, value, &context, subject) {
                    Ok(sealed) => *value = Value::String(sealed),
                    Err(e) => failed = Some(e),
                },
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(changed)
}

/// The plaintext of a sealed value's base64url part, if it opens with `cipher` for `context`.
pub(super) fn decrypt(cipher: &Aes256Gcm, body: &str, context: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(body).ok().filter(|b| b.len() > NONCE_BYTES)?;
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: context.as_bytes(),
            },
        )
        .ok()
}
