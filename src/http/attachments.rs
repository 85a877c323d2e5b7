//! Attachments over HTTP (ADR 0022): upload a file into a conversation as a message, download it
//! (or its thumbnail) with the caller's rights.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use netia_events::ConversationId;
use netia_events::conversation::Author;
use netia_events::user::Role;
use serde::Deserialize;
use utoipa::IntoParams;

use super::caller::{FileReader, Reader};
use super::conversations::owned;
use super::views::{Data, ErrorBody, MessageView};
use super::{ApiError, AppState, parse_id};
use crate::app::attachments::{DownloadError, RASTER_IMAGES, Upload, UploadError, Viewer};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/conversations/{id}/attachments").route(web::post().to(upload)))
        .service(web::resource("/attachments/{account}/{conversation}/{file}").route(web::get().to(download)));
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadParams {
    /// The file's name as shown to readers (its last path segment is kept), 1 to 255 characters.
    #[param(min_length = 1, max_length = 255)]
    file_name: String,
    /// A caption: the message's text, up to 2,000 characters (it travels in the URL; a longer
    /// text goes as a message of its own).
    #[param(max_length = 2000)]
    body: Option<String>,
    /// Agents only: post the file as a private note.
    private: Option<bool>,
    /// The uploader's idempotency key (1 to 200 printable characters): a repeat answers 200 with
    /// the message saved the first time and keeps no second copy of the file.
    #[param(min_length = 1, max_length = 200)]
    client_message_id: Option<String>,
}

/// The longest caption an upload takes, in characters: with every character percent-encoded
/// from four UTF-8 bytes it still fits the URL limit of the HTTP server (about 32 KiB).
pub const MAX_CAPTION_CHARS: usize = 2_000;

/// Uploads a file (the raw bytes as the request body, at most `ATTACHMENT_MAX_BYTES`) and posts
/// it as a message of the caller — the conversation's customer (customer token) or an agent
/// (`member` or above). The media type is sniffed from the bytes; the request's `Content-Type`
/// is not trusted.
#[utoipa::path(post, path = "/api/conversations/{id}/attachments", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    security(("bearer" = []), ("customer" = [])),
    responses((status = 201, body = Data<MessageView>), (status = 200, description = "Already saved with this client_message_id", body = Data<MessageView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn upload(
    state: web::Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    id: web::Path<String>,
    params: web::Query<UploadParams>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation id")?;
    let params = params.into_inner();
    let private = params.private.unwrap_or(false);
    if params
        .body
        .as_ref()
        .is_some_and(|b| b.chars().count() > MAX_CAPTION_CHARS)
    {
        return Err(ApiError::Invalid(format!(
            "body (the caption) must be at most {MAX_CAPTION_CHARS} characters; send a longer text as a message"
        )));
    }
    let (account, author, meta) = match &reader {
        Reader::Agent(agent) => {
            agent.require(Role::Member)?;
            owned(&state, agent, id).await?;
            (agent.account_id, Author::Agent { user_id: agent.user_id }, agent.meta())
        }
        Reader::Customer(customer) => {
            if private {
                return Err(ApiError::Invalid("only agents can write private notes".into()));
            }
            let conversation = state.load::<netia_commands::Conversation>(id).await?;
            if conversation.customer_id != Some(customer.customer_id)
                || conversation.account_id != Some(customer.account_id)
            {
                return Err(ApiError::NotFound("conversation not found".into()));
            }
            let author = Author::Customer {
                customer_id: customer.customer_id,
            };
            (customer.account_id, author, customer.meta())
        }
    };
    let files = state
        .attachments
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable(UploadError::Unavailable.to_string()))?;
    let too_large = || ApiError::TooLarge(UploadError::TooLarge { max: files.max_bytes }.to_string());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > files.max_bytes) {
        return Err(too_large());
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > files.max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let upload = Upload {
        file_name: params.file_name,
        caption: params.body.unwrap_or_default(),
        private,
        client_message_id: params.client_message_id,
        bytes: bytes.freeze(),
    };
    let posted = crate::app::attachments::upload(&state, account, id, author, upload, &meta)
        .await
        .map_err(upload_error)?;
    Ok(super::messages::saved(&posted))
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Unavailable => ApiError::Unavailable(e.to_string()),
        UploadError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
        UploadError::Empty | UploadError::InvalidName => ApiError::Invalid(e.to_string()),
        UploadError::Store(e) => ApiError::internal(e),
        UploadError::Post(e) => super::messages::post_error(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DownloadParams {
    /// `true`: a WebP no larger than 320 px a side (raster images only).
    thumbnail: Option<bool>,
}

/// Downloads a file (or its thumbnail) for an agent of its account or the customer of its
/// conversation (not a note's file). Raster images are served inline; everything else as
/// `Content-Disposition: attachment`, and HTML, SVG, XML and unknown types as
/// `application/octet-stream`; always with `X-Content-Type-Options: nosniff` and
/// `Content-Security-Policy: sandbox`.
#[utoipa::path(get, path = "/api/attachments/{account}/{conversation}/{file}", tag = "messages",
    params(("account" = uuid::Uuid, Path, description = "Account id"), ("conversation" = uuid::Uuid, Path, description = "Conversation id"),
        ("file" = uuid::Uuid, Path, description = "File id"), DownloadParams),
    security(("bearer" = []), ("customer" = [])),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn download(
    state: web::Data<AppState>,
    FileReader(reader): FileReader,
    path: web::Path<(String, String, String)>,
    params: web::Query<DownloadParams>,
) -> Result<HttpResponse, ApiError> {
    let (account, conversation, file) = path.into_inner();
    let key = format!("{account}/{conversation}/{file}");
    let viewer = match &reader {
        Reader::Agent(agent) => Viewer::Agent {
            account: agent.account_id,
        },
        Reader::Customer(customer) => Viewer::Customer {
            account: customer.account_id,
            customer: customer.customer_id,
        },
    };
    let thumbnail = params.thumbnail.unwrap_or(false);
    let found = crate::app::attachments::download(&state, viewer, &key, thumbnail)
        .await
        .map_err(|e| match e {
            DownloadError::NotFound => ApiError::NotFound(e.to_string()),
            DownloadError::NoThumbnail | DownloadError::Thumbnail(_) => ApiError::Invalid(e.to_string()),
            DownloadError::Unavailable => ApiError::Unavailable(e.to_string()),
            DownloadError::Store(e) => ApiError::internal(e),
            DownloadError::App(e) => e.into(),
        })?;
    let recorded = found.attachment.content_type.as_str();
    let image = RASTER_IMAGES.contains(&recorded);
    let served = if found.thumbnail {
        "image/webp"
    } else if image || recorded == "application/pdf" {
        recorded
    } else if recorded == "text/plain" {
        // Sniffed as text only when the bytes are valid UTF-8.
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let disposition = if image { "inline" } else { "attachment" };
    let name = if found.thumbnail {
        format!("{}.webp", found.attachment.file_name)
    } else {
        found.attachment.file_name.clone()
    };
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header((header::CONTENT_TYPE, served))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "{disposition}; filename=\"{}\"; filename*=UTF-8''{}",
                ascii_fallback(&name),
                percent_encode(&name)
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"));
    if !found.thumbnail {
        // The recorded hash is the original's, never the thumbnail's.
        answer.insert_header(("X-Content-SHA256", found.attachment.sha256.clone()));
    }
    Ok(answer.body(found.bytes))
}

/// `name` with everything but printable ASCII (and `"`, `\`) as `_`: the `filename` parameter
/// for clients that do not read `filename*` (RFC 6266 §4.3).
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `name` as RFC 8187 `value-chars`: UTF-8, every byte outside `attr-char` percent-encoded.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_in_content_disposition_are_escaped() {
        assert_eq!(percent_encode("naïve résumé.pdf"), "na%C3%AFve%20r%C3%A9sum%C3%A9.pdf");
        assert_eq!(ascii_fallback("naïve \"x\".pdf"), "na_ve _x_.pdf");
        assert_eq!(percent_encode("a\";b"), "a%22%3Bb");
    }
}
