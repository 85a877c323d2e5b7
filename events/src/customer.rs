//! Customer events: created, identified, metadata updated, deleted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codec::no_upcasters;
use crate::event_family;
use crate::ids::{AccountId, CustomerId, UserId};

event_family! {
    /// Everything that happens to a customer.
    CustomerEvent, stream = "customer", upcasters = no_upcasters, {
        CustomerCreated = 1,
        CustomerIdentified = 1,
        CustomerMetadataUpdated = 1,
        CustomerDeleted = 1,
        CustomerCameOnline = 1,
        CustomerWentOffline = 1,
        CustomerErased = 1,
    }
}

/// The ways a customer can be recognised again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerCreated {
    pub customer_id: CustomerId,
    pub account_id: AccountId,
    pub identity: CustomerIdentity,
    /// Browser and host-page facts sent by the widget, or anything an agent records.
    pub metadata: Map<String, Value>,
    /// Whether the account vouches for `identity`: the widget sent a `user_hash` that matches
    /// the account's identity secret (HMAC-SHA256 of the external id), or an agent entered it.
    /// Absent (false) in events written before identity verification existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
}

/// Fields newly learnt or changed; absent fields are unchanged. A field may also appear unchanged
/// when the account now vouches for a value it did not vouch for before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerIdentified {
    pub identity: CustomerIdentity,
    /// Whether the account vouches for the fields set here (see [`CustomerCreated::verified`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
}

/// Keys set (a `null` value removes the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMetadataUpdated {
    pub changes: Map<String, Value>,
}

/// The customer's personal data was erased (GDPR art. 17, ADR 0023): their data key is destroyed,
/// so every personal field of their events reads as `[erased]` (or empty), read models forget them,
/// and no command applies to them any more. `erased_by` is the admin, `None` for the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerErased {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_by: Option<UserId>,
    pub erased_at: chrono::DateTime<chrono::Utc>,
}

/// An agent removed the customer: read models forget the profile, its tokens stop working, and no
/// command applies to it any more. The conversations stay (they are the account's history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerDeleted {
    pub deleted_by: UserId,
}

/// The customer opened a connection (widget socket) while none was open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerCameOnline {}

/// The customer's last connection closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerWentOffline {}
