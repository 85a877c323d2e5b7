//! Attachments (ADR 0022): a file uploaded into a conversation is stored in the object store
//! (`object_store`: a local directory, or an S3-compatible bucket) under a key Netia chooses,
//! `{account_id}/{conversation_id}/{uuid v7}`, and posted as a message whose event records the key,
//! the file name, the size, the media type sniffed from the bytes and the SHA-256. Downloads go
//! through Netia with the caller's rights; thumbnails of raster images are made on first request.

use std::sync::Arc;

use bytes::Bytes;
use netia_commands::Conversation;
use netia_events::conversation::{Attachment, Author, MessageFormat};
use netia_events::{AccountId, ConversationId, CustomerId, Metadata};
use netia_projections::{ConversationProjection, MessageRow};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::conversations::{NewMessage, PostError, Posted, ReadBack, post_message};
use super::{App, AppError};
use crate::command_bus::CommandError;
use crate::settings::{AttachmentLocation, AttachmentSettings};

mod thumbnail;
pub use thumbnail::{DECODE_MAX_ALLOC, THUMBNAIL_SIDE};

/// Media types shown inline and given thumbnails: raster images a browser renders without
/// running anything (SVG, which can carry script, is not one).
pub const RASTER_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/// The longest file name kept, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// Where attachment files are kept, and the size limit of one.
#[derive(Clone, Debug)]
pub struct AttachmentStore {
    store: Arc<dyn ObjectStore>,
    /// `ATTACHMENT_MAX_BYTES`.
    pub max_bytes: u64,
    /// One thumbnail is made at a time per node (decoding may take up to
    /// [`thumbnail::DECODE_MAX_ALLOC`]).
    thumbnails: Arc<tokio::sync::Semaphore>,
    /// Keys whose image could not be decoded: not tried again until the node restarts.
    undecodable: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl AttachmentStore {
    /// Opens the store `settings` name: creates a local directory if missing; an S3 bucket takes
    /// its credentials, region and endpoint from the `AWS_*` variables. Fails (naming the
    /// location) when the directory cannot be made or the S3 settings are incomplete.
    pub fn open(settings: &AttachmentSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let store: Arc<dyn ObjectStore> = match &settings.location {
            AttachmentLocation::Directory(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("ATTACHMENTS_URL: cannot create the directory {}", dir.display()))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(dir)
                        .with_context(|| format!("ATTACHMENTS_URL: cannot use the directory {}", dir.display()))?,
                )
            }
            AttachmentLocation::S3 { bucket, prefix } => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .with_context(|| format!("ATTACHMENTS_URL: S3 bucket {bucket} (see the AWS_* variables)"))?;
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
                }
            }
        };
        Ok(Self {
            store,
            max_bytes: settings.max_bytes,
            thumbnails: Arc::new(tokio::sync::Semaphore::new(1)),
            undecodable: Arc::default(),
        })
    }
}

/// A file as the uploader sent it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The name the uploader gave it; only its last path segment is kept.
    pub file_name: String,
    /// An optional caption, the message's body.
    pub caption: String,
    /// Agents only: post it as a private note.
    pub private: bool,
    /// The uploader's idempotency key: a repeat answers the message saved the first time.
    pub client_message_id: Option<String>,
    pub bytes: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("attachments are not configured on this server")]
    Unavailable,
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("file_name must be 1 to 255 characters, without control characters")]
    InvalidName,
    #[error("storing the file: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Post(#[from] PostError),
}

/// Characters that change how text around them is shown without showing themselves (Unicode
/// format characters: bidirectional overrides and isolates, zero-width characters, the BOM, soft
/// hyphen) and the line and paragraph separators: "invoice\u{202E}fdp.exe" would show as
/// "invoiceexe.pdf".
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The name kept of `given`: its last path segment (either slash), without invisible format
/// characters, trimmed.
pub fn clean_file_name(given: &str) -> Option<String> {
    let visible: String = given.chars().filter(|&c| !is_invisible(c)).collect();
    let name = visible.rsplit(['/', '\\']).next().unwrap_or("").trim();
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().count() <= MAX_FILE_NAME_CHARS
        && !name.chars().any(char::is_control);
    valid.then(|| name.to_owned())
}

/// The media type of `bytes` from their content (magic numbers, the `infer` crate); text that is
/// valid UTF-8 without NUL is `text/plain`; anything else `application/octet-stream`.
pub fn sniff(bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => "text/plain".to_owned(),
        _ => "application/octet-stream".to_owned(),
    }
}

/// Stores `upload` and posts it in conversation `id` as `author`. The object is written first
/// and deleted again when the conversation refuses the post or it repeats a saved one
/// (`client_message_id`); a crash between the two leaves an object that no message names (never
/// served: downloads need a message that carries the key).
pub async fn upload(
    app: &App,
    account: AccountId,
    id: ConversationId,
    author: Author,
    upload: Upload,
    meta: &Metadata,
) -> Result<Posted, UploadError> {
    let files = app.attachments.as_ref().ok_or(UploadError::Unavailable)?;
    let file_name = clean_file_name(&upload.file_name).ok_or(UploadError::InvalidName)?;
    if upload.bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if upload.bytes.len() as u64 > files.max_bytes {
        return Err(UploadError::TooLarge { max: files.max_bytes });
    }
    let (attachment, path) = store(files, account, id, file_name, upload.bytes).await?;
    let message = NewMessage {
        body: upload.caption,
        format: MessageFormat::Text,
        private: upload.private,
        client_message_id: upload.client_message_id,
        attachments: vec![attachment],
    };
    match post_message(app, id, author, message, meta, ReadBack::ReadModel).await {
        // A repeat of an upload already saved (same client_message_id): the message is the
        // first one, and this copy of the file is nobody's.
        Ok(posted) if !posted.created => {
            forget(files, &path).await;
            Ok(posted)
        }
        Ok(posted) => Ok(posted),
        // Refused by the conversation: nothing names the object.
        Err(e @ PostError::Refused(CommandError::Domain(_))) => {
            forget(files, &path).await;
            Err(e.into())
        }
        // Anything else may have stored the message (saved but not readable yet, an append whose
        // outcome is unknown): the file stays, so that the message never points at nothing.
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` (named `file_name`) into the store under a new key of conversation `id`:
/// what a message event records of it, and where it is.
pub async fn store(
    files: &AttachmentStore,
    account: AccountId,
    id: ConversationId,
    file_name: String,
    bytes: Bytes,
) -> Result<(Attachment, Path), object_store::Error> {
    let key = format!("{account}/{id}/{}", Uuid::now_v7());
    let attachment = Attachment {
        key: key.clone(),
        file_name,
        content_type: sniff(&bytes),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let path = Path::from(key.as_str());
    files.store.put(&path, PutPayload::from(bytes)).await?;
    Ok((attachment, path))
}

async fn forget(files: &AttachmentStore, path: &Path) {
    if let Err(e) = files.store.delete(path).await {
        tracing::warn!(key = %path, error = %e, "could not delete an unreferenced upload");
    }
}

/// A stored object that no message names: left by a crash between storing an upload and posting
/// it (or by a database restored to an earlier point).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Orphan {
    /// The object's key (an original, or its `.thumb.webp`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the store last wrote it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
}

/// The objects in `files` stored before `before` whose key no message of the conversation read
/// model carries (a thumbnail goes with its original). Objects whose key is not of the shape Netia
/// gives keys are not Netia's and are left out.
pub async fn orphans(
    db: &sqlx::AnyPool,
    files: &AttachmentStore,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<Orphan>> {
    use futures_util::TryStreamExt;
    let listed: Vec<object_store::ObjectMeta> = files.store.list(None).try_collect().await?;
    let mut conn = db.acquire().await?;
    let mut found = Vec::new();
    for meta in listed {
        let key = meta.location.to_string();
        let original = key.strip_suffix(".thumb.webp").unwrap_or(&key);
        let Some((_, conversation)) = parse_key(original) else {
            continue;
        };
        if meta.last_modified >= before {
            continue;
        }
        let named = ConversationProjection::message_with_attachment(&mut conn, conversation, original).await?;
        if named.is_none() {
            found.push(Orphan {
                key,
                size: meta.size,
                stored_at: meta.last_modified,
            });
        }
    }
    Ok(found)
}

impl AttachmentStore {
    /// Deletes every file (and thumbnail) of a conversation (its customer was erased); returns
    /// how many objects went.
    pub async fn delete_conversation(&self, account: &str, conversation: &str) -> anyhow::Result<usize> {
        use futures_util::TryStreamExt;
        let prefix = Path::from(format!("{account}/{conversation}"));
        let listed: Vec<object_store::ObjectMeta> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in &listed {
            self.store.delete(&meta.location).await?;
        }
        Ok(listed.len())
    }
}

/// Deletes the objects `orphans` listed.
pub async fn delete_orphans(files: &AttachmentStore, orphans: &[Orphan]) -> anyhow::Result<()> {
    for orphan in orphans {
        files.store.delete(&Path::from(orphan.key.as_str())).await?;
    }
    Ok(())
}

/// Who asks for a file.
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    /// An agent of `account`: any file of the account's conversations, notes included.
    Agent { account: AccountId },
    /// A widget customer: files of their own conversations, notes excluded.
    Customer { account: AccountId, customer: CustomerId },
}

/// A file to send back.
#[derive(Debug)]
pub struct Download {
    pub attachment: Attachment,
    /// The bytes: the file, or its thumbnail (WebP).
    pub bytes: Bytes,
    /// Whether `bytes` is the thumbnail.
    pub thumbnail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("attachments are not configured on this server")]
    Unavailable,
    /// No such file for this viewer (another account's or conversation's files are not told
    /// apart from missing ones).
    #[error("attachment not found")]
    NotFound,
    #[error("only images have thumbnails")]
    NoThumbnail,
    #[error("reading the file: {0}")]
    Store(#[from] object_store::Error),
    #[error("making the thumbnail: {0}")]
    Thumbnail(String),
    #[error(transparent)]
    App(#[from] AppError),
}

/// The file stored under `key` (`{account}/{conversation}/{uuid}`), or its thumbnail, for
/// `viewer`: the key's account and conversation must be the viewer's, and a message of that
/// conversation the viewer may read must carry the key.
pub async fn download(app: &App, viewer: Viewer, key: &str, thumbnail: bool) -> Result<Download, DownloadError> {
    let files = app.attachments.as_ref().ok_or(DownloadError::Unavailable)?;
    let (account, conversation) = parse_key(key).ok_or(DownloadError::NotFound)?;
    let mine = match viewer {
        Viewer::Agent { account: a } => a == account,
        Viewer::Customer { account: a, customer } => {
            let state = app.state_of::<Conversation>(conversation).await?;
            a == account && state.account_id == Some(account) && state.customer_id == Some(customer)
        }
    };
    if !mine {
        return Err(DownloadError::NotFound);
    }
    let mut conn = app.db.acquire().await.map_err(AppError::from)?;
    let found: Option<(MessageRow, Attachment)> =
        ConversationProjection::message_with_attachment(&mut conn, conversation, key)
            .await
            .map_err(AppError::from)?;
    drop(conn);
    let (message, attachment) = found.ok_or(DownloadError::NotFound)?;
    if message.account_id != account.to_string() || (matches!(viewer, Viewer::Customer { .. }) && message.private != 0)
    {
        return Err(DownloadError::NotFound);
    }
    if !thumbnail {
        let bytes = read(files, &Path::from(key)).await?.ok_or(DownloadError::NotFound)?;
        return Ok(Download {
            attachment,
            bytes,
            thumbnail: false,
        });
    }
    if !RASTER_IMAGES.contains(&attachment.content_type.as_str()) {
        return Err(DownloadError::NoThumbnail);
    }
    let bytes = thumbnail::thumbnail_of(files, key).await?;
    Ok(Download {
        attachment,
        bytes,
        thumbnail: true,
    })
}

/// The object at `path`, or `None` if the store has none (a missing file is logged: a message
/// names it).
async fn read(files: &AttachmentStore, path: &Path) -> Result<Option<Bytes>, DownloadError> {
    match files.store.get(path).await {
        Ok(found) => Ok(Some(found.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The account and conversation a key names, if it has the shape Netia gives keys.
fn parse_key(key: &str) -> Option<(AccountId, ConversationId)> {
    let mut parts = key.split('/');
    let (account, conversation, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || Uuid::parse_str(file).is_err() {
        return None;
    }
    Some((account.parse().ok()?, conversation.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_their_last_segment_only() {
        assert_eq!(clean_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            clean_file_name("C:\\Users\\ann\\photo.png").as_deref(),
            Some("photo.png")
        );
        assert_eq!(
            clean_file_name(" report final.pdf ").as_deref(),
            Some("report final.pdf")
        );
        for bad in ["", "dir/", "..", "a\u{0}b", &"x".repeat(256)] {
            assert_eq!(clean_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("héllo, plain text".as_bytes()), "text/plain");
        assert_eq!(sniff(&[0, 159, 146, 150, 0, 1]), "application/octet-stream");
    }

    #[test]
    fn keys_name_an_account_a_conversation_and_a_file() {
        let (a, c, f) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let parsed = parse_key(&format!("{a}/{c}/{f}")).unwrap();
        assert_eq!(
            (parsed.0.to_string(), parsed.1.to_string()),
            (a.to_string(), c.to_string())
        );
        for bad in [
            format!("{a}/{c}"),
            format!("{a}/{c}/{f}/x"),
            format!("{a}/{c}/../{f}"),
            format!("{a}/{c}/{f}.thumb.webp"),
        ] {
            assert!(parse_key(&bad).is_none(), "{bad}");
        }
    }
}
