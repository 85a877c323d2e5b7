//! The customer aggregate: who a customer is and what we know about them.

#[cfg(test)]
mod tests;

use netia_events::customer::*;
use netia_events::{AccountId, CustomerId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validate::{MAX_KEY_CHARS, is_email, is_label};

/// Most metadata keys a customer can carry.
pub const MAX_METADATA_KEYS: usize = 100;
/// Largest serialized metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerCommand {
    Create {
        customer_id: CustomerId,
        account_id: AccountId,
        identity: CustomerIdentity,
        metadata: Map<String, Value>,
        /// The account vouches for `identity` (a valid `user_hash`, or an agent entered it).
        verified: bool,
    },
    /// Sets the given fields. `verified`: the account vouches for them; an unverified call never
    /// takes away the verification of a value it leaves unchanged.
    Identify {
        identity: CustomerIdentity,
        verified: bool,
    },
    UpdateMetadata {
        changes: Map<String, Value>,
    },
    Delete {
        deleted_by: UserId,
    },
    /// Erase the customer's personal data (ADR 0023); a no-op when already erased. Applies to a
    /// deleted customer too.
    Erase {
        erased_by: Option<UserId>,
        erased_at: chrono::DateTime<chrono::Utc>,
    },
    /// A connection opened (`online: true`) or the last one closed; a no-op when nothing changes.
    SetOnline {
        online: bool,
    },
}

impl crate::Commutes for CustomerCommand {
    fn commutes(&self) -> bool {
        !matches!(self, CustomerCommand::Create { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("customer not found")]
    NotFound,
    #[error("customer already exists")]
    AlreadyExists,
    #[error("email address is invalid")]
    InvalidEmail,
    #[error("{field} must be 1 to {max} printable characters")]
    InvalidField { field: &'static str, max: usize },
    #[error(
        "metadata may hold at most {MAX_METADATA_KEYS} keys of at most 100 characters and {MAX_METADATA_BYTES} bytes"
    )]
    MetadataTooLarge,
    #[error("phone must be at most 32 characters: digits (3 or more), spaces, - . ( ) /, and + only first")]
    InvalidPhone,
    #[error(
        "metadata numbers must be integers within 64 bits or decimals between -2^53 and 2^53 \
         (RFC 8259 §6); send larger ones as strings"
    )]
    InexactNumber,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Option<CustomerId>,
    pub account_id: Option<AccountId>,
    pub identity: CustomerIdentity,
    pub metadata: Map<String, Value>,
    pub deleted: bool,
    /// Erased (ADR 0023): also `deleted`, with identity and metadata forgotten.
    #[serde(default)]
    pub erased: bool,
    pub online: bool,
    /// The account vouches for the external id (identity verification).
    #[serde(default)]
    pub verified: bool,
    /// The account vouches for the email address: reply emails may go to it.
    #[serde(default)]
    pub email_verified: bool,
}

impl Customer {
    pub fn evolve(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::CustomerCreated(e) => {
                self.id = Some(e.customer_id);
                self.account_id = Some(e.account_id);
                self.identity = e.identity.clone();
                self.metadata = e.metadata.clone();
                self.verified = e.verified && e.identity.external_id.is_some();
                self.email_verified = e.verified && e.identity.email.is_some();
            }
            CustomerEvent::CustomerIdentified(e) => {
                merge_identity(&mut self.identity, &e.identity);
                if e.identity.external_id.is_some() {
                    self.verified = e.verified;
                }
                if e.identity.email.is_some() {
                    self.email_verified = e.verified;
                }
            }
            CustomerEvent::CustomerMetadataUpdated(e) => merge_metadata(&mut self.metadata, &e.changes),
            CustomerEvent::CustomerDeleted(_) => self.deleted = true,
            CustomerEvent::CustomerCameOnline(_) => self.online = true,
            CustomerEvent::CustomerWentOffline(_) => self.online = false,
            CustomerEvent::CustomerErased(_) => {
                self.erased = true;
                self.deleted = true;
                self.online = false;
                self.identity = CustomerIdentity::default();
                self.metadata = Map::new();
                self.verified = false;
                self.email_verified = false;
            }
        }
    }
}

impl crate::Decide for Customer {
    fn subject(&self) -> Option<String> {
        self.id.map(|c| c.to_string())
    }

    fn decide(&self, command: &CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        match (self.id, command) {
            (
                None,
                CustomerCommand::Create {
                    customer_id,
                    account_id,
                    identity,
                    metadata,
                    verified,
                },
            ) => {
                check_identity(identity)?;
                check_numbers(metadata)?;
                let mut merged = Map::new();
                merge_metadata(&mut merged, metadata);
                check_metadata(&merged)?;
                Ok(vec![CustomerEvent::CustomerCreated(CustomerCreated {
                    customer_id: *customer_id,
                    account_id: *account_id,
                    identity: normalize(identity),
                    metadata: merged,
                    verified: *verified,
                })])
            }
            (None, _) => Err(CustomerError::NotFound),
            (Some(_), CustomerCommand::Create { .. }) => Err(CustomerError::AlreadyExists),
            (Some(_), CustomerCommand::Erase { .. }) if self.erased => Ok(Vec::new()),
            (Some(_), CustomerCommand::Erase { erased_by, erased_at }) => {
                Ok(vec![CustomerEvent::CustomerErased(CustomerErased {
                    erased_by: *erased_by,
                    erased_at: *erased_at,
                })])
            }
            (Some(_), _) if self.deleted => Err(CustomerError::NotFound),
            (Some(_), CustomerCommand::SetOnline { online }) => Ok(match (self.online, online) {
                (false, true) => vec![CustomerEvent::CustomerCameOnline(CustomerCameOnline {})],
                (true, false) => vec![CustomerEvent::CustomerWentOffline(CustomerWentOffline {})],
                _ => Vec::new(),
            }),
            (Some(_), CustomerCommand::Delete { deleted_by }) => {
                Ok(vec![CustomerEvent::CustomerDeleted(CustomerDeleted {
                    deleted_by: *deleted_by,
                })])
            }
            (Some(_), CustomerCommand::Identify { identity, verified }) => {
                check_identity(identity)?;
                let identity = normalize(identity);
                // A value now vouched for counts as a change even when it is the same.
                let vouched = |was_verified: bool| *verified && !was_verified;
                let changed = CustomerIdentity {
                    external_id: changed(
                        &self.identity.external_id,
                        &identity.external_id,
                        vouched(self.verified),
                    ),
                    email: changed(&self.identity.email, &identity.email, vouched(self.email_verified)),
                    name: changed(&self.identity.name, &identity.name, false),
                    phone: changed(&self.identity.phone, &identity.phone, false),
                };
                Ok(if changed == CustomerIdentity::default() {
                    Vec::new()
                } else {
                    vec![CustomerEvent::CustomerIdentified(CustomerIdentified {
                        identity: changed,
                        verified: *verified,
                    })]
                })
            }
            (Some(_), CustomerCommand::UpdateMetadata { changes }) => {
                check_numbers(changes)?;
                let mut after = self.metadata.clone();
                merge_metadata(&mut after, changes);
                check_metadata(&after)?;
                let effective: Map<String, Value> = changes
                    .iter()
                    .filter(|(k, v)| {
                        let current = self.metadata.get(*k);
                        if v.is_null() {
                            current.is_some()
                        } else {
                            current != Some(*v)
                        }
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(if effective.is_empty() {
                    Vec::new()
                } else {
                    vec![CustomerEvent::CustomerMetadataUpdated(CustomerMetadataUpdated {
                        changes: effective,
                    })]
                })
            }
        }
    }
}

crate::aggregate!(Customer, "customer", CustomerCommand, CustomerEvent, CustomerError);

/// `new` if it differs from `current`, or also if it is the same and `even_if_same`.
fn changed(current: &Option<String>, new: &Option<String>, even_if_same: bool) -> Option<String> {
    match new {
        Some(v) if even_if_same || current.as_ref() != Some(v) => Some(v.clone()),
        _ => None,
    }
}

fn normalize(identity: &CustomerIdentity) -> CustomerIdentity {
    CustomerIdentity {
        external_id: identity.external_id.as_ref().map(|s| s.trim().to_owned()),
        email: identity.email.as_ref().map(|s| s.trim().to_lowercase()),
        name: identity.name.as_ref().map(|s| s.trim().to_owned()),
        phone: identity.phone.as_ref().map(|s| s.trim().to_owned()),
    }
}

fn check_identity(identity: &CustomerIdentity) -> Result<(), CustomerError> {
    if let Some(email) = &identity.email
        && !is_email(email.trim())
    {
        return Err(CustomerError::InvalidEmail);
    }
    let fields = [
        ("external_id", &identity.external_id, MAX_KEY_CHARS),
        ("name", &identity.name, 200),
    ];
    for (field, value, max) in fields {
        if let Some(v) = value
            && !is_label(v, max)
        {
            return Err(CustomerError::InvalidField { field, max });
        }
    }
    if let Some(phone) = &identity.phone
        && !is_phone(phone.trim())
    {
        return Err(CustomerError::InvalidPhone);
    }
    Ok(())
}

/// A phone number as people write theirs (`+44 20 7946 0000`, `(555) 123-4567`): at most 32
/// characters, digits (at least 3), spaces and `- . ( ) /`, and a `+` only as the first. Not held
/// to E.164: SMS conversations store Twilio's E.164 sender as it comes.
pub fn is_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let rest = phone.strip_prefix('+').unwrap_or(phone);
    phone.chars().count() <= 32
        && digits >= 3
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'))
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), CustomerError> {
    let size = serde_json::to_string(metadata).map(|s| s.len()).unwrap_or(usize::MAX);
    if metadata.len() > MAX_METADATA_KEYS || size > MAX_METADATA_BYTES || metadata.keys().any(|k| !is_label(k, 100)) {
        return Err(CustomerError::MetadataTooLarge);
    }
    Ok(())
}

/// Refuses a number that would not read back as it was sent. Without serde_json's
/// `arbitrary_precision`, an integer beyond 64 bits is parsed as the nearest `f64`, silently
/// rounded; as that cannot be told apart from a decimal written that large, every non-integer
/// number of magnitude 2^53 or more is refused (the limit of exact integers in an IEEE 754 double,
/// which RFC 8259 §6 names as the interoperable range). Integers within `i64`/`u64` are kept exactly.
fn check_numbers(metadata: &Map<String, Value>) -> Result<(), CustomerError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    fn exact(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.abs() < EXACT),
            Value::Array(items) => items.iter().all(exact),
            Value::Object(fields) => fields.values().all(exact),
            _ => true,
        }
    }
    if metadata.values().all(exact) {
        Ok(())
    } else {
        Err(CustomerError::InexactNumber)
    }
}

fn merge_identity(into: &mut CustomerIdentity, changes: &CustomerIdentity) {
    let pairs = [
        (&mut into.external_id, &changes.external_id),
        (&mut into.email, &changes.email),
        (&mut into.name, &changes.name),
        (&mut into.phone, &changes.phone),
    ];
    for (slot, change) in pairs {
        if change.is_some() {
            slot.clone_from(change);
        }
    }
}

fn merge_metadata(into: &mut Map<String, Value>, changes: &Map<String, Value>) {
    for (key, value) in changes {
        if value.is_null() {
            into.remove(key);
        } else {
            into.insert(key.clone(), value.clone());
        }
    }
}
