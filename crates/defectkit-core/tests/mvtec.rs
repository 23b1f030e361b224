//! Integration tests of the MVTec AD data layer, through the library API: decoding of every
//! channel layout, the folder scan and its errors and warnings, the validation split, the
//! guarantee that defect images never reach train/val, the decoded-image cache and
//! `data check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use defectkit_core::data::cache::ImageCache;
use defectkit_core::data::check::check;
use defectkit_core::data::image_io::{image_size, load_mask, load_rgb8};
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};
use defectkit_core::data::{DataError, PreprocessSpec};
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use tempfile::TempDir;

// ---------------------------------------------------------------- fixtures

fn mkparent(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
}

/// Save an image in the given layout; `v` varies the pixel value per file.
fn save(path: &Path, layout: &str, side: u32, v: u8) {
    mkparent(path);
    let img = match layout {
        "L8" => DynamicImage::ImageLuma8(GrayImage::from_pixel(side, side, Luma([v]))),
        "LA8" => DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(side, side, LumaA([v, 10]))),
        "RGB8" => DynamicImage::ImageRgb8(RgbImage::from_pixel(side, side, Rgb([v, 100, 200]))),
        "RGBA8" => {
            DynamicImage::ImageRgba8(ImageBuffer::from_pixel(side, side, Rgba([v, 50, 60, 0])))
        }
        "L16" => DynamicImage::ImageLuma16(ImageBuffer::from_pixel(
            side,
            side,
            Luma([u16::from(v) << 8]),
        )),
        "RGB16" => DynamicImage::ImageRgb16(ImageBuffer::from_pixel(
            side,
            side,
            Rgb([0xFFFF, 0x8000, u16::from(v) * 257]),
        )),
        other => panic!("unknown layout {other}"),
    };
    img.save(path).unwrap();
}

/// A binary L8 mask with a defect square.
fn save_mask(path: &Path, side: u32) {
    mkparent(path);
    GrayImage::from_fn(side, side, |x, y| {
        Luma([if x < 4 && y < 4 { 255 } else { 0 }])
    })
    .save(path)
    .unwrap();
}

/// One class: `train` good images, `test_good` images, and defects (name, count), with
/// masks for every defect image.
fn class(
    root: &Path,
    name: &str,
    layout: &str,
    side: u32,
    train: usize,
    test_good: usize,
    defects: &[(&str, usize)],
) {
    let c = root.join(name);
    for i in 0..train {
        save(
            &c.join(format!("train/good/{i:03}.png")),
            layout,
            side,
            i as u8,
        );
    }
    for i in 0..test_good {
        save(
            &c.join(format!("test/good/{i:03}.png")),
            layout,
            side,
            200 + i as u8,
        );
    }
    for (d, n) in defects {
        for i in 0..*n {
            save(
                &c.join(format!("test/{d}/{i:03}.png")),
                layout,
                side,
                100 + i as u8,
            );
            save_mask(&c.join(format!("ground_truth/{d}/{i:03}_mask.png")), side);
        }
    }
}

/// An MVTec-layout root with every channel layout, a JPEG and some non-image files.
///
/// | class  | layout | size | train/good | test/good | defects                      |
/// |--------|--------|------|------------|-----------|------------------------------|
/// | bottle | RGB8   | 32   | 10 + 1 jpg | 3         | broken_large 3, contamination 2 |
/// | grid   | L8     | 24   | 6          | 2         | bent 2                       |
/// | screw  | L16    | 20   | 5          | 1         | thread_side 2                |
/// | tile   | RGB16  | 28   | 4          | 1         | crack 1                      |
/// | wood   | RGBA8  | 30   | 3          | 1         | hole 2                       |
fn mvtec_root() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    class(
        r,
        "bottle",
        "RGB8",
        32,
        10,
        3,
        &[("broken_large", 3), ("contamination", 2)],
    );
    RgbImage::from_pixel(32, 32, Rgb([128, 64, 32]))
        .save(r.join("bottle/train/good/010.jpg"))
        .unwrap();
    class(r, "grid", "L8", 24, 6, 2, &[("bent", 2)]);
    class(r, "screw", "L16", 20, 5, 1, &[("thread_side", 2)]);
    class(r, "tile", "RGB16", 28, 4, 1, &[("crack", 1)]);
    class(r, "wood", "RGBA8", 30, 3, 1, &[("hole", 2)]);
    // Non-image files are ignored everywhere.
    fs::write(r.join("license.txt"), "CC BY-NC-SA 4.0").unwrap();
    fs::write(r.join("bottle/train/good/.DS_Store"), [0u8; 8]).unwrap();
    fs::write(r.join("bottle/train/good/README"), "x").unwrap();
    fs::write(r.join("grid/test/bent/notes.txt"), "x").unwrap();
    fs::create_dir_all(r.join(".git")).unwrap();
    dir
}

const TRAIN_GOOD: [(&str, usize); 5] = [
    ("bottle", 11),
    ("grid", 6),
    ("screw", 5),
    ("tile", 4),
    ("wood", 3),
];

fn opts() -> IndexOptions {
    IndexOptions::default()
}

fn strict() -> IndexOptions {
    IndexOptions {
        strict: true,
        ..IndexOptions::default()
    }
}

fn names(samples: &[&Sample]) -> Vec<PathBuf> {
    samples.iter().map(|s| s.path.clone()).collect()
}

fn train_good_files(root: &Path, class: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join(class).join("train/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| defectkit_core::data::image_io::is_image_file(p))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- decoding

#[test]
fn every_layout_decodes_to_rgb8_with_documented_values() {
    let root = mvtec_root();
    let r = root.path();
    // L8: gray replicated.
    let img = load_rgb8(&r.join("grid/train/good/003.png")).unwrap();
    assert_eq!(img.dimensions(), (24, 24));
    assert_eq!(*img.get_pixel(5, 5), Rgb([3, 3, 3]));
    // L16: value v<<8 scales to round(v*256*255/65535): 0x0300 -> 3, and 0x8000 -> 128.
    let img = load_rgb8(&r.join("screw/train/good/003.png")).unwrap();
    assert_eq!(*img.get_pixel(0, 0), Rgb([3, 3, 3]));
    let p = r.join("l16_probe.png");
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_vec(3, 1, vec![0xFFFF, 0x8000, 0x7F80])
        .unwrap()
        .save(&p)
        .unwrap();
    let img = load_rgb8(&p).unwrap();
    let got: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
    assert_eq!(got, vec![255, 128, 127]);
    // RGB16: 0xFFFF -> 255, 0x8000 -> 128, v*257 -> v exactly.
    let img = load_rgb8(&r.join("tile/train/good/002.png")).unwrap();
    assert_eq!(*img.get_pixel(1, 1), Rgb([255, 128, 2]));
    // RGBA8 with alpha 0: alpha dropped, colour kept (PIL convert('RGB')).
    let img = load_rgb8(&r.join("wood/train/good/001.png")).unwrap();
    assert_eq!(*img.get_pixel(0, 0), Rgb([1, 50, 60]));
    // LA8: gray replicated, alpha dropped.
    let p = r.join("la.png");
    save(&p, "LA8", 20, 77);
    assert_eq!(*load_rgb8(&p).unwrap().get_pixel(0, 0), Rgb([77, 77, 77]));
    // JPEG: lossy, but close to the flat colour.
    let img = load_rgb8(&r.join("bottle/train/good/010.jpg")).unwrap();
    let px = img.get_pixel(16, 16).0;
    for (a, b) in px.iter().zip([128u8, 64, 32]) {
        assert!((i32::from(*a) - i32::from(b)).abs() <= 4, "{px:?}");
    }
    // Decoding goes by content: a PNG named .jpg decodes.
    let p = r.join("really_png.jpg");
    fs::copy(r.join("grid/train/good/001.png"), &p).unwrap();
    assert_eq!(*load_rgb8(&p).unwrap().get_pixel(0, 0), Rgb([1, 1, 1]));
    // Header-only size, and masks become binary L8.
    assert_eq!(
        image_size(&r.join("wood/test/hole/000.png")).unwrap(),
        (30, 30)
    );
    let m = load_mask(&r.join("wood/ground_truth/hole/000_mask.png")).unwrap();
    assert_eq!((m.get_pixel(0, 0).0[0], m.get_pixel(10, 10).0[0]), (255, 0));
}

#[test]
fn corrupt_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.png");
    fs::write(&random, b"this is not an image at all, just bytes").unwrap();
    let full = dir.path().join("full.png");
    save(&full, "RGB8", 32, 1);
    let bytes = fs::read(&full).unwrap();
    let truncated = dir.path().join("truncated.png");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for p in [&random, &truncated] {
        let err = load_rgb8(p).unwrap_err();
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }
    let err = load_rgb8(&dir.path().join("absent.png")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
}

// ---------------------------------------------------------------- scanning

#[test]
fn scan_reads_every_class_in_deterministic_order() {
    let root = mvtec_root();
    let idx = Index::scan(root.path(), &opts()).unwrap();
    assert_eq!(idx.classes, ["bottle", "grid", "screw", "tile", "wood"]);
    assert!(idx.warnings.is_empty(), "{:?}", idx.warnings);
    // val: round(0.2 n) clamped to [1, n-1] per class: 2 + 1 + 1 + 1 + 1.
    assert_eq!(idx.count(Split::Val), 6);
    assert_eq!(idx.count(Split::Train), 29 - 6);
    assert_eq!(idx.count(Split::Test), 8 + 12);
    assert_eq!(idx.split(Split::Test).filter(|s| s.is_good()).count(), 8);
    for s in &idx.samples {
        assert_eq!(idx.classes[s.class_index], s.class);
        assert_eq!(s.label(), u8::from(s.defect.is_some()));
        if s.is_good() {
            assert!(s.mask.is_none());
        } else {
            let m = s.mask.as_ref().expect("every defect image has a mask here");
            assert!(m.starts_with(root.path().join(&s.class).join("ground_truth")));
            assert!(m.exists());
        }
    }
    // Order: class, split, defect (good first), file name.
    let key = |s: &Sample| {
        (
            s.class_index,
            s.split,
            s.defect.clone(),
            s.path.file_name().unwrap().to_owned(),
        )
    };
    let keys: Vec<_> = idx.samples.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Same input, same index.
    let again = Index::scan(root.path(), &opts()).unwrap();
    assert_eq!(again.samples, idx.samples);
    // Non-image files never become samples.
    assert!(idx
        .samples
        .iter()
        .all(|s| defectkit_core::data::image_io::is_image_file(&s.path)));
}

#[test]
fn class_selection_keeps_order_and_unknown_class_lists_available() {
    let root = mvtec_root();
    let o = IndexOptions {
        classes: Some(vec!["wood".into(), "bottle".into()]),
        ..opts()
    };
    let idx = Index::scan(root.path(), &o).unwrap();
    assert_eq!(idx.classes, ["wood", "bottle"]);
    assert!(idx
        .samples
        .iter()
        .all(|s| s.class == idx.classes[s.class_index]));
    assert_eq!(idx.samples[0].class, "wood");

    let o = IndexOptions {
        classes: Some(vec!["bottle".into(), "carpet".into()]),
        ..opts()
    };
    let err = Index::scan(root.path(), &o).unwrap_err();
    assert!(matches!(err, DataError::UnknownClass { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("carpet"), "{msg}");
    assert!(msg.contains("bottle, grid, screw, tile, wood"), "{msg}");
    // Path tricks are unknown classes, not escapes.
    let o = IndexOptions {
        classes: Some(vec!["../x".into()]),
        ..opts()
    };
    assert!(matches!(
        Index::scan(root.path(), &o),
        Err(DataError::UnknownClass { .. })
    ));
}

#[test]
fn missing_and_mislaid_roots_say_what_to_do() {
    let root = mvtec_root();
    let r = root.path();

    let err = Index::scan(&r.join("nope"), &opts()).unwrap_err();
    assert!(matches!(err, DataError::RootMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"));

    let err = Index::scan(&r.join("license.txt"), &opts()).unwrap_err();
    assert!(matches!(err, DataError::RootNotDir { .. }), "{err:?}");

    // Pointing at one category.
    let err = Index::scan(&r.join("bottle"), &opts()).unwrap_err();
    assert!(matches!(err, DataError::RootIsCategory { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("single category"), "{msg}");
    assert!(msg.contains("point --root at its parent"), "{msg}");
    assert!(msg.contains(&r.display().to_string()), "{msg}");

    // Pointing at a category's train/ folder.
    let err = Index::scan(&r.join("bottle/train"), &opts()).unwrap_err();
    assert!(matches!(err, DataError::NoClasses { .. }), "{err:?}");
    assert!(err.to_string().contains("train/ or test/"), "{err}");

    // Pointing at the folder above the root.
    let up = tempfile::tempdir().unwrap();
    class(
        &up.path().join("mvtec"),
        "bottle",
        "L8",
        20,
        2,
        1,
        &[("crack", 1)],
    );
    let err = Index::scan(up.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("did you mean"), "{err}");

    // An empty folder.
    let empty = tempfile::tempdir().unwrap();
    let err = Index::scan(empty.path(), &opts()).unwrap_err();
    assert!(matches!(err, DataError::NoClasses { .. }), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn classes_without_train_good_or_test_are_errors() {
    let root = mvtec_root();
    let r = root.path();
    fs::remove_dir_all(r.join("grid/test")).unwrap();
    let err = Index::scan(r, &opts()).unwrap_err();
    assert!(matches!(err, DataError::MissingTest { .. }), "{err:?}");
    assert!(err.to_string().contains("grid"));
    // Not selected: not a problem.
    let o = IndexOptions {
        classes: Some(vec!["bottle".into()]),
        ..opts()
    };
    assert!(Index::scan(r, &o).is_ok());

    fs::remove_dir_all(r.join("screw/train/good")).unwrap();
    let o = IndexOptions {
        classes: Some(vec!["screw".into()]),
        ..opts()
    };
    let err = Index::scan(r, &o).unwrap_err();
    assert!(matches!(err, DataError::MissingTrainGood { .. }), "{err:?}");
    assert!(err.to_string().contains("train/good") || err.to_string().contains("train"));

    fs::create_dir_all(r.join("screw/train/good")).unwrap();
    fs::write(r.join("screw/train/good/readme.md"), "x").unwrap();
    let err = Index::scan(r, &o).unwrap_err();
    assert!(matches!(err, DataError::EmptyTrainGood { .. }), "{err:?}");
}

#[test]
fn missing_ground_truth_is_a_warning_and_fatal_in_strict_mode() {
    let root = mvtec_root();
    let r = root.path();
    fs::remove_dir_all(r.join("bottle/ground_truth/contamination")).unwrap();
    let idx = Index::scan(r, &opts()).unwrap();
    let contamination: Vec<&Sample> = idx
        .samples
        .iter()
        .filter(|s| s.defect.as_deref() == Some("contamination"))
        .collect();
    assert_eq!(contamination.len(), 2);
    assert!(contamination.iter().all(|s| s.mask.is_none()));
    assert_eq!(idx.warnings.len(), 1, "{:?}", idx.warnings);
    assert!(
        idx.warnings[0].contains("ground_truth/contamination"),
        "{:?}",
        idx.warnings
    );
    let err = Index::scan(r, &strict()).unwrap_err();
    assert!(
        matches!(err, DataError::MissingGroundTruth { .. }),
        "{err:?}"
    );

    // The whole ground_truth folder missing: one warning for the class, no panic.
    fs::remove_dir_all(r.join("grid/ground_truth")).unwrap();
    let idx = Index::scan(r, &opts()).unwrap();
    assert_eq!(idx.warnings.len(), 2, "{:?}", idx.warnings);
    assert!(idx
        .samples
        .iter()
        .filter(|s| s.class == "grid")
        .all(|s| s.mask.is_none()));
}

#[test]
fn orphan_and_missing_masks_are_warnings_and_fatal_in_strict_mode() {
    let root = mvtec_root();
    let r = root.path();
    // A mask without an image.
    save_mask(&r.join("grid/ground_truth/bent/007_mask.png"), 24);
    let idx = Index::scan(r, &opts()).unwrap();
    assert_eq!(idx.warnings.len(), 1, "{:?}", idx.warnings);
    assert!(
        idx.warnings[0].contains("007_mask.png"),
        "{:?}",
        idx.warnings
    );
    assert_eq!(idx.count(Split::Test), 20);
    let err = Index::scan(r, &strict()).unwrap_err();
    assert!(matches!(err, DataError::OrphanMask { .. }), "{err:?}");
    fs::remove_file(r.join("grid/ground_truth/bent/007_mask.png")).unwrap();

    // An image without its mask.
    fs::remove_file(r.join("wood/ground_truth/hole/001_mask.png")).unwrap();
    let idx = Index::scan(r, &opts()).unwrap();
    assert_eq!(idx.warnings.len(), 1, "{:?}", idx.warnings);
    assert!(
        idx.warnings[0].contains("001_mask.png"),
        "{:?}",
        idx.warnings
    );
    let s = idx
        .samples
        .iter()
        .find(|s| s.path.ends_with("wood/test/hole/001.png"))
        .unwrap();
    assert_eq!(s.mask, None);
    assert_eq!(s.label(), 1);
    let err = Index::scan(r, &strict()).unwrap_err();
    assert!(matches!(err, DataError::MissingMask { .. }), "{err:?}");
}

#[test]
fn defect_images_never_reach_train_or_val() {
    let root = mvtec_root();
    let r = root.path();
    // Traps: a defect folder under train/, a loose file in train/, a mask-like folder.
    for i in 0..4 {
        save(
            &r.join(format!("bottle/train/broken/{i:03}.png")),
            "RGB8",
            32,
            250,
        );
    }
    save(&r.join("grid/train/loose.png"), "L8", 24, 250);
    save(&r.join("screw/train/good/nested/extra.png"), "L16", 20, 250);

    for seed in [0u64, 1, 2, 7, 42, 1234] {
        for val_fraction in [0.0, 0.01, 0.2, 0.5, 0.9] {
            let o = IndexOptions {
                seed,
                val_fraction,
                ..opts()
            };
            let idx = Index::scan(r, &o).unwrap();
            for s in idx.samples.iter().filter(|s| s.split != Split::Test) {
                assert!(s.is_good() && s.mask.is_none(), "{s:?}");
                assert_eq!(
                    s.path.parent().unwrap(),
                    r.join(&s.class).join("train/good"),
                    "{s:?}"
                );
            }
            for (class, n) in TRAIN_GOOD {
                let trainval = idx
                    .samples
                    .iter()
                    .filter(|s| s.class == class && s.split != Split::Test)
                    .count();
                assert_eq!(trainval, n, "{class} seed {seed} fraction {val_fraction}");
            }
            assert!(!idx
                .samples
                .iter()
                .any(|s| s.path.components().any(|c| c.as_os_str() == "broken")));
            assert!(idx.warnings.iter().any(|w| w.contains("train/broken")));
            assert!(idx.warnings.iter().any(|w| w.contains("grid/train")));
            assert!(idx.warnings.iter().any(|w| w.contains("nested")));
        }
    }
    let err = Index::scan(r, &strict()).unwrap_err();
    assert!(matches!(err, DataError::NonGoodTrainDir { .. }), "{err:?}");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn val_split_is_per_class_seeded_disjoint_and_complete() {
    let root = mvtec_root();
    let r = root.path();
    let with = |seed: u64, val_fraction: f64| {
        Index::scan(
            r,
            &IndexOptions {
                seed,
                val_fraction,
                ..opts()
            },
        )
        .unwrap()
    };
    let a = with(3, 0.3);
    assert_eq!(a.samples, with(3, 0.3).samples, "deterministic for a seed");
    for (class, n) in TRAIN_GOOD {
        let train: Vec<&Sample> = a.split(Split::Train).filter(|s| s.class == class).collect();
        let val: Vec<&Sample> = a.split(Split::Val).filter(|s| s.class == class).collect();
        assert!(!val.is_empty(), "{class} has a val image");
        assert_eq!(
            val.len(),
            ((n as f64 * 0.3).round() as usize).clamp(1, n - 1)
        );
        let mut union = names(&train);
        union.extend(names(&val));
        union.sort();
        assert_eq!(
            union,
            train_good_files(r, class),
            "{class}: union = train/good"
        );
        assert!(
            names(&train).iter().all(|p| !names(&val).contains(p)),
            "disjoint"
        );
    }
    // At least one image per class even for a tiny fraction.
    let tiny = with(0, 0.01);
    for (class, _) in TRAIN_GOOD {
        assert_eq!(
            tiny.split(Split::Val).filter(|s| s.class == class).count(),
            1
        );
    }
    // Zero fraction: no validation split.
    assert_eq!(with(0, 0.0).count(Split::Val), 0);
    // Another seed gives another split (bottle has 11 images, 3 in val: 165 choices).
    let val_of = |idx: &Index| -> Vec<PathBuf> {
        idx.split(Split::Val)
            .filter(|s| s.class == "bottle")
            .map(|s| s.path.clone())
            .collect()
    };
    let base = val_of(&a);
    assert!(
        (4..12).any(|seed| val_of(&with(seed, 0.3)) != base),
        "other seeds give other splits"
    );
    // The split of one class does not depend on which other classes are selected.
    let only = Index::scan(
        r,
        &IndexOptions {
            classes: Some(vec!["bottle".into()]),
            seed: 3,
            val_fraction: 0.3,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(val_of(&only), base);
    // Invalid fractions are errors.
    for bad in [1.0, -0.1, f64::NAN] {
        let err = Index::scan(
            r,
            &IndexOptions {
                val_fraction: bad,
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(err, DataError::InvalidOptions { .. }), "{err:?}");
    }
}

#[test]
fn extensions_are_case_insensitive_and_other_files_ignored() {
    let root = mvtec_root();
    let r = root.path();
    fs::rename(
        r.join("grid/train/good/000.png"),
        r.join("grid/train/good/000.PNG"),
    )
    .unwrap();
    save(&r.join("grid/train/good/extra.bmp"), "RGB8", 24, 1);
    save(&r.join("grid/train/good/extra2.TIF"), "RGB8", 24, 1);
    fs::copy(
        r.join("grid/train/good/001.png"),
        r.join("grid/train/good/.hidden.png"),
    )
    .unwrap();
    let idx = Index::scan(r, &opts()).unwrap();
    let grid = idx
        .samples
        .iter()
        .filter(|s| s.class == "grid" && s.split != Split::Test)
        .count();
    assert_eq!(grid, 8);
    assert!(idx.warnings.is_empty(), "{:?}", idx.warnings);
}

#[test]
fn messy_roots_never_panic() {
    let root = mvtec_root();
    let r = root.path();
    // Masks for test/good, a ground-truth folder with no test folder, an empty defect
    // folder, a loose image in test/, a file where a folder is expected.
    save_mask(&r.join("bottle/ground_truth/good/000_mask.png"), 32);
    save_mask(&r.join("bottle/ground_truth/ghost/000_mask.png"), 32);
    fs::create_dir_all(r.join("grid/test/empty_defect")).unwrap();
    save(&r.join("wood/test/loose.png"), "RGBA8", 30, 1);
    fs::write(r.join("tile/ground_truth/crack/000.txt"), "x").unwrap();
    fs::create_dir_all(r.join("notes")).unwrap();
    // A symlink loop under train/ must not recurse forever.
    #[cfg(unix)]
    std::os::unix::fs::symlink(r.join("bottle/train"), r.join("bottle/train/loop")).unwrap();
    let idx = Index::scan(r, &opts()).unwrap();
    assert_eq!(idx.classes.len(), 5);
    let joined = idx.warnings.join("\n");
    for needle in ["ground_truth/good", "ghost", "wood/test", "notes"] {
        assert!(joined.contains(needle), "{needle} in {joined}");
    }
    assert!(Index::scan(r, &strict()).is_err());
}

// ---------------------------------------------------------------- cache

#[test]
fn cache_hits_do_not_read_the_file_and_load_many_keeps_order() {
    let root = mvtec_root();
    let r = root.path();
    let spec = PreprocessSpec {
        center_crop: Some(12),
        ..PreprocessSpec::imagenet(16)
    };
    let cache = Arc::new(ImageCache::new(spec));
    let first = r.join("grid/train/good/000.png");
    let img = cache.get_or_load(&first).unwrap();
    assert_eq!(img.dimensions(), (12, 12));
    fs::remove_file(&first).unwrap();
    let again = cache.get_or_load(&first).unwrap();
    assert!(Arc::ptr_eq(&img, &again));
    assert_eq!((cache.hits(), cache.misses()), (1, 1));

    let paths: Vec<PathBuf> = (0..6)
        .map(|i| r.join(format!("grid/train/good/{i:03}.png")))
        .chain([r.join("grid/train/good/missing.png")])
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    // Used from several threads at once.
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| cache.load_many(&refs));
        let mine = cache.load_many(&refs);
        let theirs = h.join().unwrap();
        assert_eq!(mine.len(), theirs.len());
        mine
    });
    assert_eq!(out.len(), 7);
    for (i, res) in out.iter().take(6).enumerate() {
        assert_eq!(
            res.as_ref().unwrap().get_pixel(6, 6).0,
            [i as u8; 3],
            "order kept"
        );
    }
    assert!(out[6].is_err());
    assert_eq!(cache.len(), 6);
    let stats = cache.stats();
    assert_eq!(stats.bytes, 6 * 12 * 12 * 3);
    assert!(stats.hits >= 3, "000 is a hit in both calls");
    // Everything is cached now: a further pass is all hits, no misses.
    let before = cache.stats();
    assert!(cache.load_many(&refs[..6]).iter().all(Result::is_ok));
    let after = cache.stats();
    assert_eq!(after.hits - before.hits, 6);
    assert_eq!(after.misses, before.misses);
}

// ---------------------------------------------------------------- check

#[test]
fn check_reports_classes_counts_sizes_and_layouts() {
    let root = mvtec_root();
    let report = check(root.path(), &opts(), false).unwrap();
    let table = report.render_table();
    for c in ["bottle", "grid", "screw", "tile", "wood"] {
        assert!(table.contains(c), "{table}");
    }
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());
    assert!(report.corrupt().is_empty());
    let bottle = &report.classes[0];
    assert_eq!((bottle.train, bottle.val, bottle.test_good), (9, 2, 3));
    assert_eq!(bottle.defects["broken_large"], 3);
    assert_eq!((bottle.masks_found, bottle.masks_expected), (5, 5));
    assert_eq!(bottle.sizes, ["32x32"]);
    assert_eq!(bottle.layouts, ["RGB8"]);
    let layouts: Vec<String> = report.classes.iter().map(|c| c.layouts.join(",")).collect();
    assert_eq!(layouts, ["RGB8", "L8", "L16", "RGB16", "RGBA8"]);
    assert!(table.contains("broken_large 3, contamination 2"), "{table}");
    assert!(table.contains("5/5"), "{table}");
    assert!(table.contains("24x24"), "{table}");
    assert!(
        table.contains("totals: 5 classes, 23 train, 6 val, 8 test good, 12 test defective"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["train"], 23);
    assert_eq!(json["classes"][1]["class"], "grid");
}

#[test]
fn check_skips_corrupt_files_with_warnings_and_fails_in_strict_mode() {
    let root = mvtec_root();
    let r = root.path();
    let random = r.join("grid/train/good/003.png");
    fs::write(&random, b"random bytes named .png").unwrap();
    let mask = r.join("bottle/ground_truth/broken_large/001_mask.png");
    let bytes = fs::read(&mask).unwrap();
    fs::write(&mask, &bytes[..bytes.len() / 2]).unwrap();
    // The scan does not decode: it still succeeds.
    assert!(Index::scan(r, &strict()).is_ok());

    let report = check(r, &opts(), true).unwrap();
    let mut corrupt = report.corrupt().to_vec();
    corrupt.sort();
    let mut expected = vec![random.clone(), mask.clone()];
    expected.sort();
    assert_eq!(corrupt, expected);
    let joined = report.warnings().join("\n");
    assert!(joined.contains(&random.display().to_string()), "{joined}");
    assert!(joined.contains(&mask.display().to_string()), "{joined}");
    let grid = &report.classes[1];
    assert_eq!(grid.train + grid.val, 5, "corrupt image skipped");
    assert_eq!(report.classes[0].masks_found, 4);
    // The cleaned index has neither the corrupt image nor the corrupt mask.
    let idx = report.index();
    assert!(idx.samples.iter().all(|s| s.path != random));
    assert!(idx.samples.iter().all(|s| s.mask.as_ref() != Some(&mask)));
    assert!(report.render_table().contains("2 corrupt"));

    let err = check(r, &strict(), false).unwrap_err();
    assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&random.display().to_string()) || msg.contains(&mask.display().to_string()),
        "{msg}"
    );
}

#[test]
fn check_warns_on_mask_size_mismatch() {
    let root = mvtec_root();
    let r = root.path();
    save_mask(&r.join("wood/ground_truth/hole/000_mask.png"), 31);
    let report = check(r, &opts(), false).unwrap();
    assert_eq!(report.warnings().len(), 1, "{:?}", report.warnings());
    assert!(
        report.warnings()[0].contains("31x31"),
        "{:?}",
        report.warnings()
    );
    let err = check(r, &strict(), false).unwrap_err();
    assert!(matches!(err, DataError::MaskSizeMismatch { .. }), "{err:?}");
}
