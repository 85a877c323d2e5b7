//! Claims on a customer's external id: one stream per (account, external id), so that appending
//! its first event with expected version 0 is the uniqueness check — two concurrent claims cannot
//! both succeed, and the log records who held the id when.

use serde::{Deserialize, Serialize};

use crate::codec::no_upcasters;
use crate::event_family;
use crate::ids::{AccountId, CustomerId};

event_family! {
    /// Who holds an external id within an account.
    ExternalIdEvent, stream = "customer_external_id", upcasters = no_upcasters, {
        ExternalIdClaimed = 1,
        ExternalIdReleased = 1,
    }
}

/// `customer_id` now holds `external_id` in `account_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalIdClaimed {
    pub account_id: AccountId,
    pub external_id: String,
    pub customer_id: CustomerId,
}

/// The holder let the id go (deleted, changed its external id, or never came to exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalIdReleased {
    pub customer_id: CustomerId,
}

/// The stream id of `external_id` in `account`: SHA-256 of both, hex (external ids are free text
/// up to 200 characters; stream ids are short and printable).
pub fn stream_id(account: AccountId, external_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(account.to_string().as_bytes());
    hash.update([0]);
    hash.update(external_id.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
