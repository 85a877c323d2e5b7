//! The account's Gmail link: the mailbox address, its sealed refresh token, and how far its
//! history has been synced (Gmail's `historyId`, a number that only grows within a mailbox).

use netia_events::account::*;
use serde::{Deserialize, Serialize};

use super::{Account, AccountCommand, AccountError, invalid};

/// A linked Gmail mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GmailLink {
    pub email_address: String,
    /// The OAuth refresh token, sealed: it gets the access tokens of every Gmail API call.
    pub sealed_refresh_token: String,
    /// Synced up to this `historyId`.
    pub history_id: u64,
}

impl Account {
    pub(super) fn evolve_gmail(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::GmailLinked(e) => {
                self.gmail = Some(GmailLink {
                    email_address: e.email_address.clone(),
                    sealed_refresh_token: e.sealed_refresh_token.clone(),
                    history_id: e.history_id,
                });
            }
            AccountEvent::GmailUnlinked(_) => self.gmail = None,
            AccountEvent::GmailHistorySynced(e) => {
                if let Some(gmail) = &mut self.gmail {
                    gmail.history_id = e.history_id;
                }
            }
            _ => {}
        }
    }

    pub(super) fn decide_gmail(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::LinkGmail {
                email_address,
                sealed_refresh_token,
                history_id,
                linked_by,
            } => {
                let address = email_address.trim();
                if address.len() > 254 || !crate::validate::is_email(address) {
                    return Err(invalid("email_address", "must be the mailbox's email address"));
                }
                if sealed_refresh_token.is_empty() || sealed_refresh_token.len() > 4_000 {
                    return Err(invalid("refresh_token", "must be a sealed token"));
                }
                let address = address.to_lowercase();
                // Linking the same mailbox again (its authorization was revoked, say) keeps the
                // sync where it was: the mail that arrived meanwhile is still taken.
                let history_id = match &self.gmail {
                    Some(g) if g.email_address == address => g.history_id,
                    _ => *history_id,
                };
                Ok(vec![AccountEvent::GmailLinked(GmailLinked {
                    email_address: address,
                    sealed_refresh_token: sealed_refresh_token.clone(),
                    history_id,
                    linked_by: *linked_by,
                })])
            }
            AccountCommand::UnlinkGmail => match self.gmail {
                Some(_) => Ok(vec![AccountEvent::GmailUnlinked(GmailUnlinked {})]),
                None => Ok(Vec::new()),
            },
            AccountCommand::RecordGmailSync {
                email_address,
                history_id,
                resynced,
            } => {
                let Some(gmail) = &self.gmail else {
                    return Err(invalid("gmail", "Gmail is not linked"));
                };
                // A run that began before a relink to another mailbox: its ids are not this one's.
                if gmail.email_address != *email_address {
                    return Ok(Vec::new());
                }
                // Gmail's history ids only grow; a resync may start over from an older one only
                // when Gmail itself answered that the stored one is gone.
                if *history_id == gmail.history_id || (*history_id < gmail.history_id && !resynced) {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::GmailHistorySynced(GmailHistorySynced {
                    history_id: *history_id,
                    resynced: *resynced,
                })])
            }
            _ => Ok(Vec::new()),
        }
    }
}
