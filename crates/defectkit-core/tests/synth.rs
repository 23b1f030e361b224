//! Integration tests of the synthetic MVTec-like generator (`defectkit_core::data::synth`).
//!
//! What they pin down: byte-identical output for a seed (whatever the thread count), the
//! MVTec layout, masks that are exactly the changed pixels, defects that a global statistic
//! (mean pixel value) cannot detect, and categories that a simple classifier tells apart.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use defectkit_core::data::synth::{
    categories, folder_seed, generate, render, Category, SynthError, SynthOptions,
};
use defectkit_core::metrics::auroc;
use image::RgbImage;
use rayon::prelude::*;

fn small_opts(seed: u64, classes: &[&str]) -> SynthOptions {
    SynthOptions {
        seed,
        image_size: 64,
        train_good: 3,
        test_good: 2,
        test_defect_per_type: 2,
        classes: Some(classes.iter().map(|s| s.to_string()).collect()),
        force: false,
    }
}

/// Every file under `root`, by relative path, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn same_seed_gives_byte_identical_files_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let classes = ["carpet", "grid", "screw"];
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    generate(&small_opts(5, &classes), &a, false).unwrap();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one_thread
        .install(|| generate(&small_opts(5, &classes), &b, false))
        .unwrap();
    generate(&small_opts(6, &classes), &c, false).unwrap();

    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    assert!(!ta.is_empty());
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "file lists differ"
    );
    for (path, bytes) in &ta {
        assert!(
            bytes == &tb[path],
            "{} differs between two runs",
            path.display()
        );
    }
    // A different seed: same layout, different pixels.
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>());
    let differing = ta
        .iter()
        .filter(|(p, bytes)| p.extension().is_some_and(|e| e == "png") && **bytes != tc[*p])
        .count();
    let pngs = ta
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .count();
    assert!(
        differing * 10 >= pngs * 9,
        "only {differing} of {pngs} images changed with the seed"
    );
}

#[test]
fn layout_matches_mvtec() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synthetic");
    let opts = SynthOptions {
        seed: 1,
        image_size: 64,
        train_good: 2,
        test_good: 2,
        test_defect_per_type: 2,
        classes: None,
        force: false,
    };
    let summary = generate(&opts, &out, false).unwrap();
    assert_eq!(summary.root, out);
    assert_eq!(summary.classes.len(), 10);
    let n_defect_types: usize = categories().iter().map(|c| c.defects.len()).sum();
    assert_eq!(summary.masks, 2 * n_defect_types);
    assert_eq!(summary.images, 10 * 4 + summary.masks);
    assert!(out.join("synth.json").is_file());
    // Nothing left next to the output.
    let siblings: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(siblings.len(), 1, "temporary folder left behind");

    assert_eq!(categories().len(), 10);
    let n_textures = categories().iter().filter(|c| c.texture).count();
    assert!((4..=6).contains(&n_textures), "{n_textures} textures");
    let n_gray = categories().iter().filter(|c| c.grayscale).count();
    assert!((2..=3).contains(&n_gray), "{n_gray} grayscale categories");

    for cat in categories() {
        assert!((2..=4).contains(&cat.defects.len()), "{}", cat.name);
        let cd = out.join(cat.name);
        let image_type = if cat.grayscale {
            image::ColorType::L8
        } else {
            image::ColorType::Rgb8
        };
        for sub in ["train/good", "test/good"] {
            for i in 0..2 {
                let p = cd.join(sub).join(format!("{i:03}.png"));
                let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(img.color(), image_type, "{}", p.display());
                assert_eq!((img.width(), img.height()), (64, 64));
            }
            assert_eq!(fs::read_dir(cd.join(sub)).unwrap().count(), 2);
        }
        for d in cat.defects {
            assert_eq!(fs::read_dir(cd.join("test").join(d)).unwrap().count(), 2);
            assert_eq!(
                fs::read_dir(cd.join("ground_truth").join(d))
                    .unwrap()
                    .count(),
                2
            );
            for i in 0..2 {
                let ip = cd.join("test").join(d).join(format!("{i:03}.png"));
                let mp = cd
                    .join("ground_truth")
                    .join(d)
                    .join(format!("{i:03}_mask.png"));
                let img = image::open(&ip).unwrap();
                assert_eq!(img.color(), image_type, "{}", ip.display());
                let mask = image::open(&mp).unwrap();
                assert_eq!(mask.color(), image::ColorType::L8, "{}", mp.display());
                assert_eq!((mask.width(), mask.height()), (img.width(), img.height()));
                let mask = mask.to_luma8();
                assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
                assert!(
                    mask.pixels().any(|p| p.0[0] == 255),
                    "{} is empty",
                    mp.display()
                );
            }
        }
        // No other folders.
        let mut top: Vec<_> = fs::read_dir(&cd)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["ground_truth", "test", "train"]);
    }
}

#[test]
fn grayscale_categories_render_equal_channels() {
    for cat in categories().iter().filter(|c| c.grayscale) {
        let (img, _) = render(cat, Some(cat.defects[0]), 3, 0, 64);
        assert!(
            img.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]),
            "{}",
            cat.name
        );
    }
}

fn mean_pixel(img: &RgbImage) -> f64 {
    let raw = img.as_raw();
    raw.iter().map(|&v| f64::from(v)).sum::<f64>() / raw.len() as f64
}

/// Scores of the test split of one category, rendered in memory exactly as `generate` seeds
/// them, with `n_good` good and about `n_bad` defective images.
fn mean_scores(
    cat: &Category,
    seed: u64,
    size: u32,
    n_good: usize,
    n_bad: usize,
) -> (Vec<f64>, Vec<bool>) {
    let per_type = n_bad.div_ceil(cat.defects.len());
    let mut jobs: Vec<(Option<&str>, usize)> = (0..n_good).map(|i| (None, i)).collect();
    for d in cat.defects {
        jobs.extend((0..per_type).map(|i| (Some(*d), i)));
    }
    let scored: Vec<(f64, bool)> = jobs
        .par_iter()
        .map(|&(d, i)| {
            let fs = folder_seed(seed, "test", d.unwrap_or("good"));
            let (img, _) = render(cat, d, fs, i, size);
            (mean_pixel(&img), d.is_some())
        })
        .collect();
    scored.into_iter().unzip()
}

#[test]
fn mean_pixel_value_cannot_detect_defects() {
    // 60 good vs >= 60 defective: the AUROC's standard error under "no signal" is ~0.05,
    // so the 0.7 bound is ~4 standard errors away from chance.
    let mut report = Vec::new();
    let mut worst = 0.0f64;
    for cat in categories() {
        let (scores, labels) = mean_scores(cat, 0, 128, 60, 60);
        let a = auroc(&scores, &labels).unwrap();
        let strength = a.max(1.0 - a);
        report.push(format!("{}: {a:.3}", cat.name));
        worst = worst.max(strength);
        assert!(
            strength <= 0.7,
            "{}: mean pixel value separates good from defective (AUROC {a:.3})",
            cat.name
        );
    }
    eprintln!(
        "mean-pixel AUROC per category: {} (worst max(a,1-a) {worst:.3})",
        report.join(", ")
    );
}

#[test]
fn masks_are_exactly_the_changed_pixels() {
    let size = 96;
    let jobs: Vec<(&Category, &str, usize)> = categories()
        .iter()
        .flat_map(|c| {
            c.defects
                .iter()
                .flat_map(move |d| (0..4).map(move |i| (c, *d, i)))
        })
        .collect();
    let areas: Vec<(&str, f64)> = jobs
        .par_iter()
        .map(|&(cat, d, i)| {
            let seed = folder_seed(9, "test", d);
            let (good, good_mask) = render(cat, None, seed, i, size);
            let (bad, mask) = render(cat, Some(d), seed, i, size);
            assert!(
                good_mask.pixels().all(|p| p.0[0] == 0),
                "good mask not empty"
            );
            let (mut inside, mut inside_diff) = (0usize, 0usize);
            for (x, y, m) in mask.enumerate_pixels() {
                let differ = good.get_pixel(x, y) != bad.get_pixel(x, y);
                if m.0[0] == 255 {
                    inside += 1;
                    inside_diff += usize::from(differ);
                } else {
                    assert_eq!(m.0[0], 0);
                    assert!(
                        !differ,
                        "{}/{d}/{i}: pixel ({x},{y}) changed outside the mask",
                        cat.name
                    );
                }
            }
            assert!(inside > 0, "{}/{d}/{i}: empty mask", cat.name);
            assert!(
                inside_diff * 100 >= inside * 95,
                "{}/{d}/{i}: only {inside_diff} of {inside} mask pixels differ",
                cat.name
            );
            let area = inside as f64 / (size * size) as f64;
            assert!(
                area <= 0.12,
                "{}/{d}/{i}: defect covers {:.1}%",
                cat.name,
                area * 100.0
            );
            (cat.name, area)
        })
        .collect();
    for cat in categories() {
        let a: Vec<f64> = areas
            .iter()
            .filter(|(n, _)| *n == cat.name)
            .map(|(_, a)| *a)
            .collect();
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!(
            (0.005..=0.08).contains(&mean),
            "{}: mean defect area {:.2}% outside 0.5–8%",
            cat.name,
            mean * 100.0
        );
    }
}

/// Lighting-invariant colour/structure features: chromaticity, relative contrast,
/// relative gradient energy, a brightness-normalised histogram, centre/border ratio.
fn features(img: &RgbImage) -> Vec<f64> {
    let (w, h) = img.dimensions();
    let px = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
    };
    let lum = |c: [f64; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] + 1.0;
    let n = f64::from(w * h);
    let (mut sum, mut sum2, mut sat) = ([0.0; 3], 0.0, 0.0);
    let (mut centre, mut n_centre, mut border) = (0.0, 0.0, 0.0);
    let mut grad = 0.0;
    let mut ls = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let c = px(x, y);
            let l = lum(c);
            ls.push(l);
            for k in 0..3 {
                sum[k] += c[k];
            }
            sum2 += l * l;
            sat +=
                c.iter().cloned().fold(0.0, f64::max) - c.iter().cloned().fold(f64::MAX, f64::min);
            if (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y) {
                centre += l;
                n_centre += 1.0;
            } else {
                border += l;
            }
            if x + 1 < w && y + 1 < h {
                grad += (lum(px(x + 1, y)) - l).abs() + (lum(px(x, y + 1)) - l).abs();
            }
        }
    }
    let m = ls.iter().sum::<f64>() / n;
    let var = sum2 / n - m * m;
    let mut f = vec![
        sum[0] / n / m,
        sum[1] / n / m,
        sum[2] / n / m,
        var.max(0.0).sqrt() / m,
        grad / n / m,
        sat / n / m,
        (centre / n_centre) / (border / (n - n_centre)),
    ];
    let edges = [0.4, 0.7, 0.9, 1.1, 1.3, 1.6];
    let mut hist = [0.0; 7];
    for l in &ls {
        let b = edges.iter().filter(|&&e| l / m > e).count();
        hist[b] += 1.0 / n;
    }
    f.extend(hist);
    f
}

#[test]
fn categories_are_easy_to_tell_apart() {
    // Nearest class mean on standardised features; train and test are disjoint images.
    let size = 96;
    let (n_train, n_test) = (15, 10);
    let cats = categories();
    let feats = |seed: u64, n: usize| -> Vec<Vec<Vec<f64>>> {
        cats.par_iter()
            .map(|c| {
                (0..n)
                    .map(|i| {
                        features(&render(c, None, folder_seed(seed, "train", "good"), i, size).0)
                    })
                    .collect()
            })
            .collect()
    };
    let train = feats(21, n_train);
    let test = feats(22, n_test);
    let dim = train[0][0].len();
    let means: Vec<Vec<f64>> = train
        .iter()
        .map(|xs| {
            (0..dim)
                .map(|k| xs.iter().map(|x| x[k]).sum::<f64>() / xs.len() as f64)
                .collect()
        })
        .collect();
    // Pooled within-class standard deviation per feature.
    let sd: Vec<f64> = (0..dim)
        .map(|k| {
            let ss: f64 = train
                .iter()
                .zip(&means)
                .flat_map(|(xs, m)| xs.iter().map(move |x| (x[k] - m[k]).powi(2)))
                .sum();
            (ss / (cats.len() * (n_train - 1)) as f64).sqrt().max(1e-9)
        })
        .collect();
    let (mut correct, mut total) = (0, 0);
    let mut confusions = Vec::new();
    for (truth, xs) in test.iter().enumerate() {
        for x in xs {
            let pred = (0..cats.len())
                .min_by(|&a, &b| {
                    let d = |c: usize| -> f64 {
                        (0..dim)
                            .map(|k| ((x[k] - means[c][k]) / sd[k]).powi(2))
                            .sum()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            total += 1;
            if pred == truth {
                correct += 1;
            } else {
                confusions.push(format!("{}→{}", cats[truth].name, cats[pred].name));
            }
        }
    }
    let acc = f64::from(correct) / f64::from(total);
    eprintln!("nearest-class-mean accuracy {acc:.3}; confusions: {confusions:?}");
    assert!(acc > 0.9, "accuracy {acc:.3}; confusions: {confusions:?}");
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("keep.txt"), b"old").unwrap();
    let opts = small_opts(0, &["wood"]);
    let err = generate(&opts, &out, false).unwrap_err();
    assert!(matches!(err, SynthError::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"old");

    // An empty existing folder is fine without --force.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    generate(&opts, &empty, false).unwrap();
    assert!(empty.join("wood/train/good/000.png").is_file());

    // With force the old content is replaced, and nothing is left beside it.
    let forced = SynthOptions {
        force: true,
        ..opts.clone()
    };
    generate(&forced, &out, false).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("wood/train/good/000.png").is_file());
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["data", "empty"]);
}

#[test]
fn unknown_class_lists_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let err = generate(&small_opts(0, &["wood", "zipper"]), &out, false).unwrap_err();
    assert!(matches!(err, SynthError::UnknownClass { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("zipper"), "{msg}");
    for c in categories() {
        assert!(msg.contains(c.name), "{msg} does not list {}", c.name);
    }
    assert!(!out.exists());
}

#[test]
fn failure_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"x").unwrap();
    // The parent of the output is a file: creating the partial folder fails.
    let out = blocker.join("synthetic");
    let err = generate(&small_opts(0, &["wood"]), &out, false).unwrap_err();
    assert!(matches!(err, SynthError::Io { .. }), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn options_round_trip_and_reject_unknown_keys() {
    let d = SynthOptions::default();
    assert_eq!(
        (
            d.image_size,
            d.train_good,
            d.test_good,
            d.test_defect_per_type,
            d.classes.clone(),
            d.force
        ),
        (256, 60, 15, 6, None, false)
    );
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<SynthOptions>(&json).unwrap(), d);
    let minimal =
        r#"{"seed":1,"image_size":32,"train_good":1,"test_good":1,"test_defect_per_type":1}"#;
    assert_eq!(
        serde_json::from_str::<SynthOptions>(minimal)
            .unwrap()
            .classes,
        None
    );
    let bad = r#"{"seed":1,"image_size":32,"train_good":1,"test_good":1,"test_defect_per_type":1,"colour":true}"#;
    assert!(serde_json::from_str::<SynthOptions>(bad).is_err());
    let invalid = SynthOptions {
        image_size: 4,
        ..small_opts(0, &["wood"])
    };
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        generate(&invalid, &dir.path().join("o"), false),
        Err(SynthError::InvalidOptions(_))
    ));
}

/// SHA-256 per category over every file (relative path and bytes, in path order) of a small
/// set with all categories. Pinned so that refactoring the generator (the split of synth.rs
/// by job) provably changes no byte; regenerate only for a deliberate change of the data.
#[test]
fn golden_digest_per_category_is_unchanged() {
    use sha2::{Digest, Sha256};
    const GOLDEN: &[(&str, &str)] = &[
        (
            "bottle",
            "f2a79c7a52ad3bd02f8c1c9869f198c39dc3cec20c5a8c1870e4fa9a6e64d2c0",
        ),
        (
            "cable",
            "b4263d5870447d0ee45ad1484b8e3a9eba4fd371ff92918addd841c75f45de35",
        ),
        (
            "capsule",
            "a474774698f5ced7783a9ecb8ec8ae19dfb3f150aef18cd20a20897f7c216905",
        ),
        (
            "carpet",
            "0aedf87641d7819b22002ff0505b63df3deb5a32732835cae4827ba76f06c57a",
        ),
        (
            "grid",
            "27fbb2b37f0c47b23e8c4ab663e0c63079021a21bad1f49a65ff728dbe71a2e4",
        ),
        (
            "leather",
            "fe9bbe164467ebcdf02fd6f056ea50e319a0e961f16f5be4dc65fc0ea751acb9",
        ),
        (
            "metal_nut",
            "2a29c9372a39328d333f2f478d7e0d0995e50d0fac00c0af23833e6cc814b2b9",
        ),
        (
            "screw",
            "15051404c8eddbc174962e3d2537820f0deb097641118e0a0a100d97f1ef2042",
        ),
        (
            "tile",
            "f59d930222617337c3b44940876c6361983b0d4c70decf6d353c5aaf0ea8b2c5",
        ),
        (
            "wood",
            "1223af630ce76db30ddd5bee2a998e2486dd5accd410186844ffae274ef0e638",
        ),
    ];
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("syn");
    let opts = SynthOptions {
        seed: 7,
        image_size: 48,
        train_good: 2,
        test_good: 1,
        test_defect_per_type: 1,
        classes: None,
        force: false,
    };
    generate(&opts, &root, false).unwrap();
    let files = tree(&root);
    let mut got = Vec::new();
    for category in categories() {
        let mut h = Sha256::new();
        for (rel, bytes) in files.range(PathBuf::from(category.name)..) {
            if !rel.starts_with(category.name) {
                break;
            }
            h.update(rel.to_string_lossy().as_bytes());
            h.update(bytes);
        }
        got.push((category.name.to_string(), format!("{:x}", h.finalize())));
    }
    let table: String = got
        .iter()
        .map(|(c, d)| format!("        (\"{c}\", \"{d}\"),\n"))
        .collect();
    let golden: Vec<(String, String)> = GOLDEN
        .iter()
        .map(|(c, d)| (c.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, golden, "synth output changed; now:\n{table}");
}
