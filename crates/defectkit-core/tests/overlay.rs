//! Anomaly-map overlays (`defectkit_core::plot::{anomaly_overlay, overlay_grid, heatmap_png}`):
//! panel layout and sizes, the contour is exactly the mask's boundary, the heat panel peaks
//! where the map does, odd maps never panic, files are written.
//!
//! Set `DEFECTKIT_PLOT_KEEP=/some/dir` to keep the figures for a visual check.

use std::path::{Path, PathBuf};

use defectkit_core::plot::{
    anomaly_overlay, heatmap_png, inferno, overlay_grid, overlay_grid_scaled, shared_scale,
    OverlayRow, PlotError, CONTOUR_COLOR, OVERLAY_ALPHA, OVERLAY_GAP,
};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Out {
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
}

fn out() -> Out {
    match std::env::var_os("DEFECTKIT_PLOT_KEEP") {
        Some(d) => {
            let dir = PathBuf::from(d);
            std::fs::create_dir_all(&dir).unwrap();
            Out { _tmp: None, dir }
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_path_buf();
            Out {
                _tmp: Some(tmp),
                dir,
            }
        }
    }
}

fn load(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8()
}

fn random_image(seed: u64, w: u32, h: u32) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    RgbImage::from_fn(w, h, |_, _| Rgb([rng.random(), rng.random(), rng.random()]))
}

/// A smooth bump peaking at (px, py) plus a little noise, below 1 everywhere else.
fn bump_map(seed: u64, side: u32, (px, py): (u32, u32)) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = side as f32;
    (0..side * side)
        .map(|i| {
            let (x, y) = ((i % side) as f32, (i / side) as f32);
            let d2 = ((x - px as f32).powi(2) + (y - py as f32).powi(2)) / (s * s / 16.0);
            0.6 * (-d2).exp() + 0.3 * rng.random::<f32>()
        })
        .enumerate()
        .map(|(i, v)| if i as u32 == py * side + px { 2.0 } else { v })
        .collect()
}

/// Two blobs, one of them at the image border, and a single pixel.
fn blob_mask(side: u32) -> Vec<bool> {
    let s = side as i64;
    (0..side * side)
        .map(|i| {
            let (x, y) = ((i % side) as i64, (i / side) as i64);
            let disc = (x - s / 3).pow(2) + (y - s / 2).pow(2) <= (s / 6).pow(2);
            let edge = x >= s - s / 5 && y < s / 4;
            let dot = x == s / 2 && y == s - 3;
            disc || edge || dot
        })
        .collect()
}

/// The boundary recomputed independently: defect pixels whose 4-neighbourhood leaves the mask.
fn boundary(mask: &[bool], side: u32) -> Vec<bool> {
    let s = side as i64;
    let inside = |x: i64, y: i64| x >= 0 && y >= 0 && x < s && y < s && mask[(y * s + x) as usize];
    (0..s * s)
        .map(|i| {
            let (x, y) = (i % s, i / s);
            inside(x, y)
                && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                    .iter()
                    .any(|&(dx, dy)| !inside(x + dx, y + dy))
        })
        .collect()
}

fn panel(img: &RgbImage, k: u32, side: u32) -> RgbImage {
    image::imageops::crop_imm(img, k * (side + OVERLAY_GAP), 0, side, side).to_image()
}

fn luminance(p: [u8; 3]) -> f32 {
    0.2126 * f32::from(p[0]) + 0.7152 * f32::from(p[1]) + 0.0722 * f32::from(p[2])
}

#[test]
fn overlay_has_three_panels_with_gaps() {
    let side = 48;
    let image = random_image(1, side, side);
    let map = bump_map(2, side, (10, 30));
    let mask = blob_mask(side);
    let o = anomaly_overlay(&image, &map, Some(&mask[..]), shared_scale([&map[..]]));
    assert_eq!(o.dimensions(), (3 * side + 2 * OVERLAY_GAP, side));
    // The first panel is the image itself; the gaps are white.
    assert_eq!(panel(&o, 0, side), image);
    for y in 0..side {
        for g in 0..OVERLAY_GAP {
            assert_eq!(o.get_pixel(side + g, y).0, [255; 3]);
            assert_eq!(o.get_pixel(2 * side + OVERLAY_GAP + g, y).0, [255; 3]);
        }
    }
    // Outside the contour the third panel is the blend of the first two.
    let (img, heat, blend) = (panel(&o, 0, side), panel(&o, 1, side), panel(&o, 2, side));
    let edge = boundary(&mask, side);
    for (i, ((a, b), c)) in img
        .pixels()
        .zip(heat.pixels())
        .zip(blend.pixels())
        .enumerate()
    {
        if edge[i] {
            continue;
        }
        for ch in 0..3 {
            let want =
                f32::from(a.0[ch]) * (1.0 - OVERLAY_ALPHA) + f32::from(b.0[ch]) * OVERLAY_ALPHA;
            assert!((f32::from(c.0[ch]) - want).abs() <= 0.5 + 1e-3, "pixel {i}");
        }
    }
}

#[test]
fn contour_pixels_are_exactly_the_mask_boundary() {
    for (seed, side) in [(3u64, 40u32), (4, 64), (5, 17)] {
        let image = random_image(seed, side, side);
        let map = bump_map(seed, side, (side / 4, side / 4));
        let mask = blob_mask(side);
        let o = anomaly_overlay(&image, &map, Some(&mask[..]), shared_scale([&map[..]]));
        let blend = panel(&o, 2, side);
        let drawn: Vec<bool> = blend.pixels().map(|p| p.0 == CONTOUR_COLOR).collect();
        let want = boundary(&mask, side);
        assert!(want.iter().any(|&b| b) && want.iter().zip(&mask).any(|(&b, &m)| m && !b));
        assert_eq!(drawn, want, "side {side}");
        // No contour colour anywhere else, and none without a mask.
        let elsewhere = [panel(&o, 0, side), panel(&o, 1, side)]
            .iter()
            .flat_map(|p| p.pixels().map(|q| q.0).collect::<Vec<_>>())
            .filter(|&p| p == CONTOUR_COLOR)
            .count();
        assert_eq!(elsewhere, 0);
        let bare = anomaly_overlay(&image, &map, None, shared_scale([&map[..]]));
        assert!(panel(&bare, 2, side).pixels().all(|p| p.0 != CONTOUR_COLOR));
    }
}

#[test]
fn heat_panel_is_brightest_where_the_map_peaks() {
    let side = 50;
    for (seed, peak) in [(6u64, (7u32, 41u32)), (7, (33, 2)), (8, (25, 25))] {
        let map = bump_map(seed, side, peak);
        let o = anomaly_overlay(
            &random_image(seed, side, side),
            &map,
            None,
            shared_scale([&map[..]]),
        );
        let heat = panel(&o, 1, side);
        let (bx, by, _) = heat
            .enumerate_pixels()
            .max_by(|a, b| luminance(a.2 .0).total_cmp(&luminance(b.2 .0)))
            .unwrap();
        assert_eq!((bx, by), peak);
        assert_eq!(heat.get_pixel(bx, by).0, inferno(1.0));
    }
    // An explicit scale: values at or below lo are the dark end, at or above hi the bright.
    let map: Vec<f32> = (0..side * side).map(|i| (i % 3) as f32).collect();
    let o = anomaly_overlay(&random_image(9, side, side), &map, None, (0.5, 1.5));
    let heat = panel(&o, 1, side);
    for (i, p) in heat.pixels().enumerate() {
        let want = [inferno(0.0), inferno(0.5), inferno(1.0)][i % 3];
        assert_eq!(p.0, want, "pixel {i}");
    }
}

#[test]
fn odd_maps_do_not_panic() {
    let side = 16;
    let image = random_image(10, side, side);
    let mask = blob_mask(side);
    let nan = vec![f32::NAN; (side * side) as usize];
    let mut mixed = bump_map(11, side, (3, 3));
    mixed[5] = f32::NAN;
    mixed[6] = f32::INFINITY;
    mixed[7] = f32::NEG_INFINITY;
    let short = vec![1.0f32; 10];
    let short_mask = [true; 7];
    for (map, scale) in [
        (&nan, shared_scale([&nan[..]])),
        (&nan, (f32::NAN, f32::NAN)),
        (&mixed, shared_scale([&mixed[..]])),
        (&short, (0.0, 1.0)),
        (&mixed, (1.0, 1.0)),
        (&mixed, (2.0, -1.0)),
    ] {
        let o = anomaly_overlay(&image, map, Some(&mask[..]), scale);
        assert_eq!(o.dimensions(), (3 * side + 2 * OVERLAY_GAP, side));
        let o = anomaly_overlay(&image, map, Some(&short_mask[..]), scale);
        assert_eq!(o.dimensions(), (3 * side + 2 * OVERLAY_GAP, side));
    }
    // An all-NaN map is drawn at the dark end.
    let o = anomaly_overlay(&image, &nan, None, shared_scale([&nan[..]]));
    assert!(panel(&o, 1, side).pixels().all(|p| p.0 == inferno(0.0)));
    let empty = anomaly_overlay(&RgbImage::new(0, 0), &[], None, (0.0, 1.0));
    assert_eq!(empty.dimensions(), (2 * OVERLAY_GAP, 0));
}

fn rows(sides: &[u32]) -> Vec<OverlayRow> {
    sides
        .iter()
        .enumerate()
        .map(|(i, &side)| OverlayRow {
            image: random_image(20 + i as u64, side, side),
            map: bump_map(30 + i as u64, side, (side / 3, side / 2))
                .iter()
                .map(|v| v * (i + 1) as f32)
                .collect(),
            mask: (i % 2 == 0).then(|| blob_mask(side)),
            label: format!(
                "bottle/broken_large {i:03} score {:.2} ≥ 3.90",
                4.0 + i as f32
            ),
        })
        .collect()
}

#[test]
fn overlay_grid_writes_a_labelled_figure() {
    let out = out();
    let grid = rows(&[64, 64, 64]);
    let path = out.dir.join("overlay_grid.png");
    overlay_grid(&path, "bottle: test images over the threshold", &grid).unwrap();
    let img = load(&path);
    // 64 px images are enlarged 3× to 192 px cells: three columns of cells and gaps.
    let cell = 192;
    assert_eq!(img.width(), OVERLAY_GAP + 3 * (cell + OVERLAY_GAP));
    assert!(img.height() > 3 * cell, "{}", img.height());
    // Contours survive (enlarged); the title was drawn (dark pixels above every panel).
    assert!(img.pixels().filter(|p| p.0 == CONTOUR_COLOR).count() > 100);
    let title_ink = (0..28)
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 60))
        .count();
    assert!(title_ink > 50, "{title_ink}");
    // Every row's heat cell is its map under the one shared scale, enlarged 3×; under its own
    // scale (rows 0 and 1 peak lower than row 2) it would differ.
    let shared = shared_scale(grid.iter().map(|r| &r.map[..]));
    let x0 = OVERLAY_GAP + cell + OVERLAY_GAP;
    let cell_at = |want: &RgbImage| {
        (0..=img.height() - cell).find(|&y| {
            (0..cell).all(|dy| {
                (0..cell).all(|dx| img.get_pixel(x0 + dx, y + dy) == want.get_pixel(dx, dy))
            })
        })
    };
    let mut ys = Vec::new();
    for (i, row) in grid.iter().enumerate() {
        let heat = |scale| {
            let o = anomaly_overlay(&row.image, &row.map, row.mask.as_deref(), scale);
            let p = panel(&o, 1, 64);
            image::imageops::resize(&p, cell, cell, image::imageops::FilterType::Nearest)
        };
        let y = cell_at(&heat(shared)).unwrap_or_else(|| panic!("row {i}: heat cell not found"));
        ys.push(y);
        if i < 2 {
            assert_eq!(
                cell_at(&heat(shared_scale([&row.map[..]]))),
                None,
                "row {i}"
            );
        }
    }
    assert!(
        ys.windows(2).all(|w| w[1] >= w[0] + cell),
        "rows stacked in order: {ys:?}"
    );
    // No temporary file is left behind.
    let tmp = defectkit_core::fsutil::temp_sibling(&path);
    assert!(
        path.is_file() && !tmp.exists(),
        "{} left behind",
        tmp.display()
    );

    // Mixed sizes, NaN maps, an empty title, an explicit scale.
    let mut mixed = rows(&[200, 48, 100]);
    mixed[1].map = vec![f32::NAN; 48 * 48];
    mixed[2].image = RgbImage::new(0, 0);
    let path = out.dir.join("overlay_grid_mixed.png");
    overlay_grid_scaled(&path, "", &mixed, Some((0.0, 1.0))).unwrap();
    let img = load(&path);
    assert_eq!(img.width(), OVERLAY_GAP + 3 * (200 + OVERLAY_GAP));
}

#[test]
fn overlay_grid_errors_name_the_path() {
    let out = out();
    let path = out.dir.join("none.png");
    match overlay_grid(&path, "t", &[]) {
        Err(e @ PlotError::InvalidInput { .. }) => assert!(e.to_string().contains("none.png")),
        other => panic!("{other:?}"),
    }
    let blocker = out.dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("grid.png");
    assert!(matches!(
        overlay_grid(&path, "t", &rows(&[32])),
        Err(PlotError::Io { .. })
    ));
}

#[test]
fn heatmap_png_writes_the_heat_panel() {
    let out = out();
    let side = 40;
    let map = bump_map(40, side, (12, 30));
    let scale = shared_scale([&map[..]]);
    let path = out.dir.join("maps/000.png");
    heatmap_png(&path, &map, side, scale).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (side, side));
    let o = anomaly_overlay(&random_image(41, side, side), &map, None, scale);
    assert_eq!(img, panel(&o, 1, side));
    assert!(matches!(
        heatmap_png(&out.dir.join("zero.png"), &map, 0, scale),
        Err(PlotError::InvalidInput { .. })
    ));
    // A NaN map still writes a (dark) file.
    let path = out.dir.join("nan.png");
    heatmap_png(&path, &[f32::NAN; 16], 4, (0.0, 1.0)).unwrap();
    assert!(load(&path).pixels().all(|p| p.0 == inferno(0.0)));
}
