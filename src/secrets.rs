//! Secrets at rest: values Netia must read back (an account's identity secret, and next the
//! channels' vendor tokens) are sealed with AES-256-GCM (RustCrypto `aes-gcm`, NIST SP 800-38D)
//! under the deployment's key before they reach the log or a table, and are never returned by an
//! API except to the admins the value belongs to.
//!
//! The key is `NETIA_SECRET_KEY`: 32 random bytes in base64 (`openssl rand -base64 32`), the same
//! on every node. Without it, a SQLite deployment keeps a generated key in a file beside its
//! database (`<database>.key`, mode 0600) and an in-memory database uses a key of the process;
//! a PostgreSQL deployment without it cannot seal or open (its nodes would not share a key), and
//! the features that need it answer with [`SealError::NoKey`].
//!
//! A sealed value is `v1.` + base64url(12-byte random nonce ‖ ciphertext ‖ 16-byte tag). Each value
//! is bound to its purpose and owner by the associated data (e.g. `identity-secret:<account id>`),
//! so a sealed value copied into another account's event does not open.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

const PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 12;
/// The key's length in bytes (AES-256).
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// This node has no key (PostgreSQL without `NETIA_SECRET_KEY`).
    #[error("NETIA_SECRET_KEY is not set on this node, so secrets cannot be stored or read")]
    NoKey,
    /// Not a sealed value, sealed under another key, for another owner, or altered.
    #[error("a sealed secret does not open with this node's NETIA_SECRET_KEY (another key, or altered)")]
    Unreadable,
}

/// Seals and opens secrets with the deployment's key (see the module documentation).
#[derive(Clone)]
pub struct Sealer {
    cipher: Option<Aes256Gcm>,
    /// HMAC-SHA256 key for [`Sealer::keyed_digest`], derived from the deployment's key.
    digests: Option<[u8; KEY_BYTES]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("has_key", &self.cipher.is_some())
            .finish()
    }
}

impl Sealer {
    /// A sealer with this 32-byte key.
    pub fn new(key: &[u8; KEY_BYTES]) -> Self {
        Self {
            cipher: Some(Aes256Gcm::new(key.into())),
            digests: Some(hmac_of(key, &[b"netia keyed digests v1"])),
        }
    }

    /// A sealer without a key: every call fails with [`SealError::NoKey`].
    pub fn unavailable() -> Self {
        Self {
            cipher: None,
            digests: None,
        }
    }

    /// HMAC-SHA256 (RFC 2104), under a key derived from the deployment's key, of `parts` each
    /// followed by a zero byte: ids derived from personal data (a sender's address) that nobody
    /// without the key can recompute from a guess. `None` without a key.
    pub fn keyed_digest(&self, parts: &[&str]) -> Option<[u8; 32]> {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        self.digests.as_ref().map(|key| hmac_of(key, &parts))
    }

    /// A sealer with a random key that lives as long as the process (in-memory databases, tests).
    pub fn ephemeral() -> Self {
        Self::new(&random_key())
    }

    /// Whether this sealer has a key (see [`Sealer::unavailable`]).
    pub fn has_key(&self) -> bool {
        self.cipher.is_some()
    }

    /// `plaintext` sealed for `context` (its purpose and owner).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SealError> {
        let cipher = self.cipher.as_ref().ok_or(SealError::NoKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| SealError::Unreadable)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The plaintext of a value [`seal`](Self::seal)ed for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SealError> {
        let cipher = self.cipher.as_ref().ok_or(SealError::NoKey)?;
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or(SealError::Unreadable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealError::Unreadable)
    }
}

fn hmac_of(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

/// Reads a key written as base64 (standard or URL-safe alphabet, padded or not) of exactly
/// [`KEY_BYTES`] bytes; `None` for anything else.
pub fn parse_key(text: &str) -> Option<[u8; KEY_BYTES]> {
    let text = text.trim();
    [&STANDARD, &URL_SAFE]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
        .or_else(|| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text).ok())
        .and_then(|bytes| <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).ok())
}

/// The sealer of a deployment's settings (`NETIA_SECRET_KEY`, `DATABASE_URL`): see [`sealer_for`].
pub fn sealer_of(settings: &crate::settings::Settings) -> anyhow::Result<Sealer> {
    use secrecy::ExposeSecret;
    let key = settings.secret_key.as_ref().and_then(|k| parse_key(k.expose_secret()));
    sealer_for(key.as_ref(), settings.database_url.expose_secret())
}

/// The sealer for a deployment: the configured key; else, for SQLite, the key file beside the
/// database (created on first use); else none. `database_url` is the `DATABASE_URL` in force.
pub fn sealer_for(configured: Option<&[u8; KEY_BYTES]>, database_url: &str) -> anyhow::Result<Sealer> {
    if let Some(key) = configured {
        return Ok(Sealer::new(key));
    }
    match sqlite_key_file(database_url) {
        SqliteKey::File(path) => Ok(Sealer::new(&key_from_file(&path)?)),
        SqliteKey::Memory => Ok(Sealer::ephemeral()),
        SqliteKey::NotSqlite => {
            tracing::warn!("NETIA_SECRET_KEY is not set: identity secrets and channel credentials cannot be stored");
            Ok(Sealer::unavailable())
        }
    }
}

enum SqliteKey {
    File(PathBuf),
    Memory,
    NotSqlite,
}

fn sqlite_key_file(url: &str) -> SqliteKey {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return SqliteKey::NotSqlite;
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return SqliteKey::Memory;
    }
    SqliteKey::File(PathBuf::from(format!("{path}.key")))
}

/// Reads the key in `path`, or writes a new random one there (mode 0600) if there is none. The new
/// key is written to a temporary file, synced, then linked into place (a link fails if the file
/// exists), so two processes starting at once agree on one key and a crash leaves no empty file.
fn key_from_file(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            parse_key(&text).with_context(|| format!("{} does not hold a base64 key of 32 bytes", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let key = random_key();
            let temporary = path.with_extension(format!("key.{}", uuid::Uuid::now_v7().simple()));
            let written = write_private(&temporary, format!("{}\n", STANDARD.encode(key)).as_bytes())
                .with_context(|| format!("writing {}", temporary.display()));
            let linked = written.and_then(|()| std::fs::hard_link(&temporary, path).map_err(anyhow::Error::from));
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated the secret key (set NETIA_SECRET_KEY to choose one)");
                    Ok(key)
                }
                // Another process linked its key first: use theirs (complete: it was synced).
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) =>
                {
                    key_from_file(path)
                }
                Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates `path` (mode 0600 on Unix) with `bytes`, synced to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret key file is readable by others: chmod 600 it");
        }
    }
}

fn random_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    fill_random(&mut key);
    key
}

/// Fills `out` from the operating system's generator; Netia cannot run without one.
#[allow(clippy::expect_used)]
pub fn fill_random(out: &mut [u8]) {
    getrandom::fill(out).expect("the operating system's random generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_context_and_key() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"hunter2", "identity-secret:a").unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(sealer.open(&sealed, "identity-secret:a").unwrap(), b"hunter2");
        assert_eq!(sealer.open(&sealed, "identity-secret:b"), Err(SealError::Unreadable));
        assert_eq!(
            Sealer::new(&[8; 32]).open(&sealed, "identity-secret:a"),
            Err(SealError::Unreadable)
        );
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(sealer.open(&altered, "identity-secret:a"), Err(SealError::Unreadable));
        assert_eq!(sealer.open("v1.", "identity-secret:a"), Err(SealError::Unreadable));
        assert_eq!(sealer.open("garbage", "identity-secret:a"), Err(SealError::Unreadable));
    }

    #[test]
    fn keyed_digests_need_the_key() {
        let a = Sealer::new(&[7; 32]);
        assert_eq!(a.keyed_digest(&["acct", "+1415"]), a.keyed_digest(&["acct", "+1415"]));
        assert_ne!(a.keyed_digest(&["acct", "+1415"]), a.keyed_digest(&["acct", "+1416"]));
        assert_ne!(a.keyed_digest(&["ac", "ct+1415"]), a.keyed_digest(&["acct", "+1415"]));
        assert_ne!(
            a.keyed_digest(&["acct", "+1415"]),
            Sealer::new(&[8; 32]).keyed_digest(&["acct", "+1415"])
        );
        assert_eq!(Sealer::unavailable().keyed_digest(&["acct"]), None);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let sealer = Sealer::new(&[7; 32]);
        assert_ne!(sealer.seal(b"x", "c").unwrap(), sealer.seal(b"x", "c").unwrap());
    }

    #[test]
    fn without_a_key_nothing_seals() {
        assert_eq!(Sealer::unavailable().seal(b"x", "c"), Err(SealError::NoKey));
        assert_eq!(Sealer::unavailable().open("v1.AAAA", "c"), Err(SealError::NoKey));
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = STANDARD.encode([1u8; 32]);
        assert_eq!(parse_key(&key), Some([1; 32]));
        assert_eq!(parse_key(&format!(" {key}\n")), Some([1; 32]));
        assert_eq!(parse_key(&URL_SAFE_NO_PAD.encode([250u8; 32])), Some([250; 32]));
        assert_eq!(parse_key(&STANDARD.encode([1u8; 16])), None);
        assert_eq!(parse_key("not base64!"), None);
    }

    #[test]
    fn a_sqlite_database_keeps_its_key_beside_it() {
        let dir = std::env::temp_dir().join(format!("netia-key-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/netia.db", dir.display());
        let first = sealer_for(None, &url).unwrap();
        let sealed = first.seal(b"s", "c").unwrap();
        let again = sealer_for(None, &url).unwrap();
        assert_eq!(again.open(&sealed, "c").unwrap(), b"s");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("netia.db.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
        assert!(sealer_for(None, "postgres://x/y").unwrap().seal(b"s", "c").is_err());
    }
}
