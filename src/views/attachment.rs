//! A message's file as the API and the socket show it.

use serde::Serialize;
use utoipa::ToSchema;

/// A file of a message, fetched through Netia with the reader's token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    /// The name the uploader gave it.
    pub file_name: String,
    /// The media type sniffed from its bytes when it was uploaded.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes (a download can be checked against it).
    pub sha256: String,
    /// `GET` it with the same `Authorization` as the messages (`/api/attachments/…`).
    pub url: String,
    /// A WebP of at most 320 px a side, for raster images (PNG, JPEG, GIF, WebP); else `null`.
    pub thumbnail_url: Option<String>,
}

impl From<&netia_events::conversation::Attachment> for AttachmentView {
    fn from(a: &netia_events::conversation::Attachment) -> Self {
        let url = format!("/api/attachments/{}", a.key);
        let image = crate::app::attachments::RASTER_IMAGES.contains(&a.content_type.as_str());
        Self {
            file_name: a.file_name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            thumbnail_url: image.then(|| format!("{url}?thumbnail=true")),
            url,
        }
    }
}
