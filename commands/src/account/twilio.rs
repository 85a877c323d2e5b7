//! The account's Twilio link (Papercups' twilio authorization): the account SID, the number SMS
//! arrive at and are sent from, and the sealed auth token.

use netia_events::account::*;
use serde::{Deserialize, Serialize};

use super::{Account, AccountCommand, AccountError, invalid};

/// A linked Twilio number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwilioAuthorization {
    pub account_sid: String,
    pub from_number: String,
    /// The auth token, sealed: it signs Twilio's webhooks and authenticates our API calls.
    pub sealed_auth_token: String,
}

/// A Twilio account SID: `AC` then 32 hex digits (Twilio's documented shape).
pub fn is_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// An E.164 phone number (ITU-T E.164, as Twilio writes them): `+`, a non-zero digit, then 6 to
/// 14 more digits.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len()) && !digits.starts_with('0') && digits.chars().all(|c| c.is_ascii_digit())
}

impl Account {
    pub(super) fn evolve_twilio(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::TwilioLinked(e) => {
                self.twilio = Some(TwilioAuthorization {
                    account_sid: e.account_sid.clone(),
                    from_number: e.from_number.clone(),
                    sealed_auth_token: e.sealed_auth_token.clone(),
                });
            }
            AccountEvent::TwilioUnlinked(_) => self.twilio = None,
            _ => {}
        }
    }

    pub(super) fn decide_twilio(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::LinkTwilio {
                account_sid,
                from_number,
                sealed_auth_token,
                linked_by,
            } => {
                if !is_account_sid(account_sid) {
                    return Err(invalid(
                        "account_sid",
                        "must be a Twilio account SID (AC and 32 hex digits)",
                    ));
                }
                if !is_e164(from_number) {
                    return Err(invalid("from_number", "must be an E.164 number such as +15005550006"));
                }
                if sealed_auth_token.is_empty() || sealed_auth_token.len() > 2_000 {
                    return Err(invalid("auth_token", "must be a sealed token"));
                }
                let same = self.twilio.as_ref().is_some_and(|t| {
                    t.account_sid == *account_sid
                        && t.from_number == *from_number
                        && t.sealed_auth_token == *sealed_auth_token
                });
                if same {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::TwilioLinked(TwilioLinked {
                    account_sid: account_sid.clone(),
                    from_number: from_number.clone(),
                    sealed_auth_token: sealed_auth_token.clone(),
                    linked_by: *linked_by,
                })])
            }
            AccountCommand::UnlinkTwilio => match self.twilio {
                Some(_) => Ok(vec![AccountEvent::TwilioUnlinked(TwilioUnlinked {})]),
                None => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }
}
