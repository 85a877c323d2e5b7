//! The demo's one photo, drawn rather than shipped (no binary file in the repository).

/// A 480x320 PNG for the demo's photo: a grey disc with spokes (a brake disc) on a warm background.
pub(super) fn brake_disc() -> Vec<u8> {
    let (w, h) = (480u32, 320u32);
    let (cx, cy) = (240.0f32, 160.0f32);
    let image = image::RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let r = (dx * dx + dy * dy).sqrt();
        let spoke = (dy.atan2(dx) * 3.0).sin().abs() < 0.12;
        match r {
            r if r < 18.0 => image::Rgb([60, 60, 64]),
            r if r < 120.0 && spoke => image::Rgb([90, 90, 96]),
            r if r < 120.0 => image::Rgb([170, 172, 178]),
            r if r < 128.0 => image::Rgb([110, 112, 118]),
            _ => image::Rgb([(200 + y / 8) as u8, (150 + x / 12) as u8, 110]),
        }
    });
    let mut png = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory RGB image as PNG does not fail; an empty photo would be refused anyway.
    image.write_to(&mut png, image::ImageFormat::Png).ok();
    png.into_inner()
}
