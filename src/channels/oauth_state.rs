//! The OAuth `state` parameter of the channels' links (Slack, Gmail): who started the link
//! (account, user), until when it is valid (10 minutes) and a random nonce, sealed with
//! AES-256-GCM under `NETIA_SECRET_KEY` with the flow's own context (authenticated, so it cannot
//! be forged, altered or used for another vendor, and opaque to the browser). RFC 6749 §10.12
//! asks for a state bound to the user agent to stop CSRF on the callback: the nonce is also set
//! as the flow's cookie in the admin's browser when the link starts, and the callback takes the
//! state only with that cookie — a link sent to someone else's browser links nothing.

use chrono::{DateTime, TimeDelta, Utc};
use netia_events::{AccountId, UserId};
use serde::{Deserialize, Serialize};

use crate::secrets::{SealError, Sealer};

/// How long an install link stays valid.
pub const STATE_TTL: TimeDelta = TimeDelta::minutes(10);

/// One vendor's OAuth flow: the sealing context of its states, and its cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    context: &'static str,
    /// The cookie that binds a link to the browser that started it.
    pub cookie: &'static str,
    /// The callback's path: the cookie's.
    pub callback: &'static str,
}

/// Slack's install (`/api/slack/oauth`).
pub const SLACK: Flow = Flow {
    context: "slack-oauth-state",
    cookie: "netia_slack_oauth",
    callback: "/api/slack/oauth",
};

/// Gmail's link (`/api/gmail/oauth`).
pub const GMAIL: Flow = Flow {
    context: "gmail-oauth-state",
    cookie: "netia_gmail_oauth",
    callback: "/api/gmail/oauth",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallState {
    pub account_id: AccountId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// Also in the starting browser's cookie ([`Flow::cookie`]).
    pub nonce: [u8; 16],
}

/// Why a returned `state` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRefused {
    #[error("the install link is not one Netia issued (or was altered)")]
    Forged,
    #[error("the install link expired; start again from Integrations")]
    Expired,
    #[error("the install was started in another browser; start it again from Integrations here")]
    OtherBrowser,
}

/// A sealed state for `account_id`'s admin `user_id`, valid for [`STATE_TTL`] from `now`, and
/// its nonce in hex (the value of `flow`'s cookie).
pub fn issue(
    flow: Flow,
    sealer: &Sealer,
    account_id: AccountId,
    user_id: UserId,
    now: DateTime<Utc>,
) -> Result<(String, String), SealError> {
    let mut nonce = [0u8; 16];
    crate::secrets::fill_random(&mut nonce);
    let state = InstallState {
        account_id,
        user_id,
        expires_at: now + STATE_TTL,
        nonce,
    };
    let json = serde_json::to_vec(&state).unwrap_or_default();
    Ok((sealer.seal(&json, flow.context)?, hex::encode(nonce)))
}

/// The state `sealed` carries, if Netia issued it for `flow`, it has not expired at `now`, and
/// `cookie` (the browser's cookie of `flow`) is its nonce.
pub fn open(
    flow: Flow,
    sealer: &Sealer,
    sealed: &str,
    cookie: Option<&str>,
    now: DateTime<Utc>,
) -> Result<InstallState, StateRefused> {
    let json = sealer.open(sealed, flow.context).map_err(|_| StateRefused::Forged)?;
    let state: InstallState = serde_json::from_slice(&json).map_err(|_| StateRefused::Forged)?;
    if now > state.expires_at {
        return Err(StateRefused::Expired);
    }
    let same_browser = cookie
        .and_then(|c| hex::decode(c.trim()).ok())
        .is_some_and(|given| subtle::ConstantTimeEq::ct_eq(given.as_slice(), state.nonce.as_slice()).into());
    if !same_browser {
        return Err(StateRefused::OtherBrowser);
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
        let (sealed, nonce) = issue(SLACK, &sealer, account, user, now).unwrap();
        let cookie = Some(nonce.as_str());
        let opened = open(SLACK, &sealer, &sealed, cookie, now + TimeDelta::minutes(9)).unwrap();
        assert_eq!((opened.account_id, opened.user_id), (account, user));
        let late = now + TimeDelta::minutes(11);
        assert_eq!(open(SLACK, &sealer, &sealed, cookie, late), Err(StateRefused::Expired));
        assert_eq!(
            open(SLACK, &Sealer::ephemeral(), &sealed, cookie, now),
            Err(StateRefused::Forged)
        );
        assert_eq!(
            open(SLACK, &sealer, "v1.forged", cookie, now),
            Err(StateRefused::Forged)
        );
        assert_eq!(
            open(SLACK, &sealer, &sealed, None, now),
            Err(StateRefused::OtherBrowser)
        );
        let (_, other) = issue(SLACK, &sealer, account, user, now).unwrap();
        assert_eq!(
            open(SLACK, &sealer, &sealed, Some(other.as_str()), now),
            Err(StateRefused::OtherBrowser)
        );
        // A Slack state is no Gmail state.
        assert_eq!(open(GMAIL, &sealer, &sealed, cookie, now), Err(StateRefused::Forged));
    }
}
