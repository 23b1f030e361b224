//! Image decoding: every file becomes 8-bit RGB (images) or a binary 8-bit mask.
//!
//! Files are decoded by their content, not their extension (a PNG named `.jpg` still
//! decodes). Conversion rules, chosen to match what PIL's `convert('RGB')` gives the Python
//! peers wherever PIL is well defined:
//! - grayscale (L) is replicated into R, G and B;
//! - alpha is dropped without compositing (as PIL does);
//! - 16-bit samples are scaled to 8 bits with rounding: `round(v · 255 / 65535)`, i.e.
//!   `0xFFFF → 255`, `0x8000 → 128`, `0x7F80 → 127`, `0 → 0`. (PIL clips 16-bit gray to
//!   255 instead of scaling; scaling keeps the picture.)
//! - float images are clamped to [0, 1] and scaled to 0..=255.

use std::path::Path;

use image::{ColorType, DynamicImage, GrayImage, ImageReader, RgbImage};

use super::DataError;

/// File extensions (lower case) accepted as images; matched case-insensitively. Any other
/// file (hidden files, `.DS_Store`, `README`, …) is ignored by the dataset reader.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Whether `path` has one of the accepted image extensions (case-insensitive) and is not a
/// hidden file. Looks at the name only; the content is checked when decoding.
pub fn is_image_file(path: &Path) -> bool {
    // A name that is not valid UTF-8 is still a file to read (it used to be dropped
    // silently); only a leading dot hides it.
    let hidden = path
        .file_name()
        .is_none_or(|n| n.to_string_lossy().starts_with('.'));
    if hidden {
        return false;
    }
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, DataError> {
    ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))
}

fn corrupt(path: &Path, e: image::ImageError) -> DataError {
    DataError::CorruptImage {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Decode `path` in its native layout (format guessed from the content). A file that cannot
/// be opened is [`DataError::Io`]; one that cannot be decoded (truncated, random bytes,
/// unsupported format, over the decoder's memory limit) is [`DataError::CorruptImage`].
pub fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    reader(path)?.decode().map_err(|e| corrupt(path, e))
}

/// Convert a decoded image of any layout to 8-bit RGB by the rules in the module docs.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    img.into_rgb8()
}

/// Decode `path` and convert it to 8-bit RGB (see the module docs for the rules).
pub fn load_rgb8(path: &Path) -> Result<RgbImage, DataError> {
    decode(path).map(to_rgb8)
}

/// Binarise a decoded mask of any layout: a pixel is defective (255) when any colour channel
/// is nonzero at the file's native depth, else 0; alpha is ignored. Working at native depth
/// keeps a 16-bit value of 1 a defect (scaling to 8 bits first would round it to 0).
pub fn mask_from_dynamic(img: &DynamicImage) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    let bin = |on: bool| image::Luma([if on { 255u8 } else { 0u8 }]);
    match img {
        DynamicImage::ImageLuma8(m) => {
            GrayImage::from_fn(w, h, |x, y| bin(m.get_pixel(x, y).0[0] != 0))
        }
        DynamicImage::ImageLumaA8(m) => {
            GrayImage::from_fn(w, h, |x, y| bin(m.get_pixel(x, y).0[0] != 0))
        }
        DynamicImage::ImageRgb8(m) => GrayImage::from_fn(w, h, |x, y| {
            bin(m.get_pixel(x, y).0.iter().any(|&v| v != 0))
        }),
        DynamicImage::ImageRgba8(m) => GrayImage::from_fn(w, h, |x, y| {
            bin(m.get_pixel(x, y).0[..3].iter().any(|&v| v != 0))
        }),
        DynamicImage::ImageLuma16(m) => {
            GrayImage::from_fn(w, h, |x, y| bin(m.get_pixel(x, y).0[0] != 0))
        }
        DynamicImage::ImageLumaA16(m) => {
            GrayImage::from_fn(w, h, |x, y| bin(m.get_pixel(x, y).0[0] != 0))
        }
        DynamicImage::ImageRgb16(m) => GrayImage::from_fn(w, h, |x, y| {
            bin(m.get_pixel(x, y).0.iter().any(|&v| v != 0))
        }),
        DynamicImage::ImageRgba16(m) => GrayImage::from_fn(w, h, |x, y| {
            bin(m.get_pixel(x, y).0[..3].iter().any(|&v| v != 0))
        }),
        other => {
            let f = other.to_rgb32f();
            GrayImage::from_fn(w, h, |x, y| {
                bin(f.get_pixel(x, y).0.iter().any(|&v| v > 0.0))
            })
        }
    }
}

/// Decode a ground-truth mask of any layout into a binary 8-bit mask (0 = good,
/// 255 = defect; any nonzero colour channel counts as defect, see [`mask_from_dynamic`]).
pub fn load_mask(path: &Path) -> Result<GrayImage, DataError> {
    decode(path).map(|img| mask_from_dynamic(&img))
}

/// (width, height) of the image at `path`, read from its header only (no pixel decoding).
pub fn image_size(path: &Path) -> Result<(u32, u32), DataError> {
    reader(path)?
        .into_dimensions()
        .map_err(|e| corrupt(path, e))
}

/// Short name of a channel layout, as shown by `data check`: `L8`, `LA8`, `RGB8`, `RGBA8`,
/// `L16`, `LA16`, `RGB16`, `RGBA16`, `RGB32F`, `RGBA32F` (or the decoder's own name for a
/// layout added later).
pub fn layout_name(color: ColorType) -> String {
    match color {
        ColorType::L8 => "L8".into(),
        ColorType::La8 => "LA8".into(),
        ColorType::Rgb8 => "RGB8".into(),
        ColorType::Rgba8 => "RGBA8".into(),
        ColorType::L16 => "L16".into(),
        ColorType::La16 => "LA16".into(),
        ColorType::Rgb16 => "RGB16".into(),
        ColorType::Rgba16 => "RGBA16".into(),
        ColorType::Rgb32F => "RGB32F".into(),
        ColorType::Rgba32F => "RGBA32F".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    #[test]
    fn extensions_case_insensitive_and_hidden_ignored() {
        for ok in [
            "a.png", "a.PNG", "b.JpG", "c.jpeg", "d.bmp", "e.tif", "f.TIFF",
        ] {
            assert!(is_image_file(Path::new(ok)), "{ok}");
        }
        for no in [
            ".DS_Store",
            "README",
            "a.txt",
            ".hidden.png",
            "x.gif",
            "noext",
        ] {
            assert!(!is_image_file(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn conversions_follow_documented_rules() {
        let l16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_vec(4, 1, vec![0xFFFF, 0x8000, 0x7F80, 0]).unwrap();
        let rgb = to_rgb8(DynamicImage::ImageLuma16(l16));
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, vec![255, 128, 127, 0]);
        assert!(rgb.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));

        let rgba = image::RgbaImage::from_pixel(2, 2, Rgba([10, 20, 30, 0]));
        let rgb = to_rgb8(DynamicImage::ImageRgba8(rgba));
        assert!(rgb.pixels().all(|p| *p == Rgb([10, 20, 30])));

        let la = ImageBuffer::<LumaA<u8>, Vec<u8>>::from_pixel(2, 2, LumaA([77, 3]));
        let rgb = to_rgb8(DynamicImage::ImageLumaA8(la));
        assert!(rgb.pixels().all(|p| *p == Rgb([77, 77, 77])));
    }

    #[test]
    fn masks_binarise_at_native_depth() {
        let m16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_vec(3, 1, vec![0, 1, 0xFFFF]).unwrap();
        let m = mask_from_dynamic(&DynamicImage::ImageLuma16(m16));
        assert_eq!(m.as_raw(), &vec![0, 255, 255]);

        let rgba = image::RgbaImage::from_vec(2, 1, vec![0, 0, 0, 255, 0, 0, 1, 0]).unwrap();
        let m = mask_from_dynamic(&DynamicImage::ImageRgba8(rgba));
        assert_eq!(m.as_raw(), &vec![0, 255]);
    }

    #[test]
    fn layout_names() {
        assert_eq!(layout_name(ColorType::L8), "L8");
        assert_eq!(layout_name(ColorType::Rgba16), "RGBA16");
    }
}
