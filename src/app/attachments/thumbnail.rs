//! Thumbnails of raster images (ADR 0022): WebP, at most [`THUMBNAIL_SIDE`] px a side, made on
//! first request and kept beside the original.

use std::io::Cursor;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{AttachmentStore, DownloadError, read};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// The most memory one thumbnail's decoding may claim: 96 MiB (a 24-megapixel photo in RGB; a
/// 4096x4096 screenshot with alpha is 64 MiB).
pub const DECODE_MAX_ALLOC: u64 = 96 * 1024 * 1024;

/// The thumbnail of the image at `key`: kept beside it (`<key>.thumb.webp`), else made — one at a
/// time on this node, and once: a request that waited finds the one made meanwhile.
pub(super) async fn thumbnail_of(files: &AttachmentStore, key: &str) -> Result<Bytes, DownloadError> {
    let thumb_path = Path::from(format!("{key}.thumb.webp"));
    if let Some(kept) = read(files, &thumb_path).await? {
        return Ok(kept);
    }
    let undecodable = || DownloadError::Thumbnail("the image could not be decoded".to_owned());
    let known_bad = |files: &AttachmentStore| files.undecodable.lock().is_ok_and(|bad| bad.contains(key));
    if known_bad(files) {
        return Err(undecodable());
    }
    let _turn = files
        .thumbnails
        .acquire()
        .await
        .map_err(|e| DownloadError::Thumbnail(e.to_string()))?;
    if let Some(kept) = read(files, &thumb_path).await? {
        return Ok(kept);
    }
    if known_bad(files) {
        return Err(undecodable());
    }
    let original = read(files, &Path::from(key)).await?.ok_or(DownloadError::NotFound)?;
    let made = match tokio::task::spawn_blocking(move || make_thumbnail(&original))
        .await
        .map_err(|e| DownloadError::Thumbnail(e.to_string()))?
    {
        Ok(made) => made,
        Err(e) => {
            if let Ok(mut bad) = files.undecodable.lock() {
                bad.insert(key.to_owned());
            }
            return Err(e);
        }
    };
    files.store.put(&thumb_path, PutPayload::from(made.clone())).await?;
    Ok(made)
}

/// A WebP (lossless) no larger than [`THUMBNAIL_SIDE`] on its long side (a smaller image keeps
/// its size). Decoding is bounded (at most 16,384 px a side, [`DECODE_MAX_ALLOC`] bytes) so a
/// small file cannot claim gigabytes.
fn make_thumbnail(original: &[u8]) -> Result<Bytes, DownloadError> {
    let failed = |e: image::ImageError| DownloadError::Thumbnail(e.to_string());
    let mut reader = image::ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| DownloadError::Thumbnail(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(DECODE_MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(failed)?;
    let fits = image.width() <= THUMBNAIL_SIDE && image.height() <= THUMBNAIL_SIDE;
    let small = if fits {
        image
    } else {
        image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    };
    let small = image::DynamicImage::ImageRgba8(small.to_rgba8());
    let mut out = Cursor::new(Vec::new());
    small.write_to(&mut out, image::ImageFormat::WebP).map_err(failed)?;
    Ok(Bytes::from(out.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::attachments::sniff;

    #[test]
    fn thumbnails_fit_320_px_and_are_webp() {
        let image = image::RgbImage::from_pixel(1280, 640, image::Rgb([200, 30, 30]));
        let mut png = Cursor::new(Vec::new());
        image.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let thumb = make_thumbnail(png.get_ref()).unwrap();
        assert_eq!(sniff(&thumb), "image/webp");
        let decoded = image::load_from_memory(&thumb).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 160));
        assert!(make_thumbnail(b"not an image").is_err());
        let tiny = image::RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]));
        let mut png = Cursor::new(Vec::new());
        tiny.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let decoded = image::load_from_memory(&make_thumbnail(png.get_ref()).unwrap()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (4, 3), "never enlarged");
    }
}
