//! The OAuth `state` parameter: who started the install (account, user) and until when it is
//! valid (10 minutes), sealed with AES-256-GCM under `NETIA_SECRET_KEY` (authenticated, so it
//! cannot be forged or altered, and opaque to the browser). RFC 6749 §10.12 asks for a state bound
//! to the user agent's session to stop CSRF on the callback; binding it to the admin who asked
//! and checking that on return does that here.

use chrono::{DateTime, TimeDelta, Utc};
use netia_events::{AccountId, UserId};
use serde::{Deserialize, Serialize};

use crate::secrets::{SealError, Sealer};

/// How long an install link stays valid.
pub const STATE_TTL: TimeDelta = TimeDelta::minutes(10);
const CONTEXT: &str = "slack-oauth-state";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallState {
    pub account_id: AccountId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// Why a returned `state` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRefused {
    #[error("the install link is not one Netia issued (or was altered)")]
    Forged,
    #[error("the install link expired; start again from Integrations")]
    Expired,
}

/// A sealed state for `account_id`'s admin `user_id`, valid for [`STATE_TTL`] from `now`.
pub fn issue(sealer: &Sealer, account_id: AccountId, user_id: UserId, now: DateTime<Utc>) -> Result<String, SealError> {
    let state = InstallState {
        account_id,
        user_id,
        expires_at: now + STATE_TTL,
    };
    let json = serde_json::to_vec(&state).unwrap_or_default();
    sealer.seal(&json, CONTEXT)
}

/// The state `sealed` carries, if Netia issued it and it has not expired at `now`.
pub fn open(sealer: &Sealer, sealed: &str, now: DateTime<Utc>) -> Result<InstallState, StateRefused> {
    let json = sealer.open(sealed, CONTEXT).map_err(|_| StateRefused::Forged)?;
    let state: InstallState = serde_json::from_slice(&json).map_err(|_| StateRefused::Forged)?;
    if now > state.expires_at {
        return Err(StateRefused::Expired);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_until_it_expires_and_only_under_its_key() {
        let sealer = Sealer::ephemeral();
        let (account, user, now) = (AccountId::new(), UserId::new(), Utc::now());
        let sealed = issue(&sealer, account, user, now).unwrap();
        let opened = open(&sealer, &sealed, now + TimeDelta::minutes(9)).unwrap();
        assert_eq!((opened.account_id, opened.user_id), (account, user));
        assert_eq!(
            open(&sealer, &sealed, now + TimeDelta::minutes(11)),
            Err(StateRefused::Expired)
        );
        assert_eq!(open(&Sealer::ephemeral(), &sealed, now), Err(StateRefused::Forged));
        assert_eq!(open(&sealer, "v1.forged", now), Err(StateRefused::Forged));
    }
}
