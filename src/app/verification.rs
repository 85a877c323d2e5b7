//! Identity verification, as Intercom and Chatwoot do it: each account has an identity secret that
//! its own servers use to sign their users' ids, so that the widget cannot claim to be anyone.
//!
//! The site computes `user_hash = hex(HMAC-SHA256(key = identity secret, message = external_id))`
//! (RFC 2104 with SHA-256; the key is the secret's text as UTF-8, the message the external id
//! exactly as the widget sends it) on its server and gives it to the widget with the external id.
//! In Node: `crypto.createHmac("sha256", secret).update(externalId).digest("hex")`.
//!
//! A customer whose hash matches is *verified*: the account vouches for its external id and for
//! the email sent with it. A hash that does not match is always refused. With
//! `require_identity_verification` on, an external id or email without a valid hash is refused too,
//! and looking a customer up by external id finds only verified ones.

use hmac::{Hmac, Mac};
use netia_commands::{Account, AccountCommand, AccountError};
use netia_events::{AccountId, Metadata};
use sha2::Sha256;

use super::{App, AppError};
use crate::command_bus::CommandError;
use crate::secrets::SealError;

/// Bytes of randomness in an identity secret (written as 64 hex characters).
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// The widget's claim is refused (422): a hash that does not match, or none where one is
    /// required.
    #[error("{0}")]
    Refused(&'static str),
    /// The secret cannot be sealed or opened on this node (503).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The account refused the command (not found, no secret yet).
    #[error(transparent)]
    Account(#[from] CommandError<AccountError>),
    #[error(transparent)]
    App(#[from] AppError),
}

/// The identity secret and whether it is required, as admins see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationSettings {
    /// `None` until an admin issues one.
    pub secret: Option<String>,
    pub required: bool,
}

/// What a widget's claim turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No hash: the identity is taken as the customer's word.
    Unverified,
    /// The hash matches the external id: the account vouches for it.
    Verified,
}

/// The associated data a sealed identity secret is bound to.
fn context(account_id: AccountId) -> String {
    format!("identity-secret:{account_id}")
}

/// The hex HMAC-SHA256 of `external_id` under `secret` (see the module documentation).
pub fn user_hash(secret: &str, external_id: &str) -> String {
    hex::encode(mac(secret, external_id).finalize().into_bytes())
}

fn mac(secret: &str, external_id: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104 §2): this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(external_id.as_bytes());
    mac
}

/// Whether `given` (hex, either case) is the hash of `external_id` under `secret`, compared in
/// constant time.
pub fn hash_matches(secret: &str, external_id: &str, given: &str) -> bool {
    match hex::decode(given.trim()) {
        Ok(bytes) => mac(secret, external_id).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The account's identity secret in clear (admins only), and whether verification is required.
pub fn settings(
    app: &App,
    account_id: AccountId,
    account: &Account,
) -> Result<VerificationSettings, VerificationError> {
    let secret = match &account.identity_secret {
        Some(sealed) => Some(open(app, account_id, sealed)?),
        None => None,
    };
    Ok(VerificationSettings {
        secret,
        required: account.identity_verification_required,
    })
}

fn open(app: &App, account_id: AccountId, sealed: &str) -> Result<String, VerificationError> {
    let bytes = app.sealer.open(sealed, &context(account_id))?;
    String::from_utf8(bytes).map_err(|_| VerificationError::Seal(SealError::Unreadable))
}

/// Issues a new identity secret (the previous one stops working at once) and returns it.
pub async fn rotate_secret(app: &App, account_id: AccountId, meta: &Metadata) -> Result<String, VerificationError> {
    let mut bytes = [0u8; SECRET_BYTES];
    crate::secrets::fill_random(&mut bytes);
    let secret = hex::encode(bytes);
    let sealed_secret = app.sealer.seal(secret.as_bytes(), &context(account_id))?;
    app.bus
        .execute::<Account>(account_id, AccountCommand::RotateIdentitySecret { sealed_secret }, meta)
        .await?;
    Ok(secret)
}

/// Turns required verification on (needs a secret) or off.
pub async fn set_required(
    app: &App,
    account_id: AccountId,
    required: bool,
    meta: &Metadata,
) -> Result<(), VerificationError> {
    app.bus
        .execute::<Account>(account_id, AccountCommand::SetIdentityVerification { required }, meta)
        .await?;
    Ok(())
}

/// Judges what the widget claims for `account`: an `external_id` and/or `email`, with or without
/// a `user_hash`. Refused: a hash without an external id, a hash when the account has no secret,
/// a hash that does not match; and, when verification is required, an external id or email
/// without a hash.
pub fn check_claim(
    app: &App,
    account_id: AccountId,
    account: &Account,
    external_id: Option<&str>,
    email: Option<&str>,
    user_hash: Option<&str>,
) -> Result<Claim, VerificationError> {
    let Some(given) = user_hash else {
        if account.identity_verification_required && (external_id.is_some() || email.is_some()) {
            return Err(VerificationError::Refused(
                "this account requires identity verification: send external_id with its user_hash",
            ));
        }
        return Ok(Claim::Unverified);
    };
    let external_id = external_id.ok_or(VerificationError::Refused("user_hash needs the external_id it signs"))?;
    // The customer keeps the trimmed id: " alice" signed by a site must not become "alice".
    if external_id.trim() != external_id {
        return Err(VerificationError::Refused(
            "an external_id sent with a user_hash must not start or end with spaces",
        ));
    }
    let sealed = account.identity_secret.as_deref().ok_or(VerificationError::Refused(
        "user_hash given, but the account has no identity secret",
    ))?;
    let secret = open(app, account_id, sealed)?;
    if hash_matches(&secret, external_id, given) {
        Ok(Claim::Verified)
    } else {
        Err(VerificationError::Refused("user_hash does not match external_id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_hex_hmac_sha256_of_the_external_id() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            user_hash("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_hash_matches_only_its_external_id_and_secret() {
        let hash = user_hash("s3cret", "user-1");
        assert!(hash_matches("s3cret", "user-1", &hash));
        assert!(hash_matches("s3cret", "user-1", &hash.to_uppercase()));
        assert!(!hash_matches("s3cret", "user-2", &hash));
        assert!(!hash_matches("other", "user-1", &hash));
        assert!(!hash_matches("s3cret", "user-1", &hash[..62]));
        assert!(!hash_matches("s3cret", "user-1", "not hex"));
        assert!(!hash_matches("s3cret", "user-1", ""));
    }
}
