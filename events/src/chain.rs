//! The per-stream hash chain: `hash = sha256(prev_hash ‖ canonical event)`, or, once the log is
//! keyed (`AUDIT_KEY`, ADR 0021), `hash = HMAC-SHA256(key, prev_hash ‖ canonical event)` (RFC 2104):
//! without the key, someone who can rewrite rows cannot compute links that verify.
//!
//! The canonical form is independent of how a backend stores JSON (jsonb reorders keys, SQLite keeps
//! text): objects are written with sorted keys, numbers as serde_json prints them, times in UTC with
//! microseconds. Any edit, deletion or reordering of a stored row changes some link of the chain.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The secret an auditor's chain is keyed with: 32 bytes, kept out of the database.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A public name for the key (16 hex digits: the first 8 bytes of
    /// `HMAC-SHA256(key, "netia audit key id")`), stored beside the log so that a node started with
    /// another key, or none, refuses to append links that would not verify. It reveals nothing of
    /// the key.
    pub fn id(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"netia audit key id");
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; 32 bytes cannot be refused.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.id())
    }
}

/// How links are computed: plain SHA-256, or HMAC-SHA256 under a [`ChainKey`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Chain {
    #[default]
    Plain,
    Keyed(ChainKey),
}

impl Chain {
    /// The link of one event, given the link before it.
    pub fn link(&self, prev_hash: &[u8], event: &ChainInput<'_>) -> [u8; 32] {
        match self {
            Chain::Plain => link(prev_hash, event),
            Chain::Keyed(key) => {
                let mut mac = key.mac();
                mac.update(prev_hash);
                mac.update(canonical(event).as_bytes());
                mac.finalize().into_bytes().into()
            }
        }
    }

    /// The key's id, if keyed.
    pub fn key_id(&self) -> Option<String> {
        match self {
            Chain::Plain => None,
            Chain::Keyed(key) => Some(key.id()),
        }
    }

    /// How anchors and reports name this chain: `sha256`, or `hmac-sha256:<key id>`.
    pub fn name(&self) -> String {
        match self {
            Chain::Plain => "sha256".to_owned(),
            Chain::Keyed(key) => format!("hmac-sha256:{}", key.id()),
        }
    }

    /// Checks a whole stream read in version order; returns the first version whose link is wrong.
    /// A keyed chain accepts keyed links only: a stream rewritten with plain links does not verify.
    pub fn first_broken_link<'a, I>(&self, events: I) -> Option<BrokenLink>
    where
        I: IntoIterator<Item = (ChainInput<'a>, &'a [u8])>,
    {
        let mut prev: Vec<u8> = GENESIS.to_vec();
        for (expected_version, (input, stored)) in (1_i64..).zip(events) {
            if input.version != expected_version {
                return Some(BrokenLink {
                    version: expected_version,
                    reason: format!(
                        "version {} found where {} was expected",
                        input.version, expected_version
                    ),
                });
            }
            let computed = self.link(&prev, &input);
            if computed.as_slice() != stored {
                return Some(BrokenLink {
                    version: input.version,
                    reason: "stored hash does not match the event and the link before it".to_owned(),
                });
            }
            prev = stored.to_vec();
        }
        None
    }
}

/// The hash before the first event of every stream.
pub const GENESIS: [u8; 32] = [0; 32];

/// The fields of an event that the chain covers.
pub struct ChainInput<'a> {
    pub event_id: Uuid,
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub payload: &'a Value,
    pub metadata: &'a Value,
    pub recorded_at: DateTime<Utc>,
}

/// The plain (SHA-256) link of one event, given the link before it.
pub fn link(prev_hash: &[u8], event: &ChainInput<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical(event).as_bytes());
    hasher.finalize().into()
}

/// The text a link covers: a JSON array of the event's fields, objects with sorted keys.
fn canonical(event: &ChainInput<'_>) -> String {
    let mut canonical = String::with_capacity(256);
    canonical.push('[');
    write_json_str(&mut canonical, &event.event_id.to_string());
    canonical.push(',');
    write_json_str(&mut canonical, event.stream_type);
    canonical.push(',');
    write_json_str(&mut canonical, event.stream_id);
    canonical.push(',');
    canonical.push_str(&event.version.to_string());
    canonical.push(',');
    write_json_str(&mut canonical, event.event_type);
    canonical.push(',');
    canonical.push_str(&event.event_version.to_string());
    canonical.push(',');
    write_canonical(&mut canonical, event.payload);
    canonical.push(',');
    write_canonical(&mut canonical, event.metadata);
    canonical.push(',');
    write_json_str(&mut canonical, &format_time(event.recorded_at));
    canonical.push(']');
    canonical
}

/// Times as stored and hashed: UTC, microsecond precision.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Drops sub-microsecond precision, which neither backend stores.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Writes `value` as JSON with object keys in byte order, whatever map type serde_json was built with.
pub fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(out, key);
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
    }
}

/// Numbers are hashed by value, not by spelling: PostgreSQL's jsonb gives `1e16` back as
/// `10000000000000000` and `1.0` as `1.0` while SQLite keeps the text as written. So a float with no
/// fractional part that fits a 64-bit integer is written as that integer, other floats in their
/// shortest round-trip form (serde_json is built with `float_roundtrip`, so reading either spelling
/// gives the same `f64`), and `-0.0` as `0`.
fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f) {
            if f < 0.0 {
                out.push_str(&(f as i64).to_string());
            } else {
                out.push_str(&(f as u64).to_string());
            }
        } else {
            out.push_str(&n.to_string());
        }
    }
}

fn write_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping is deterministic; serializing a &str cannot fail.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// [`Chain::first_broken_link`] of the plain chain.
pub fn first_broken_link<'a, I>(events: I) -> Option<BrokenLink>
where
    I: IntoIterator<Item = (ChainInput<'a>, &'a [u8])>,
{
    Chain::Plain.first_broken_link(events)
}

/// Where a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokenLink {
    pub version: i64,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input<'a>(payload: &'a Value, metadata: &'a Value, version: i64) -> ChainInput<'a> {
        ChainInput {
            event_id: Uuid::nil(),
            stream_type: "conversation",
            stream_id: "c1",
            version,
            event_type: "ConversationClosed",
            event_version: 1,
            payload,
            metadata,
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,2]}}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[1,2],"y":2},"b":1}"#).unwrap_or_default();
        let m = json!({});
        assert_eq!(link(&GENESIS, &input(&a, &m, 1)), link(&GENESIS, &input(&b, &m, 1)));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = json!({"body": "hello"});
        let b = json!({"body": "hellO"});
        let m = json!({});
        assert_ne!(link(&GENESIS, &input(&a, &m, 1)), link(&GENESIS, &input(&b, &m, 1)));
        assert_ne!(link(&GENESIS, &input(&a, &m, 1)), link(&[1; 32], &input(&a, &m, 1)));
    }

    fn canonical(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap_or_default();
        let mut out = String::new();
        write_canonical(&mut out, &value);
        out
    }

    #[test]
    fn numbers_are_hashed_by_value_not_spelling() {
        // Each pair: as a client wrote it, as PostgreSQL's jsonb gives it back.
        let pairs = [
            ("1e16", "10000000000000000"),
            ("1.0", "1"),
            ("-0.0", "0"),
            ("-2.0", "-2"),
            (
                "1.7976931348623157e308",
                &format!("17976931348623157{}.0", "0".repeat(292)),
            ),
            ("1.0035322563707854e-7", "0.00000010035322563707854"),
            ("0.37447882052834275", "0.37447882052834275"),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (written, stored) in pairs {
            assert_eq!(canonical(written), canonical(stored), "{written} vs {stored}");
        }
        assert_ne!(canonical("0.1"), canonical("0.10000000000000002"));
    }

    #[test]
    fn a_gap_or_edit_is_reported_at_its_version() {
        let p = json!({"n": 1});
        let m = json!({});
        let h1 = link(&GENESIS, &input(&p, &m, 1));
        let h2 = link(&h1, &input(&p, &m, 2));
        let ok = vec![(input(&p, &m, 1), &h1[..]), (input(&p, &m, 2), &h2[..])];
        assert_eq!(first_broken_link(ok), None);
        let gap = vec![(input(&p, &m, 1), &h1[..]), (input(&p, &m, 3), &h2[..])];
        assert_eq!(first_broken_link(gap).map(|b| b.version), Some(2));
        let edited = json!({"n": 2});
        let bad = vec![(input(&p, &m, 1), &h1[..]), (input(&edited, &m, 2), &h2[..])];
        assert_eq!(first_broken_link(bad).map(|b| b.version), Some(2));
    }

    #[test]
    fn a_keyed_chain_needs_its_key_and_refuses_plain_links() {
        let p = json!({"body": "hello"});
        let m = json!({});
        let key = Chain::Keyed(ChainKey::new([7; 32]));
        let other = Chain::Keyed(ChainKey::new([8; 32]));
        let k1 = key.link(&GENESIS, &input(&p, &m, 1));
        let k2 = key.link(&k1, &input(&p, &m, 2));
        assert_ne!(
            k1,
            link(&GENESIS, &input(&p, &m, 1)),
            "keyed links are not plain SHA-256"
        );
        assert_ne!(k1, other.link(&GENESIS, &input(&p, &m, 1)), "another key, another link");
        let keyed = || vec![(input(&p, &m, 1), &k1[..]), (input(&p, &m, 2), &k2[..])];
        assert_eq!(key.first_broken_link(keyed()), None);
        assert_eq!(other.first_broken_link(keyed()).map(|b| b.version), Some(1));
        assert_eq!(Chain::Plain.first_broken_link(keyed()).map(|b| b.version), Some(1));
        // A stream rewritten by someone without the key (plain links recomputed) fails the keyed check.
        let h1 = link(&GENESIS, &input(&p, &m, 1));
        let h2 = link(&h1, &input(&p, &m, 2));
        let plain = vec![(input(&p, &m, 1), &h1[..]), (input(&p, &m, 2), &h2[..])];
        assert_eq!(key.first_broken_link(plain).map(|b| b.version), Some(1));
    }

    #[test]
    fn a_key_has_a_stable_public_id() {
        let a = ChainKey::new([7; 32]);
        assert_eq!(a.id().len(), 16);
        assert_eq!(a.id(), ChainKey::new([7; 32]).id());
        assert_ne!(a.id(), ChainKey::new([8; 32]).id());
        assert_eq!(Chain::Keyed(a.clone()).name(), format!("hmac-sha256:{}", a.id()));
        assert_eq!(Chain::Plain.name(), "sha256");
        assert!(!format!("{a:?}").contains("7, 7"), "Debug does not print the key");
    }
}
