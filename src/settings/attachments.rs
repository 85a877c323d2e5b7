//! Settings of attachments: where files are kept (`ATTACHMENTS_URL`) and how large one may be
//! (`ATTACHMENT_MAX_BYTES`); ADR 0022.

use std::path::PathBuf;

use super::{SettingsError, invalid};

/// The default `ATTACHMENT_MAX_BYTES`: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The largest `ATTACHMENT_MAX_BYTES` accepted: 1 GiB (a file is held in memory while it is
/// hashed and sniffed).
pub const MAX_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// Where attachment files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentLocation {
    /// A local directory (`file://<directory>`, default `./data/uploads`), created at start.
    Directory(PathBuf),
    /// An S3-compatible bucket, `s3://<bucket>[/<prefix>]`; credentials, region and endpoint come
    /// from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`), as `object_store` reads them.
    S3 { bucket: String, prefix: String },
}

/// `ATTACHMENTS_URL` and `ATTACHMENT_MAX_BYTES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSettings {
    pub location: AttachmentLocation,
    /// The largest file taken, in bytes; a larger upload is answered 413.
    pub max_bytes: u64,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            location: AttachmentLocation::Directory(PathBuf::from("./data/uploads")),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

const URL_REASON: &str = "must be file://<directory> or s3://<bucket>[/<prefix>]";

pub(super) fn attachment_settings(get: &impl Fn(&str) -> Option<String>) -> Result<AttachmentSettings, SettingsError> {
    let mut settings = AttachmentSettings::default();
    if let Some(url) = get("ATTACHMENTS_URL")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        settings.location = if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() || path.chars().any(char::is_control) {
                return Err(invalid("ATTACHMENTS_URL", url, URL_REASON));
            }
            AttachmentLocation::Directory(PathBuf::from(path))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket || prefix.chars().any(|c| c.is_control() || c == '\\') {
                return Err(invalid("ATTACHMENTS_URL", url, URL_REASON));
            }
            AttachmentLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            }
        } else {
            return Err(invalid("ATTACHMENTS_URL", url, URL_REASON));
        };
    }
    if let Some(text) = get("ATTACHMENT_MAX_BYTES").filter(|v| !v.trim().is_empty()) {
        settings.max_bytes = text
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_MAX_BYTES).contains(n))
            .ok_or_else(|| {
                invalid(
                    "ATTACHMENT_MAX_BYTES",
                    text,
                    "must be a number of bytes from 1 to 1073741824",
                )
            })?;
    }
    Ok(settings)
}
