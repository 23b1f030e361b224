//! Image grids, heat maps and de-normalisation of model tensors.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::fit_text;
use super::{check_size, de, render, PlotError, FONT};

/// One row of an [`image_grid`]: a label and its images, left to right.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridRow {
    /// Text left of the row (e.g. the sample's file name); shortened with "…" when it
    /// does not fit [`GRID_LABEL_WIDTH`].
    pub label: String,
    /// The row's images (e.g. input, reconstruction, error map); each is scaled to fit a
    /// `cell`×`cell` square, keeping its aspect ratio.
    pub images: Vec<RgbImage>,
}

/// Gap in pixels between grid cells and around the grid.
pub const GRID_GAP: u32 = 4;
/// Height of the title band of an [`image_grid`] (0 when the title is empty).
pub const GRID_TITLE_HEIGHT: u32 = 34;
/// Height of the column-header band of an [`image_grid`] (0 when all headers are empty).
pub const GRID_HEADER_HEIGHT: u32 = 24;
/// Width of the row-label column of an [`image_grid`] (0 when all row labels are empty).
pub const GRID_LABEL_WIDTH: u32 = 140;

/// Largest cell side accepted by [`image_grid`].
const MAX_CELL: u32 = 4096;

/// Draws a grid of images with row labels and column headers to a PNG at `path`, e.g.
/// rows = samples and columns = input | reconstruction | error map.
///
/// Layout (all in pixels, `cols` = the larger of `column_labels.len()` and the longest
/// row): width = `label_w + GRID_GAP + cols × (cell + GRID_GAP)` and height =
/// `title_h + header_h + GRID_GAP + rows × (cell + GRID_GAP)`, where `label_w`,
/// `title_h`, `header_h` are [`GRID_LABEL_WIDTH`], [`GRID_TITLE_HEIGHT`],
/// [`GRID_HEADER_HEIGHT`], or 0 when there is no such text. Rows shorter than `cols`
/// leave grey empty cells. Errors: no rows or no columns, `cell` of 0 or above 4096, an
/// oversized result, or the file cannot be written.
pub fn image_grid(
    path: &Path,
    title: &str,
    column_labels: &[String],
    rows: &[GridRow],
    cell: u32,
) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::invalid(path, "image grid has no rows"));
    }
    let cols = rows
        .iter()
        .map(|r| r.images.len())
        .max()
        .unwrap_or(0)
        .max(column_labels.len());
    if cols == 0 {
        return Err(PlotError::invalid(path, "image grid has no columns"));
    }
    if cell == 0 || cell > MAX_CELL {
        return Err(PlotError::invalid(
            path,
            format!("grid cell size {cell} is outside 1..={MAX_CELL}"),
        ));
    }
    let title_h = if title.is_empty() {
        0
    } else {
        GRID_TITLE_HEIGHT
    };
    let header_h = if column_labels.iter().all(|l| l.is_empty()) {
        0
    } else {
        GRID_HEADER_HEIGHT
    };
    let label_w = if rows.iter().all(|r| r.label.is_empty()) {
        0
    } else {
        GRID_LABEL_WIDTH
    };
    let pitch = u64::from(cell) + u64::from(GRID_GAP);
    let w = u64::from(label_w) + u64::from(GRID_GAP) + cols as u64 * pitch;
    let h =
        u64::from(title_h) + u64::from(header_h) + u64::from(GRID_GAP) + rows.len() as u64 * pitch;
    let size = (
        u32::try_from(w).unwrap_or(u32::MAX),
        u32::try_from(h).unwrap_or(u32::MAX),
    );
    check_size(path, size)?;

    // Images are composed directly into the frame; plotters then adds the text.
    let mut canvas = RgbImage::from_pixel(size.0, size.1, Rgb([255, 255, 255]));
    let top = title_h + header_h + GRID_GAP;
    let left = label_w + GRID_GAP;
    for (r, row) in rows.iter().enumerate() {
        let y0 = top + r as u32 * (cell + GRID_GAP);
        for c in 0..cols {
            let x0 = left + c as u32 * (cell + GRID_GAP);
            match row
                .images
                .get(c)
                .filter(|img| img.width() > 0 && img.height() > 0)
            {
                Some(img) => {
                    let fitted = fit_into(img, cell);
                    let dx = (cell - fitted.width()) / 2;
                    let dy = (cell - fitted.height()) / 2;
                    imageops::replace(&mut canvas, &fitted, i64::from(x0 + dx), i64::from(y0 + dy));
                }
                None => fill_rect(&mut canvas, x0, y0, cell, cell, [232, 232, 232]),
            }
        }
    }

    let cell_i = cell as i32;
    render(path, size, Some(canvas), |root| {
        let title_size = 20.0;
        let text_size = 15.0;
        if title_h > 0 {
            let style = TextStyle::from((FONT, title_size).into_font().style(FontStyle::Bold))
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            let text = fit_text(root, title, title_size, size.0.saturating_sub(2 * GRID_GAP));
            root.draw(&Text::new(
                text,
                (size.0 as i32 / 2, title_h as i32 / 2 + 2),
                style,
            ))
            .map_err(de)?;
        }
        if header_h > 0 {
            let style = TextStyle::from((FONT, text_size).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            for (c, label) in column_labels.iter().enumerate() {
                let x = (left + c as u32 * (cell + GRID_GAP)) as i32 + cell_i / 2;
                let y = (title_h + header_h / 2 + GRID_GAP / 2) as i32;
                let text = fit_text(root, label, text_size, cell);
                root.draw(&Text::new(text, (x, y), style.clone()))
                    .map_err(de)?;
            }
        }
        if label_w > 0 {
            let style = TextStyle::from((FONT, text_size).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            for (r, row) in rows.iter().enumerate() {
                let y = (top + r as u32 * (cell + GRID_GAP)) as i32 + cell_i / 2;
                let text = fit_text(root, &row.label, text_size, label_w - 2 * GRID_GAP);
                root.draw(&Text::new(text, ((2 * GRID_GAP) as i32, y), style.clone()))
                    .map_err(de)?;
            }
        }
        Ok(())
    })
}

/// `img` scaled to fit a `cell`×`cell` square, keeping the aspect ratio (nearest-neighbour
/// when enlarging, so small tensors and error maps stay crisp; triangle when shrinking).
fn fit_into(img: &RgbImage, cell: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == cell && h == cell {
        return img.clone();
    }
    let scale = f64::from(cell) / f64::from(w.max(h));
    let nw = ((f64::from(w) * scale).round() as u32).clamp(1, cell);
    let nh = ((f64::from(h) * scale).round() as u32).clamp(1, cell);
    let filter = if scale >= 1.0 {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    imageops::resize(img, nw, nh, filter)
}

fn fill_rect(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, color: [u8; 3]) {
    for y in y0..(y0 + h).min(img.height()) {
        for x in x0..(x0 + w).min(img.width()) {
            img.put_pixel(x, y, Rgb(color));
        }
    }
}

/// Matplotlib's "inferno" colour map (CC0, BIDS colormap project), 256 entries: black
/// through purple and orange to pale yellow, monotone in luminance.
const INFERNO: [[u8; 3]; 256] = [
    [0, 0, 4],
    [1, 0, 5],
    [1, 1, 6],
    [1, 1, 8],
    [2, 1, 10],
    [2, 2, 12],
    [2, 2, 14],
    [3, 2, 16],
    [4, 3, 18],
    [4, 3, 20],
    [5, 4, 23],
    [6, 4, 25],
    [7, 5, 27],
    [8, 5, 29],
    [9, 6, 31],
    [10, 7, 34],
    [11, 7, 36],
    [12, 8, 38],
    [13, 8, 41],
    [14, 9, 43],
    [16, 9, 45],
    [17, 10, 48],
    [18, 10, 50],
    [20, 11, 52],
    [21, 11, 55],
    [22, 11, 57],
    [24, 12, 60],
    [25, 12, 62],
    [27, 12, 65],
    [28, 12, 67],
    [30, 12, 69],
    [31, 12, 72],
    [33, 12, 74],
    [35, 12, 76],
    [36, 12, 79],
    [38, 12, 81],
    [40, 11, 83],
    [41, 11, 85],
    [43, 11, 87],
    [45, 11, 89],
    [47, 10, 91],
    [49, 10, 92],
    [50, 10, 94],
    [52, 10, 95],
    [54, 9, 97],
    [56, 9, 98],
    [57, 9, 99],
    [59, 9, 100],
    [61, 9, 101],
    [62, 9, 102],
    [64, 10, 103],
    [66, 10, 104],
    [68, 10, 104],
    [69, 10, 105],
    [71, 11, 106],
    [73, 11, 106],
    [74, 12, 107],
    [76, 12, 107],
    [77, 13, 108],
    [79, 13, 108],
    [81, 14, 108],
    [82, 14, 109],
    [84, 15, 109],
    [85, 15, 109],
    [87, 16, 110],
    [89, 16, 110],
    [90, 17, 110],
    [92, 18, 110],
    [93, 18, 110],
    [95, 19, 110],
    [97, 19, 110],
    [98, 20, 110],
    [100, 21, 110],
    [101, 21, 110],
    [103, 22, 110],
    [105, 22, 110],
    [106, 23, 110],
    [108, 24, 110],
    [109, 24, 110],
    [111, 25, 110],
    [113, 25, 110],
    [114, 26, 110],
    [116, 26, 110],
    [117, 27, 110],
    [119, 28, 109],
    [120, 28, 109],
    [122, 29, 109],
    [124, 29, 109],
    [125, 30, 109],
    [127, 30, 108],
    [128, 31, 108],
    [130, 32, 108],
    [132, 32, 107],
    [133, 33, 107],
    [135, 33, 107],
    [136, 34, 106],
    [138, 34, 106],
    [140, 35, 105],
    [141, 35, 105],
    [143, 36, 105],
    [144, 37, 104],
    [146, 37, 104],
    [147, 38, 103],
    [149, 38, 103],
    [151, 39, 102],
    [152, 39, 102],
    [154, 40, 101],
    [155, 41, 100],
    [157, 41, 100],
    [159, 42, 99],
    [160, 42, 99],
    [162, 43, 98],
    [163, 44, 97],
    [165, 44, 96],
    [166, 45, 96],
    [168, 46, 95],
    [169, 46, 94],
    [171, 47, 94],
    [173, 48, 93],
    [174, 48, 92],
    [176, 49, 91],
    [177, 50, 90],
    [179, 50, 90],
    [180, 51, 89],
    [182, 52, 88],
    [183, 53, 87],
    [185, 53, 86],
    [186, 54, 85],
    [188, 55, 84],
    [189, 56, 83],
    [191, 57, 82],
    [192, 58, 81],
    [193, 58, 80],
    [195, 59, 79],
    [196, 60, 78],
    [198, 61, 77],
    [199, 62, 76],
    [200, 63, 75],
    [202, 64, 74],
    [203, 65, 73],
    [204, 66, 72],
    [206, 67, 71],
    [207, 68, 70],
    [208, 69, 69],
    [210, 70, 68],
    [211, 71, 67],
    [212, 72, 66],
    [213, 74, 65],
    [215, 75, 63],
    [216, 76, 62],
    [217, 77, 61],
    [218, 78, 60],
    [219, 80, 59],
    [221, 81, 58],
    [222, 82, 56],
    [223, 83, 55],
    [224, 85, 54],
    [225, 86, 53],
    [226, 87, 52],
    [227, 89, 51],
    [228, 90, 49],
    [229, 92, 48],
    [230, 93, 47],
    [231, 94, 46],
    [232, 96, 45],
    [233, 97, 43],
    [234, 99, 42],
    [235, 100, 41],
    [235, 102, 40],
    [236, 103, 38],
    [237, 105, 37],
    [238, 106, 36],
    [239, 108, 35],
    [239, 110, 33],
    [240, 111, 32],
    [241, 113, 31],
    [241, 115, 29],
    [242, 116, 28],
    [243, 118, 27],
    [243, 120, 25],
    [244, 121, 24],
    [245, 123, 23],
    [245, 125, 21],
    [246, 126, 20],
    [246, 128, 19],
    [247, 130, 18],
    [247, 132, 16],
    [248, 133, 15],
    [248, 135, 14],
    [248, 137, 12],
    [249, 139, 11],
    [249, 140, 10],
    [249, 142, 9],
    [250, 144, 8],
    [250, 146, 7],
    [250, 148, 7],
    [251, 150, 6],
    [251, 151, 6],
    [251, 153, 6],
    [251, 155, 6],
    [251, 157, 7],
    [252, 159, 7],
    [252, 161, 8],
    [252, 163, 9],
    [252, 165, 10],
    [252, 166, 12],
    [252, 168, 13],
    [252, 170, 15],
    [252, 172, 17],
    [252, 174, 18],
    [252, 176, 20],
    [252, 178, 22],
    [252, 180, 24],
    [251, 182, 26],
    [251, 184, 29],
    [251, 186, 31],
    [251, 188, 33],
    [251, 190, 35],
    [250, 192, 38],
    [250, 194, 40],
    [250, 196, 42],
    [250, 198, 45],
    [249, 199, 47],
    [249, 201, 50],
    [249, 203, 53],
    [248, 205, 55],
    [248, 207, 58],
    [247, 209, 61],
    [247, 211, 64],
    [246, 213, 67],
    [246, 215, 70],
    [245, 217, 73],
    [245, 219, 76],
    [244, 221, 79],
    [244, 223, 83],
    [244, 225, 86],
    [243, 227, 90],
    [243, 229, 93],
    [242, 230, 97],
    [242, 232, 101],
    [242, 234, 105],
    [241, 236, 109],
    [241, 237, 113],
    [241, 239, 117],
    [241, 241, 121],
    [242, 242, 125],
    [242, 244, 130],
    [243, 245, 134],
    [243, 246, 138],
    [244, 248, 142],
    [245, 249, 146],
    [246, 250, 150],
    [248, 251, 154],
    [249, 252, 157],
    [250, 253, 161],
    [252, 255, 164],
];

/// Colour of the inferno map at `t` in `[0, 1]` (clamped; NaN gives the low end).
pub fn inferno(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    INFERNO[(t * 255.0).round() as usize]
}

/// Maps per-pixel errors (row-major, `width`×`height`) to an inferno heat map scaled to
/// `[0, max]`: 0 (and below) is the dark end, `max` (and above) the bright end. `max` is
/// given so several maps can share one scale. NaN and missing values (a short slice) map
/// to 0, extra values are ignored; a `max` that is not a finite positive number maps every
/// value to the dark end.
pub fn heatmap(values: &[f32], width: u32, height: u32, max: f32) -> RgbImage {
    let valid_max = max.is_finite() && max > 0.0;
    RgbImage::from_fn(width, height, |x, y| {
        let i = y as usize * width as usize + x as usize;
        let v = values.get(i).copied().unwrap_or(0.0);
        let t = if valid_max { v / max } else { 0.0 };
        Rgb(inferno(t))
    })
}

/// Undoes ImageNet-style normalisation of a CHW `f32` tensor (planes R, G, B, each
/// `width`×`height` row-major, values `(v / 255 − mean[c]) / std[c]`), giving an 8-bit
/// RGB image: `v = round((x · std[c] + mean[c]) · 255)`, clamped to 0..=255.
///
/// For a preprocessing spec with another `scale` s, pass `mean·s/255` and `std·s/255`.
/// Missing values (a short slice) and NaN become 0; extra values are ignored.
pub fn chw_to_rgb(chw: &[f32], width: u32, height: u32, mean: [f32; 3], std: [f32; 3]) -> RgbImage {
    let plane = width as usize * height as usize;
    RgbImage::from_fn(width, height, |x, y| {
        let i = y as usize * width as usize + x as usize;
        let mut px = [0u8; 3];
        for (c, out) in px.iter_mut().enumerate() {
            let v = chw.get(c * plane + i).copied().unwrap_or(f32::NAN);
            let p = (v * std[c] + mean[c]) * 255.0;
            *out = if p.is_nan() {
                0
            } else {
                p.round().clamp(0.0, 255.0) as u8
            };
        }
        Rgb(px)
    })
}
