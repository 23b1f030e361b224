//! PNG figures (`defectkit_core::plot`): every function writes a decodable, non-blank PNG of the
//! expected size; edge cases never panic; writes are atomic and errors name the path.
//!
//! Set `DEFECTKIT_PLOT_KEEP=/some/dir` to keep the figures for a visual check.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use defectkit_core::data::PreprocessSpec;
use defectkit_core::plot::{
    bar_chart, chw_to_rgb, heatmap, image_grid, inferno, line_chart, palette_color, save_png,
    scatter, GridRow, LineOptions, PlotError, ScatterGroup, Series, GRID_GAP, GRID_HEADER_HEIGHT,
    GRID_LABEL_WIDTH, GRID_TITLE_HEIGHT,
};
use image::{Rgb, RgbImage};

/// Output directory: a temp dir, or `DEFECTKIT_PLOT_KEEP` when set.
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

fn colours(img: &RgbImage) -> HashSet<[u8; 3]> {
    img.pixels().map(|p| p.0).collect()
}

fn has_colour(img: &RgbImage, c: [u8; 3]) -> bool {
    img.pixels().any(|p| p.0 == c)
}

fn count_colour(img: &RgbImage, c: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == c).count()
}

/// Dark (text/axis) pixels: evidence that labels were rendered.
fn dark_pixels(img: &RgbImage) -> usize {
    img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count()
}

fn loss_curves() -> Vec<Series> {
    let train: Vec<(f64, f64)> = (1..=40)
        .map(|e| (e as f64, 1.2 * (-(e as f64) / 9.0).exp() + 0.05))
        .collect();
    let val: Vec<(f64, f64)> = (1..=40)
        .map(|e| {
            let e = e as f64;
            (
                e,
                1.25 * (-e / 9.0).exp() + 0.12 + 0.0009 * (e - 18.0).max(0.0).powi(2),
            )
        })
        .collect();
    vec![Series::new("train", train), Series::new("val", val)]
}

#[test]
fn line_chart_draws_series_colours_legend_and_marker() {
    let o = out();
    let path = o.dir.join("loss.png");
    let opts = LineOptions {
        marker_x: Some((18.0, "best epoch 18".into())),
        ..LineOptions::default()
    };
    line_chart(
        &path,
        "Autoencoder loss",
        "epoch",
        "MSE loss",
        &loss_curves(),
        &opts,
    )
    .unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (900, 540));
    assert!(colours(&img).len() > 20, "figure looks blank");
    for i in 0..2 {
        let c = palette_color(i);
        assert!(
            count_colour(&img, c) > 200,
            "series {i} colour {c:?} is (almost) absent"
        );
    }
    assert!(dark_pixels(&img) > 1000, "no text or axes drawn");
    // No stray temporary file next to the figure.
    let names: Vec<_> = std::fs::read_dir(&o.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".loss.png"))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn line_chart_log_y_and_custom_size() {
    let o = out();
    let path = o.dir.join("loss_log.png");
    let mut series = loss_curves();
    series[0].points.push((41.0, 0.0)); // skipped on a log axis
    series[1].points.push((42.0, -1.0)); // skipped too
    let opts = LineOptions {
        width: 640,
        height: 400,
        log_y: true,
        marker_x: Some((18.0, "best".into())),
    };
    line_chart(&path, "log loss", "epoch", "loss", &series, &opts).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (640, 400));
    assert!(has_colour(&img, palette_color(0)) && has_colour(&img, palette_color(1)));
}

#[test]
fn line_chart_edge_cases_do_not_panic() {
    let o = out();
    let d = LineOptions::default();
    let nan_marker = LineOptions {
        marker_x: Some((f64::NAN, "nan".into())),
        log_y: true,
        ..LineOptions::default()
    };
    let cases: Vec<(&str, Vec<Series>, &LineOptions)> = vec![
        ("no_series", vec![], &d),
        ("empty_points", vec![Series::new("train", vec![])], &d),
        (
            "single_point",
            vec![Series::new("train", vec![(1.0, 0.5)])],
            &d,
        ),
        (
            "all_equal",
            vec![Series::new(
                "flat",
                vec![(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)],
            )],
            &d,
        ),
        (
            "same_x",
            vec![Series::new("v", vec![(5.0, 1.0), (5.0, 3.0)])],
            &d,
        ),
        (
            "non_finite",
            vec![Series::new(
                "bad",
                vec![
                    (f64::NAN, 1.0),
                    (1.0, f64::INFINITY),
                    (f64::NEG_INFINITY, 2.0),
                ],
            )],
            &d,
        ),
        (
            "mixed",
            vec![Series::new(
                "m",
                vec![(1.0, 1.0), (2.0, f64::NAN), (3.0, 0.5)],
            )],
            &nan_marker,
        ),
        (
            "zeros_on_log",
            vec![Series::new("z", vec![(1.0, 0.0), (2.0, 0.0)])],
            &nan_marker,
        ),
        (
            "huge",
            vec![Series::new("h", vec![(0.0, 1e300), (1.0, -1e300)])],
            &d,
        ),
        (
            "tiny",
            vec![Series::new("t", vec![(0.0, 1e-12), (1.0, 3e-12)])],
            &d,
        ),
        (
            "unnamed_many",
            (0..14)
                .map(|i| Series::new("", vec![(0.0, i as f64), (1.0, i as f64 + 1.0)]))
                .collect(),
            &d,
        ),
    ];
    for (name, series, opts) in cases {
        let path = o.dir.join(format!("edge_{name}.png"));
        line_chart(&path, name, "x", "y", &series, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(load(&path).dimensions(), (900, 540), "{name}");
    }
    // Very small figures: a result either way, never a panic.
    for (w, h) in [(1, 1), (20, 10), (60, 40)] {
        let opts = LineOptions {
            width: w,
            height: h,
            ..LineOptions::default()
        };
        let path = o.dir.join(format!("small_{w}x{h}.png"));
        if line_chart(&path, "small", "x", "y", &loss_curves(), &opts).is_ok() {
            assert_eq!(load(&path).dimensions(), (w, h));
        }
    }
}

#[test]
fn invalid_sizes_are_errors_naming_the_path() {
    let o = out();
    let path = o.dir.join("zero.png");
    let opts = LineOptions {
        width: 0,
        ..LineOptions::default()
    };
    let err = line_chart(&path, "t", "x", "y", &loss_curves(), &opts).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("zero.png"), "{err}");
    let err = scatter(&path, "t", "x", "y", &[], (100_000, 10)).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
    let err = bar_chart(&path, "t", "y", &[], (10, 0)).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn missing_directories_are_created() {
    let o = out();
    let path = o.dir.join("deep/er/still/loss.png");
    line_chart(
        &path,
        "t",
        "x",
        "y",
        &loss_curves(),
        &LineOptions::default(),
    )
    .unwrap();
    assert_eq!(load(&path).dimensions(), (900, 540));
}

#[test]
fn unwritable_path_is_an_io_error() {
    let path = Path::new("/proc/defectkit-plot-test/loss.png");
    let err = line_chart(path, "t", "x", "y", &loss_curves(), &LineOptions::default()).unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/proc/defectkit-plot-test/loss.png"),
        "{err}"
    );
    let img = RgbImage::new(4, 4);
    assert!(matches!(
        save_png(path, &img).unwrap_err(),
        PlotError::Io { .. }
    ));
}

/// Deterministic pseudo-random numbers (no extra dev-dependency).
fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

fn blob(seed: &mut u64, cx: f64, cy: f64, n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|_| {
            let (a, b) = (lcg(seed), lcg(seed));
            let r = (-2.0 * (a.max(1e-12)).ln()).sqrt();
            (
                cx + r * (std::f64::consts::TAU * b).cos(),
                cy + r * (std::f64::consts::TAU * b).sin(),
            )
        })
        .collect()
}

#[test]
fn scatter_colours_groups_and_highlights_noise() {
    let o = out();
    let path = o.dir.join("scatter.png");
    let mut seed = 7;
    let groups = vec![
        ScatterGroup::new("good", blob(&mut seed, 0.0, 0.0, 300)),
        ScatterGroup::new("scratch", blob(&mut seed, 6.0, 2.0, 120)),
        ScatterGroup::new("crack", blob(&mut seed, 2.0, 7.0, 80)),
        ScatterGroup::new("noise", blob(&mut seed, 3.0, 3.0, 25)),
    ];
    scatter(
        &path,
        "PCA of embeddings",
        "PC 1",
        "PC 2",
        &groups,
        (800, 600),
    )
    .unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (800, 600));
    for i in 0..3 {
        assert!(
            count_colour(&img, palette_color(i)) > 50,
            "group {i} colour missing"
        );
    }
    assert!(has_colour(&img, [0, 0, 0]), "noise crosses missing");
    assert!(colours(&img).len() > 10);

    // Edge cases: nothing, only non-finite, one point, identical points.
    let cases = [
        ("scatter_empty", vec![]),
        (
            "scatter_nan",
            vec![ScatterGroup::new(
                "x",
                vec![(f64::NAN, 0.0), (0.0, f64::INFINITY)],
            )],
        ),
        (
            "scatter_one",
            vec![ScatterGroup::new("one", vec![(1.0, 1.0)])],
        ),
        (
            "scatter_same",
            vec![
                ScatterGroup::new("a", vec![(2.0, 3.0); 5]),
                ScatterGroup::new("", vec![]),
            ],
        ),
    ];
    for (name, groups) in cases {
        let path = o.dir.join(format!("{name}.png"));
        scatter(&path, name, "x", "y", &groups, (400, 300))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(load(&path).dimensions(), (400, 300));
    }
}

#[test]
fn bar_chart_draws_each_bar() {
    let o = out();
    let path = o.dir.join("bars.png");
    let bars: Vec<(String, f64)> = vec![
        ("resnet18 fp32 cpu".into(), 12.5),
        ("resnet18 int8 cpu".into(), 4.1),
        ("resnet18 fp32 cuda".into(), 1.3),
        ("autoencoder fp32 cpu with a very long name".into(), 7.9),
    ];
    bar_chart(&path, "Latency per model", "ms / image", &bars, (800, 500)).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (800, 500));
    for i in 0..bars.len() {
        assert!(
            count_colour(&img, palette_color(i)) > 500,
            "bar {i} colour missing"
        );
    }
    assert!(dark_pixels(&img) > 500);

    let cases: Vec<(&str, Vec<(String, f64)>)> = vec![
        ("bars_empty", vec![]),
        ("bars_zero", vec![("a".into(), 0.0), ("b".into(), 0.0)]),
        ("bars_one", vec![("only".into(), 3.0)]),
        (
            "bars_mixed",
            vec![
                ("neg".into(), -2.0),
                ("nan".into(), f64::NAN),
                ("pos".into(), 5.0),
                ("inf".into(), f64::INFINITY),
            ],
        ),
        (
            "bars_many",
            (0..120).map(|i| (format!("b{i}"), i as f64)).collect(),
        ),
    ];
    for (name, bars) in cases {
        let path = o.dir.join(format!("{name}.png"));
        bar_chart(&path, name, "v", &bars, (600, 400)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(load(&path).dimensions(), (600, 400));
    }
}

fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            ((x + y) * 127 / (w + h).max(1)) as u8,
        ])
    })
}

#[test]
fn image_grid_layout_follows_rows_cols_and_cell() {
    let o = out();
    let cols: Vec<String> = ["input", "reconstruction", "error map"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let errors: Vec<f32> = (0..32 * 32)
        .map(|i| ((i % 32) as f32 / 31.0) * ((i / 32) as f32 / 31.0))
        .collect();
    let rows: Vec<GridRow> = (0..3)
        .map(|r| GridRow {
            label: format!("good/{r:03}.png"),
            images: vec![
                gradient(48, 48),
                solid(48, 48, [200, 30 * r as u8, 40]),
                heatmap(&errors, 32, 32, 1.0),
            ],
        })
        .collect();
    let cell = 96;
    let path = o.dir.join("grid.png");
    image_grid(&path, "Reconstructions, epoch 10", &cols, &rows, cell).unwrap();
    let img = load(&path);
    let pitch = cell + GRID_GAP;
    let w = GRID_LABEL_WIDTH + GRID_GAP + 3 * pitch;
    let h = GRID_TITLE_HEIGHT + GRID_HEADER_HEIGHT + GRID_GAP + 3 * pitch;
    assert_eq!(img.dimensions(), (w, h));
    assert!(dark_pixels(&img) > 300, "labels missing");
    // The solid image of row 1 fills its cell.
    let x = GRID_LABEL_WIDTH + GRID_GAP + pitch + cell / 2;
    let y = GRID_TITLE_HEIGHT + GRID_HEADER_HEIGHT + GRID_GAP + pitch + cell / 2;
    assert_eq!(img.get_pixel(x, y).0, [200, 30, 40]);

    // Without title, headers or labels; ragged rows; non-square images.
    let rows2 = vec![
        GridRow {
            label: String::new(),
            images: vec![gradient(40, 20)],
        },
        GridRow {
            label: String::new(),
            images: vec![
                gradient(10, 30),
                solid(5, 5, [0, 0, 255]),
                gradient(300, 300),
            ],
        },
        GridRow {
            label: String::new(),
            images: vec![],
        },
        GridRow {
            label: String::new(),
            images: vec![RgbImage::new(0, 0)],
        },
    ];
    let path2 = o.dir.join("grid_plain.png");
    image_grid(&path2, "", &[], &rows2, 50).unwrap();
    let img2 = load(&path2);
    assert_eq!(
        img2.dimensions(),
        (
            GRID_GAP + 3 * (50 + GRID_GAP),
            GRID_GAP + 4 * (50 + GRID_GAP)
        )
    );
    // Column headers alone widen the grid beyond the longest row.
    let many: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    let path3 = o.dir.join("grid_headers.png");
    image_grid(&path3, "", &many, &rows2[..1], 20).unwrap();
    assert_eq!(
        load(&path3).dimensions(),
        (
            GRID_GAP + 5 * (20 + GRID_GAP),
            GRID_HEADER_HEIGHT + GRID_GAP + 20 + GRID_GAP
        )
    );
}

#[test]
fn image_grid_rejects_unusable_input() {
    let o = out();
    let path = o.dir.join("bad_grid.png");
    let row = GridRow {
        label: "r".into(),
        images: vec![solid(4, 4, [1, 2, 3])],
    };
    for (rows, cell) in [(vec![], 64), (vec![row.clone()], 0), (vec![row], 100_000)] {
        let err = image_grid(&path, "t", &[], &rows, cell).unwrap_err();
        assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
        assert!(err.to_string().contains("bad_grid.png"));
    }
    let empty = GridRow {
        label: "r".into(),
        images: vec![],
    };
    let err = image_grid(&path, "t", &[], &[empty], 64).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
    assert!(!path.exists());
}

fn luminance(c: [u8; 3]) -> f64 {
    0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64
}

#[test]
fn heatmap_maps_range_to_palette_ends_monotonically() {
    let (lo, hi) = (inferno(0.0), inferno(1.0));
    assert!(
        luminance(lo) < 10.0 && luminance(hi) > 230.0,
        "{lo:?} {hi:?}"
    );
    let values = [0.0f32, 2.0, 4.0, 8.0, -1.0, 100.0, f32::NAN, f32::INFINITY];
    let img = heatmap(&values, 4, 2, 8.0);
    assert_eq!(img.dimensions(), (4, 2));
    assert_eq!(img.get_pixel(0, 0).0, lo);
    assert_eq!(img.get_pixel(3, 0).0, hi);
    assert_eq!(img.get_pixel(0, 1).0, lo, "below 0 clamps to the low end");
    assert_eq!(
        img.get_pixel(1, 1).0,
        hi,
        "above max clamps to the high end"
    );
    assert_eq!(img.get_pixel(2, 1).0, lo, "NaN maps to the low end");
    assert_eq!(img.get_pixel(3, 1).0, hi);
    let (a, b) = (img.get_pixel(1, 0).0, img.get_pixel(2, 0).0);
    assert!(
        luminance(lo) < luminance(a) && luminance(a) < luminance(b) && luminance(b) < luminance(hi)
    );

    // Monotone in luminance: strictly on a coarse sweep, up to 8-bit rounding on a fine one.
    let coarse: Vec<f64> = (0..=16)
        .map(|i| luminance(inferno(i as f32 / 16.0)))
        .collect();
    assert!(coarse.windows(2).all(|w| w[0] < w[1]), "{coarse:?}");
    let ramp: Vec<f32> = (0..=1000).map(|i| i as f32 / 1000.0).collect();
    let img = heatmap(&ramp, 1001, 1, 1.0);
    let lum: Vec<f64> = img.pixels().map(|p| luminance(p.0)).collect();
    assert!(lum.windows(2).all(|w| w[1] >= w[0] - 0.5));
    assert!(lum[1000] - lum[0] > 220.0);

    // Shared scale: the same value gives the same colour in maps with the same max.
    let m1 = heatmap(&[0.5, 1.0], 2, 1, 2.0);
    let m2 = heatmap(&[0.5, 0.1], 2, 1, 2.0);
    assert_eq!(m1.get_pixel(0, 0), m2.get_pixel(0, 0));

    // Degenerate inputs: short slice, bad max, empty image.
    let img = heatmap(&[1.0], 3, 3, 1.0);
    assert_eq!(img.get_pixel(0, 0).0, hi);
    assert_eq!(img.get_pixel(2, 2).0, lo);
    for max in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let img = heatmap(&[0.5, 5.0], 2, 1, max);
        assert!(img.pixels().all(|p| p.0 == lo), "max {max}");
    }
    assert_eq!(heatmap(&[], 0, 0, 1.0).dimensions(), (0, 0));
}

#[test]
fn chw_to_rgb_inverts_normalisation() {
    let side = 24;
    let original = RgbImage::from_fn(side, side, |x, y| {
        Rgb([
            (x * 11 + y * 3) as u8,
            (255 - x * 7) as u8,
            ((x * y) % 256) as u8,
        ])
    });
    let spec = PreprocessSpec::imagenet(side);
    let tensor = spec.to_tensor(&original);
    let back = chw_to_rgb(&tensor, side, side, spec.mean, spec.std);
    assert_eq!(back.dimensions(), original.dimensions());
    for (a, b) in original.pixels().zip(back.pixels()) {
        for c in 0..3 {
            assert!(
                (a.0[c] as i32 - b.0[c] as i32).abs() <= 1,
                "{:?} vs {:?}",
                a.0,
                b.0
            );
        }
    }
    // Out-of-range values clamp; a short tensor or NaN gives black, never a panic.
    let img = chw_to_rgb(&[100.0, -100.0, f32::NAN], 1, 1, [0.5; 3], [0.25; 3]);
    assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
    let img = chw_to_rgb(&[0.0], 2, 2, [0.5; 3], [0.25; 3]);
    assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(0, 0).0, [128, 0, 0]);
}

#[test]
fn save_png_round_trips() {
    let o = out();
    let path = o.dir.join("single/heat.png");
    let img = heatmap(&[0.0, 0.25, 0.5, 1.0], 2, 2, 1.0);
    save_png(&path, &img).unwrap();
    assert_eq!(load(&path), img);
}
