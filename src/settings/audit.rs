//! Settings of the audit trail: the chain's key (`AUDIT_KEY`, `AUDIT_KEY_PREVIOUS`) and the
//! database role that owns the log (`DATABASE_MIGRATE_URL`); ADR 0021.

use netia_events::chain::{Chain, ChainKey};
use secrecy::SecretString;

use super::{SettingsError, invalid};

/// How the log is protected beyond its append-only triggers.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// Plain SHA-256 links, or HMAC-SHA256 under `AUDIT_KEY` (base64 of 32 bytes, kept out of the
    /// database).
    pub chain: Chain,
    /// The key the log was linked with before a rotation (`AUDIT_KEY_PREVIOUS`), for one
    /// `netia audit rekey`.
    pub previous_key: Option<ChainKey>,
    /// The owner's connection (`DATABASE_MIGRATE_URL`, PostgreSQL only): migrations and rekeys run
    /// there and grant `DATABASE_URL`'s role what it needs and no more (events: SELECT, INSERT).
    pub migrate_url: Option<SecretString>,
}

fn key(get: &impl Fn(&str) -> Option<String>, variable: &'static str) -> Result<Option<ChainKey>, SettingsError> {
    match get(variable).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(text) => crate::secrets::parse_key(&text)
            .map(|k| Some(ChainKey::new(k)))
            .ok_or_else(|| {
                invalid(
                    variable,
                    "(hidden)".to_owned(),
                    "must be 32 random bytes in base64, e.g. from `openssl rand -base64 32`",
                )
            }),
    }
}

pub(super) fn audit_settings(
    get: &impl Fn(&str) -> Option<String>,
    database_url: &str,
) -> Result<AuditSettings, SettingsError> {
    let current = key(get, "AUDIT_KEY")?;
    let previous_key = key(get, "AUDIT_KEY_PREVIOUS")?;
    if previous_key.is_some() && (current.is_none() || previous_key == current) {
        return Err(invalid(
            "AUDIT_KEY_PREVIOUS",
            "(hidden)".to_owned(),
            "is for rotating to a new AUDIT_KEY: set AUDIT_KEY to another key",
        ));
    }
    let migrate_url = match get("DATABASE_MIGRATE_URL").filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(url) if !database_url.starts_with("postgres") => {
            return Err(invalid(
                "DATABASE_MIGRATE_URL",
                crate::startup::redact(&url),
                "is for PostgreSQL only (DATABASE_URL is SQLite)",
            ));
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(SecretString::from(url))
        }
        Some(url) => {
            return Err(invalid(
                "DATABASE_MIGRATE_URL",
                crate::startup::redact(&url),
                "must start with postgres:// or postgresql://",
            ));
        }
    };
    Ok(AuditSettings {
        chain: current.map_or(Chain::Plain, Chain::Keyed),
        previous_key,
        migrate_url,
    })
}
