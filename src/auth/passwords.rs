//! Passwords: the length and guessability rule, and argon2id hashing and verification off the async threads.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::{Auth, AuthError};

/// Passwords: at least this many characters…
pub const MIN_PASSWORD: usize = 8;
/// …and at most this many (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD: usize = 128;

fn hash_password_blocking(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Hashing(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// A real hash of nothing in particular: verifying against it costs what a real login costs, so
/// an unknown address cannot be told from a wrong password by timing.
pub(super) fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password_blocking("netia-decoy-password").unwrap_or_default())
}

/// Argon2 runs (each ~19 MiB for its run) at most one per core at a time: a flood of logins
/// queues here instead of allocating a hash's memory per request on the blocking pool.
fn hashing_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Runs one argon2 computation on the blocking pool once a slot is free.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

impl Auth {
    /// [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters (spaces and any Unicode count, as NIST SP
    /// 800-63B §5.1.1.2 asks), but not a password anyone would guess first: only whitespace, or one
    /// character repeated (the guide's "repetitive characters").
    pub fn check_password(password: &str) -> Result<(), AuthError> {
        let n = password.chars().count();
        let mut chars = password.chars();
        let first = chars.next();
        let repeated = chars.all(|c| Some(c) == first);
        let blank = password.chars().all(char::is_whitespace);
        if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) && !repeated && !blank {
            Ok(())
        } else {
            Err(AuthError::WeakPassword)
        }
    }

    pub async fn hash_password(password: &str) -> Result<String, AuthError> {
        Self::check_password(password)?;
        let password = password.to_owned();
        hashing(move || hash_password_blocking(&password)).await?
    }

    pub(super) async fn verify(hash: String, password: &str) -> bool {
        let password = password.to_owned();
        hashing(move || {
            PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_eight_to_128_characters_and_not_trivially_guessed() {
        for good in [
            "long enough",
            "correct horse battery",
            "aaaaaaab",
            "        x",
            "pässwörd",
            "12345678",
        ] {
            assert!(Auth::check_password(good).is_ok(), "{good:?}");
        }
        let too_long = "ab".repeat(65);
        for weak in [
            "short",
            "",
            "        ",
            "\t\t\t\t\t\t\t\t\t",
            "aaaaaaaa",
            "ééééééééé",
            too_long.as_str(),
        ] {
            assert!(
                matches!(Auth::check_password(weak), Err(AuthError::WeakPassword)),
                "{weak:?}"
            );
        }
    }
}
