//! PNG figures with no system fonts: line charts (train vs val loss, ROC curves), scatter
//! plots of 2-D embeddings, bar charts, image grids (input | reconstruction | error map),
//! heat maps and de-normalisation of model tensors back to viewable images, and anomaly-map
//! overlays (`overlay.rs`: image | heat map | blend with the defect mask's contour).
//!
//! Rendering uses `plotters` with its bitmap backend and the pure-Rust `ab_glyph` text
//! engine; the DejaVu Sans font is embedded (crate `dejavu`) and registered once, so no
//! font has to be installed on the machine. Text itself is laid out and rasterised by a
//! thin backend wrapper (`text.rs`) because plotters 0.3.7's ab_glyph path misplaces
//! glyphs. Figures are drawn into an RGB buffer and encoded with `image`; every file is
//! written atomically through [`crate::fsutil`].
//!
//! This module never imports Burn: the deployment side uses it too (ARCHITECTURE.md seam 1).
//!
//! Inputs are treated leniently: non-finite values are skipped, degenerate ranges are
//! padded, an empty chart is drawn with a "no data" note. Invalid sizes and I/O failures
//! are reported as [`PlotError`]; nothing here is meant to panic.

mod charts;
mod images;
mod overlay;
mod text;

pub use charts::{bar_chart, line_chart, scatter, LineOptions, ScatterGroup, Series};
pub use images::{
    chw_to_rgb, heatmap, image_grid, inferno, GridRow, GRID_GAP, GRID_HEADER_HEIGHT,
    GRID_LABEL_WIDTH, GRID_TITLE_HEIGHT,
};
pub use overlay::{
    anomaly_overlay, heatmap_png, overlay_grid, overlay_grid_scaled, shared_scale, OverlayRow,
    CONTOUR_COLOR, OVERLAY_ALPHA, OVERLAY_GAP,
};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::{ImageEncoder, RgbImage};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Font family name every figure uses; it is registered with the embedded DejaVu Sans.
pub(crate) const FONT: &str = "sans-serif";

/// Largest width or height, in pixels, of any figure.
pub const MAX_SIDE: u32 = 16_384;

/// Largest number of pixels (width × height) of any figure.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Fixed palette for series, groups and bars (the "tab10" colours), used in this order and
/// repeated when there are more than ten entries.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],  // blue
    [255, 127, 14],  // orange
    [44, 160, 44],   // green
    [214, 39, 40],   // red
    [148, 103, 189], // purple
    [140, 86, 75],   // brown
    [227, 119, 194], // pink
    [127, 127, 127], // grey
    [188, 189, 34],  // olive
    [23, 190, 207],  // cyan
];

/// Colour of the `i`-th series, group or bar (cycling through [`PALETTE`]).
pub fn palette_color(i: usize) -> [u8; 3] {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn rgb(i: usize) -> RGBColor {
    let [r, g, b] = palette_color(i);
    RGBColor(r, g, b)
}

/// Why a figure could not be produced. Every variant names the output path.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The requested figure size or input shape is unusable (zero or too large, no rows…).
    #[error("cannot plot {path}: {message}")]
    InvalidInput {
        /// The figure that was requested.
        path: PathBuf,
        /// What is wrong with the input.
        message: String,
    },
    /// Drawing failed inside the plotting library (or the embedded font could not load).
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The figure that was being drawn.
        path: PathBuf,
        /// The library's description of the failure.
        message: String,
    },
    /// The PNG could not be encoded or written (missing permissions, read-only location…).
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl PlotError {
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        PlotError::InvalidInput {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn draw(path: &Path, message: impl Into<String>) -> Self {
        PlotError::Draw {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Registers the embedded DejaVu Sans (regular and bold) under [`FONT`] with plotters (for
/// its own text metrics), once per process, and checks that the faces used by
/// [`text::TextBackend`] parse.
fn ensure_font() -> Result<(), String> {
    if !text::fonts_available() {
        return Err("the embedded DejaVu Sans font could not be parsed".to_string());
    }
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let faces: [(FontStyle, &'static [u8]); 2] = [
                (FontStyle::Normal, dejavu::sans::regular()),
                (FontStyle::Bold, dejavu::sans::bold()),
            ];
            for (style, bytes) in faces {
                plotters::style::register_font(FONT, style, bytes)
                    .map_err(|_| "the embedded DejaVu Sans font could not be parsed".to_string())?;
            }
            Ok(())
        })
        .clone()
}

/// Checks a figure size against [`MAX_SIDE`] and [`MAX_PIXELS`].
pub(crate) fn check_size(path: &Path, (w, h): (u32, u32)) -> Result<(), PlotError> {
    if w == 0 || h == 0 {
        return Err(PlotError::invalid(
            path,
            format!("figure size {w}x{h} is empty"),
        ));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(PlotError::invalid(
            path,
            format!(
                "figure size {w}x{h} is too large (max side {MAX_SIDE}, max {MAX_PIXELS} pixels)"
            ),
        ));
    }
    Ok(())
}

/// The drawing area every chart function draws on.
pub(crate) type Canvas<'a> = DrawingArea<text::TextBackend<'a>, plotters::coord::Shift>;

/// Renders a `w`×`h` figure with `draw` onto `base` (or white), then saves it as a PNG.
///
/// Any error of the plotting library becomes [`PlotError::Draw`]; a panic inside the
/// library is caught and reported the same way, so a figure can never bring down a run.
pub(crate) fn render<F>(
    path: &Path,
    size: (u32, u32),
    base: Option<RgbImage>,
    draw: F,
) -> Result<(), PlotError>
where
    F: FnOnce(&Canvas<'_>) -> Result<(), String>,
{
    check_size(path, size)?;
    ensure_font().map_err(|m| PlotError::draw(path, m))?;
    let (w, h) = size;
    let mut buf = match base {
        Some(img) if img.dimensions() == size => img.into_raw(),
        _ => vec![255u8; w as usize * h as usize * 3],
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let root =
            text::TextBackend::new(BitMapBackend::with_buffer(&mut buf, size)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Err(PlotError::draw(path, message)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            return Err(PlotError::draw(
                path,
                format!("plotting library panicked: {message}"),
            ));
        }
    }
    let img = RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| PlotError::draw(path, "frame buffer has the wrong size"))?;
    save_png(path, &img)
}

/// Saves an RGB image as a PNG, atomically (temporary sibling, then rename); parent
/// directories are created. Used for figures and for single heat maps or reconstructions.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<(), PlotError> {
    check_size(path, img.dimensions())?;
    crate::fsutil::write_atomic_with(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(io::Error::other)
    })
    .map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Stringifies any plotting-library error.
pub(crate) fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Formats a number compactly for tick and value labels: up to `sig` significant digits,
/// trailing zeros trimmed, scientific notation for very large or very small magnitudes.
pub(crate) fn fmt_num(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        let s = format!("{:.*e}", sig.saturating_sub(1).min(3), v);
        // "1.500e-5" -> "1.5e-5"
        if let Some((mant, exp)) = s.split_once('e') {
            let mant = if mant.contains('.') {
                mant.trim_end_matches('0').trim_end_matches('.')
            } else {
                mant
            };
            return format!("{mant}e{exp}");
        }
        return s;
    }
    let digits_before = a.log10().floor() as i32 + 1;
    let decimals = (sig as i32 - digits_before).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_num_is_compact() {
        assert_eq!(fmt_num(0.30000000000000004, 6), "0.3");
        assert_eq!(fmt_num(1234.5678, 4), "1235");
        assert_eq!(fmt_num(0.012345, 3), "0.0123");
        assert_eq!(fmt_num(1.5e-5, 4), "1.5e-5");
        assert_eq!(fmt_num(2.0e7, 4), "2e7");
        assert_eq!(fmt_num(-3.0, 4), "-3");
        assert_eq!(fmt_num(0.0, 4), "0");
        assert_eq!(fmt_num(f64::NAN, 4), "n/a");
    }

    #[test]
    fn font_registers() {
        ensure_font().unwrap();
        ensure_font().unwrap();
    }
}
