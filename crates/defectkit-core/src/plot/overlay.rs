//! Anomaly-map overlays: one panel row per test image, [image | heat map | image blended with
//! the heat map, with the defect mask's contour], stacked into a labelled figure, and single
//! heat-map PNGs.
//!
//! Maps are row-major `f32`, the image's width × height, coloured with [`inferno`] over a
//! `scale` = (lo, hi) given by the caller so several images share one scale (see
//! [`shared_scale`]): lo (and below) is the dark end, hi (and above) the bright end. NaN values,
//! values missing from a short map, and every value under an unusable scale (hi ≤ lo or not
//! finite) are drawn at the dark end; nothing here panics on odd input.

use std::path::Path;

use image::imageops;
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::fit_text;
use super::{check_size, de, fmt_num, inferno, render, save_png, PlotError, FONT};

/// Gap in pixels between the panels of an [`anomaly_overlay`] (white) and around the panels
/// of an [`overlay_grid`].
pub const OVERLAY_GAP: u32 = 4;

/// Weight of the heat map in the blended panel (the image has `1 − OVERLAY_ALPHA`).
pub const OVERLAY_ALPHA: f32 = 0.5;

/// Colour of the mask contour in the blended panel: pure bright green, which no blend of an
/// image with [`inferno`] at [`OVERLAY_ALPHA`] can produce (a blended pixel has red 0 only
/// over inferno's darkest entry, and then green at most 128), so contour pixels are
/// unambiguous.
pub const CONTOUR_COLOR: [u8; 3] = [0, 255, 0];

/// Smallest panel side in an [`overlay_grid`]: smaller images are enlarged by a whole factor
/// (nearest neighbour, so contours stay crisp) to at least this side.
const MIN_CELL: u32 = 160;
/// Largest panel side in an [`overlay_grid`].
const MAX_CELL: u32 = 4096;
const TITLE_HEIGHT: u32 = 34;
const HEADER_HEIGHT: u32 = 22;
const LABEL_HEIGHT: u32 = 22;
const BAR_HEIGHT: u32 = 12;
const BAR_BAND: u32 = 44;
const COLUMNS: [&str; 3] = ["image", "anomaly map", "overlay"];

/// One test image of an [`overlay_grid`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OverlayRow {
    /// The model-input image (e.g. side×side after preprocessing, de-normalised).
    pub image: RgbImage,
    /// Its anomaly map, row-major, the image's width × height.
    pub map: Vec<f32>,
    /// Its ground-truth defect mask (same shape, `true` = defective), if known.
    pub mask: Option<Vec<bool>>,
    /// Text above the row, e.g. "bottle/broken_large 003 score 4.21 ≥ 3.90"; shortened with
    /// "…" when it does not fit.
    pub label: String,
}

/// The colour scale (min, max) over the finite values of all `maps`, for maps that should
/// share one scale; (0, 1) when there is no finite value.
pub fn shared_scale<'a>(maps: impl IntoIterator<Item = &'a [f32]>) -> (f32, f32) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in maps.into_iter().flatten() {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo <= hi {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// Position of `v` on the scale, in [0, 1] (see the module docs for odd values).
fn scale_t(v: f32, (lo, hi): (f32, f32)) -> f32 {
    if v.is_nan() || !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return 0.0;
    }
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// The heat map of `map` (row-major `width`×`height`) coloured with inferno over `scale`.
fn heat_image(map: &[f32], width: u32, height: u32, scale: (f32, f32)) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let i = y as usize * width as usize + x as usize;
        Rgb(inferno(scale_t(
            map.get(i).copied().unwrap_or(f32::NAN),
            scale,
        )))
    })
}

/// The 1-pixel inner boundary of a mask: the defect pixels with at least one of their four
/// edge neighbours outside the mask (a good pixel or beyond the image border). Values missing
/// from a short mask are good.
fn contour(mask: &[bool], width: u32, height: u32) -> Vec<bool> {
    let (w, h) = (width as i64, height as i64);
    let at = |x: i64, y: i64| {
        (0..w).contains(&x)
            && (0..h).contains(&y)
            && mask.get((y * w + x) as usize).copied().unwrap_or(false)
    };
    let mut out = vec![false; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            out[(y * w + x) as usize] =
                at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1));
        }
    }
    out
}

/// The three panels of one image: the image, its heat map, and the blend with the contour.
fn panels(
    image: &RgbImage,
    map: &[f32],
    mask: Option<&[bool]>,
    scale: (f32, f32),
) -> [RgbImage; 3] {
    let (w, h) = image.dimensions();
    let heat = heat_image(map, w, h, scale);
    let edge = mask.map(|m| contour(m, w, h));
    let mut blend = RgbImage::new(w, h);
    for (x, y, px) in blend.enumerate_pixels_mut() {
        let i = (y * w + x) as usize;
        if edge.as_ref().is_some_and(|e| e[i]) {
            *px = Rgb(CONTOUR_COLOR);
            continue;
        }
        let (a, b) = (image.get_pixel(x, y).0, heat.get_pixel(x, y).0);
        *px = Rgb(std::array::from_fn(|c| {
            (f32::from(a[c]) * (1.0 - OVERLAY_ALPHA) + f32::from(b[c]) * OVERLAY_ALPHA).round()
                as u8
        }));
    }
    [image.clone(), heat, blend]
}

/// One panel row for a model-input image: [`image` | heat map of `map` | `image` blended with
/// the heat map, with `mask`'s contour], separated by [`OVERLAY_GAP`] white columns. The result
/// is (3·w + 2·[`OVERLAY_GAP`]) × h for a w×h image.
///
/// - `map`: row-major, the image's width × height (a short map's missing values are dark,
///   extra values ignored), coloured with [`inferno`] over `scale` = (lo, hi); pass the same
///   scale for images that should be compared ([`shared_scale`]).
/// - The blend is `(1 − OVERLAY_ALPHA)·image + OVERLAY_ALPHA·heat`.
/// - `mask` (same shape, `true` = defective): its 1-pixel inner boundary — every defect pixel
///   with a 4-neighbour outside the mask or beyond the border — is drawn in [`CONTOUR_COLOR`].
pub fn anomaly_overlay(
    image: &RgbImage,
    map: &[f32],
    mask: Option<&[bool]>,
    scale: (f32, f32),
) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = RgbImage::from_pixel(3 * w + 2 * OVERLAY_GAP, h, Rgb([255, 255, 255]));
    for (k, panel) in panels(image, map, mask, scale).iter().enumerate() {
        imageops::replace(&mut out, panel, i64::from(k as u32 * (w + OVERLAY_GAP)), 0);
    }
    out
}

/// Writes the heat map of `map` (row-major, `side`×`side`) as a `side`×`side` PNG at `path`,
/// coloured with [`inferno`] over `scale` (as [`anomaly_overlay`]'s middle panel), atomically.
/// Errors: `side` of 0 or too large, or the file cannot be written.
pub fn heatmap_png(
    path: &Path,
    map: &[f32],
    side: u32,
    scale: (f32, f32),
) -> Result<(), PlotError> {
    check_size(path, (side, side))?;
    save_png(path, &heat_image(map, side, side, scale))
}

/// [`overlay_grid_scaled`] with the colour scale of all rows' maps ([`shared_scale`]).
pub fn overlay_grid(path: &Path, title: &str, rows: &[OverlayRow]) -> Result<(), PlotError> {
    overlay_grid_scaled(path, title, rows, None)
}

/// Draws one [`anomaly_overlay`] row per test image, each under its label, with a title,
/// column headers (image | anomaly map | overlay) and a colour bar of the scale, to a PNG at
/// `path` (atomically).
///
/// All rows share one colour scale: `scale`, or when None the min and max over all rows' maps
/// ([`shared_scale`]). Panels are square cells of the largest image side, enlarged by a whole
/// factor (nearest neighbour) to at least 160 px; smaller images are centred in their cells.
/// Errors: no rows, an oversized result, or the file cannot be written.
pub fn overlay_grid_scaled(
    path: &Path,
    title: &str,
    rows: &[OverlayRow],
    scale: Option<(f32, f32)>,
) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::invalid(path, "overlay grid has no rows"));
    }
    let scale = scale.unwrap_or_else(|| shared_scale(rows.iter().map(|r| &r.map[..])));
    let largest = rows
        .iter()
        .map(|r| r.image.width().max(r.image.height()))
        .max()
        .unwrap_or(0)
        .max(1);
    if largest > MAX_CELL {
        return Err(PlotError::invalid(
            path,
            format!("an image side of {largest} is above {MAX_CELL}"),
        ));
    }
    let factor = MIN_CELL.div_ceil(largest).max(1);
    let cell = largest * factor;
    let title_h = if title.is_empty() { 0 } else { TITLE_HEIGHT };
    let pitch = u64::from(LABEL_HEIGHT + cell + OVERLAY_GAP);
    let w = u64::from(OVERLAY_GAP) + 3 * u64::from(cell + OVERLAY_GAP);
    let h = u64::from(title_h + HEADER_HEIGHT) + rows.len() as u64 * pitch + u64::from(BAR_BAND);
    let size = (
        u32::try_from(w).unwrap_or(u32::MAX),
        u32::try_from(h).unwrap_or(u32::MAX),
    );
    check_size(path, size)?;

    let col_x = |k: u32| OVERLAY_GAP + k * (cell + OVERLAY_GAP);
    let row_y = |r: usize| title_h + HEADER_HEIGHT + r as u32 * (LABEL_HEIGHT + cell + OVERLAY_GAP);
    let mut canvas = RgbImage::from_pixel(size.0, size.1, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let y0 = row_y(r) + LABEL_HEIGHT;
        let (iw, ih) = row.image.dimensions();
        if iw == 0 || ih == 0 {
            for k in 0..3 {
                fill(&mut canvas, col_x(k), y0, cell, cell, [232, 232, 232]);
            }
            continue;
        }
        let row_panels = panels(&row.image, &row.map, row.mask.as_deref(), scale);
        let (pw, ph) = (iw * factor, ih * factor);
        for (k, panel) in row_panels.iter().enumerate() {
            let big = if factor == 1 {
                panel.clone()
            } else {
                imageops::resize(panel, pw, ph, imageops::FilterType::Nearest)
            };
            let x = col_x(k as u32) + (cell - pw) / 2;
            let y = y0 + (cell - ph) / 2;
            imageops::replace(&mut canvas, &big, i64::from(x), i64::from(y));
        }
    }
    // The colour bar under the heat-map column.
    let bar_y = row_y(rows.len()) + 6;
    for dx in 0..cell {
        let t = if cell > 1 {
            dx as f32 / (cell - 1) as f32
        } else {
            1.0
        };
        fill(&mut canvas, col_x(1) + dx, bar_y, 1, BAR_HEIGHT, inferno(t));
    }

    render(path, size, Some(canvas), |root| {
        let (title_size, text_size) = (20.0, 14.0);
        if title_h > 0 {
            let style = TextStyle::from((FONT, title_size).into_font().style(FontStyle::Bold))
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            let text = fit_text(
                root,
                title,
                title_size,
                size.0.saturating_sub(2 * OVERLAY_GAP),
            );
            root.draw(&Text::new(
                text,
                (size.0 as i32 / 2, title_h as i32 / 2 + 2),
                style,
            ))
            .map_err(de)?;
        }
        let centered = TextStyle::from((FONT, text_size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        for (k, name) in COLUMNS.iter().enumerate() {
            let x = (col_x(k as u32) + cell / 2) as i32;
            let y = (title_h + HEADER_HEIGHT / 2) as i32;
            root.draw(&Text::new(
                fit_text(root, name, text_size, cell),
                (x, y),
                centered.clone(),
            ))
            .map_err(de)?;
        }
        let left = TextStyle::from((FONT, text_size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (r, row) in rows.iter().enumerate() {
            let y = (row_y(r) + LABEL_HEIGHT / 2 + 1) as i32;
            let text = fit_text(root, &row.label, text_size, size.0 - 2 * OVERLAY_GAP);
            root.draw(&Text::new(text, (OVERLAY_GAP as i32, y), left.clone()))
                .map_err(de)?;
        }
        let y = (bar_y + BAR_HEIGHT + 12) as i32;
        let (lo, hi) = scale;
        let label_style = |anchor| {
            TextStyle::from((FONT, text_size - 1.0).into_font())
                .color(&BLACK)
                .pos(Pos::new(anchor, VPos::Center))
        };
        root.draw(&Text::new(
            fmt_num(f64::from(lo), 4),
            (col_x(1) as i32, y),
            label_style(HPos::Left),
        ))
        .map_err(de)?;
        root.draw(&Text::new(
            fmt_num(f64::from(hi), 4),
            ((col_x(1) + cell) as i32, y),
            label_style(HPos::Right),
        ))
        .map_err(de)?;
        root.draw(&Text::new(
            "anomaly score".to_string(),
            (col_x(1) as i32 - 8, (bar_y + BAR_HEIGHT / 2) as i32),
            label_style(HPos::Right),
        ))
        .map_err(de)?;
        Ok(())
    })
}

fn fill(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, color: [u8; 3]) {
    for y in y0..(y0 + h).min(img.height()) {
        for x in x0..(x0 + w).min(img.width()) {
            img.put_pixel(x, y, Rgb(color));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_handles_odd_values() {
        assert_eq!(scale_t(0.5, (0.0, 1.0)), 0.5);
        assert_eq!(scale_t(2.0, (0.0, 1.0)), 1.0);
        assert_eq!(scale_t(f32::INFINITY, (0.0, 1.0)), 1.0);
        assert_eq!(scale_t(f32::NEG_INFINITY, (0.0, 1.0)), 0.0);
        assert_eq!(scale_t(f32::NAN, (0.0, 1.0)), 0.0);
        assert_eq!(scale_t(0.5, (1.0, 1.0)), 0.0);
        assert_eq!(scale_t(0.5, (f32::NAN, 1.0)), 0.0);
        assert_eq!(shared_scale([&[f32::NAN][..]]), (0.0, 1.0));
        assert_eq!(
            shared_scale([&[3.0, f32::NAN][..], &[-1.0][..]]),
            (-1.0, 3.0)
        );
    }

    #[test]
    fn contour_is_the_inner_boundary() {
        // A 3×3 block in a 5×5 mask: all but its centre; a block at the border keeps its
        // border pixels.
        let mut m = vec![false; 25];
        for y in 1..4 {
            for x in 1..4 {
                m[y * 5 + x] = true;
            }
        }
        let c = contour(&m, 5, 5);
        assert_eq!(c.iter().filter(|&&b| b).count(), 8);
        assert!(!c[12]);
        let c = contour(&[true; 9], 3, 3);
        assert_eq!(
            c,
            vec![true, true, true, true, false, true, true, true, true]
        );
    }
}
