//! defectkit's pixel-level metrics against the MVTec AD official evaluation and SciPy /
//! scikit-learn themselves (tests/peers/pixel_peer.py): connected defect regions
//! (`scipy.ndimage.label`, 8-connectivity), pixel AUROC (`roc_auc_score`), the PRO curve
//! (`compute_pro`) and AUPRO (`trapezoid(..., x_max) / x_max`) on hand-made masks (separate
//! regions, regions touching only diagonally, regions one pixel apart, good images, tiny and
//! large regions) and seeded random ones, with perfect, inverted, informative, random, tied
//! and constant maps.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use defectkit_core::metrics::{
    aupro, label_regions, pixel_auroc, pixel_metrics, pro_curve, AUPRO_FPR_LIMIT,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};

const LIMITS: [f64; 7] = [AUPRO_FPR_LIMIT, 0.01, 0.05, 0.1, 0.123, 0.5, 1.0];

struct Case {
    name: String,
    width: usize,
    height: usize,
    maps: Vec<Vec<f32>>,
    masks: Vec<Vec<bool>>,
}

impl Case {
    fn maps(&self) -> Vec<&[f32]> {
        self.maps.iter().map(|m| &m[..]).collect()
    }
    fn masks(&self) -> Vec<&[bool]> {
        self.masks.iter().map(|m| &m[..]).collect()
    }
}

/// A blank `width`×`height` mask to draw defects into.
struct Mask {
    width: usize,
    height: usize,
    px: Vec<bool>,
}

impl Mask {
    fn new(width: usize, height: usize) -> Self {
        Mask {
            width,
            height,
            px: vec![false; width * height],
        }
    }
    fn set(&mut self, x: i64, y: i64) -> &mut Self {
        if (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            self.px[y as usize * self.width + x as usize] = true;
        }
        self
    }
    fn rect(&mut self, x0: i64, y0: i64, w: i64, h: i64) -> &mut Self {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.set(x, y);
            }
        }
        self
    }
    fn disc(&mut self, cx: i64, cy: i64, r: i64) -> &mut Self {
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                    self.set(x, y);
                }
            }
        }
        self
    }
    fn done(&mut self) -> Vec<bool> {
        std::mem::take(&mut self.px)
    }
}

/// Hand-made masks, 24×16: several separate regions; two squares touching only at a corner
/// (one region under 8-connectivity); a good image; a large disc next to a single pixel;
/// two squares one pixel apart (two regions); a diagonal line (one region).
fn handmade_masks() -> (usize, usize, Vec<Vec<bool>>) {
    let (w, h) = (24, 16);
    let m = |f: &dyn Fn(&mut Mask)| {
        let mut m = Mask::new(w, h);
        f(&mut m);
        m.done()
    };
    let masks = vec![
        m(&|m| {
            m.rect(1, 1, 8, 6) // large
                .rect(12, 2, 2, 2)
                .rect(14, 4, 2, 2) // touches the previous square at a corner only
                .set(20, 12) // a single pixel
                .rect(10, 12, 1, 3); // a short line
        }),
        m(&|_| {}), // a good image
        m(&|m| {
            m.disc(12, 8, 5).set(1, 14);
        }),
        m(&|m| {
            m.rect(2, 2, 3, 3).rect(6, 2, 3, 3); // one pixel apart: two regions
            for i in 0..6 {
                m.set(14 + i, 8 + i); // a diagonal line: one region
            }
            m.set(23, 0).set(22, 1); // a corner pair at the image edge
        }),
    ];
    (w, h, masks)
}

/// Seeded random masks: a few discs and rectangles per image (some images left good) and a
/// sprinkle of single pixels, which often touch each other or a blob only diagonally.
fn random_masks(seed: u64, n: usize, width: usize, height: usize, sprinkle: f64) -> Vec<Vec<bool>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut m = Mask::new(width, height);
            let (w, h) = (width as i64, height as i64);
            if rng.random_bool(0.75) {
                for _ in 0..rng.random_range(1..5) {
                    let (x, y) = (rng.random_range(0..w), rng.random_range(0..h));
                    if rng.random_bool(0.5) {
                        m.disc(x, y, rng.random_range(0..(w / 5).max(1)));
                    } else {
                        m.rect(x, y, rng.random_range(1..w / 3), rng.random_range(1..h / 3));
                    }
                }
                for i in 0..width * height {
                    if rng.random_bool(sprinkle) {
                        m.px[i] = true;
                    }
                }
            }
            m.done()
        })
        .collect()
}

/// Maps for `masks`: `shift`·mask + uniform noise in [0, 1), per image with its own scale of
/// the shift (`per_image`), rounded to `1/round` when `round` > 0 (ties).
fn informative_maps(
    seed: u64,
    masks: &[Vec<bool>],
    shift: f32,
    per_image: bool,
    round: f32,
) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    masks
        .iter()
        .map(|mask| {
            let s = if per_image {
                shift * rng.random::<f32>() * 2.0
            } else {
                shift
            };
            mask.iter()
                .map(|&d| {
                    let v = rng.random::<f32>() + if d { s } else { 0.0 };
                    if round > 0.0 {
                        (v * round).round() / round
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect()
}

/// Every defect pixel scores above every good pixel.
fn perfect_maps(seed: u64, masks: &[Vec<bool>]) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    masks
        .iter()
        .map(|mask| {
            mask.iter()
                .map(|&d| {
                    let v = rng.random::<f32>() * 0.4;
                    if d {
                        0.6 + v
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect()
}

fn negated(maps: &[Vec<f32>]) -> Vec<Vec<f32>> {
    maps.iter()
        .map(|m| m.iter().map(|v| -v).collect())
        .collect()
}

fn case(name: &str, width: usize, height: usize, maps: Vec<Vec<f32>>, masks: &[Vec<bool>]) -> Case {
    Case {
        name: name.to_string(),
        width,
        height,
        maps,
        masks: masks.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let (w, h, hand) = handmade_masks();
    cases.push(case("hand perfect", w, h, perfect_maps(1, &hand), &hand));
    cases.push(case(
        "hand inverted",
        w,
        h,
        negated(&perfect_maps(2, &hand)),
        &hand,
    ));
    for seed in 0..4 {
        let maps = informative_maps(10 + seed, &hand, 0.6, true, 0.0);
        cases.push(case(
            &format!("hand informative #{seed}"),
            w,
            h,
            maps,
            &hand,
        ));
        let maps = informative_maps(20 + seed, &hand, 0.0, false, 0.0);
        cases.push(case(&format!("hand random #{seed}"), w, h, maps, &hand));
        let maps = informative_maps(30 + seed, &hand, 0.5, false, 10.0);
        cases.push(case(&format!("hand tied #{seed}"), w, h, maps, &hand));
    }
    let maps = informative_maps(40, &hand, 1.0, false, 1.0);
    cases.push(case("hand three values", w, h, maps, &hand));
    let maps = hand.iter().map(|m| vec![0.5f32; m.len()]).collect();
    cases.push(case("hand constant", w, h, maps, &hand));

    // 10 good pixels: FPR steps of 1/10 hit the limit 0.3 exactly (no interpolation).
    let mut m = Mask::new(4, 4);
    let exact = vec![m.rect(0, 0, 3, 2).done()];
    let map: Vec<f32> = (0..16).map(|i| ((i * 7) % 16) as f32).collect();
    cases.push(case("FPR hits the limit", 4, 4, vec![map], &exact));

    for seed in 0..5 {
        let (w, h) = (32, 24);
        let masks = random_masks(100 + seed, 6, w, h, 0.01);
        let maps = informative_maps(200 + seed, &masks, 0.4, true, 0.0);
        cases.push(case(&format!("random masks #{seed}"), w, h, maps, &masks));
        let maps = informative_maps(300 + seed, &masks, 0.4, true, 20.0);
        cases.push(case(
            &format!("random masks tied #{seed}"),
            w,
            h,
            maps,
            &masks,
        ));
    }
    let masks = random_masks(400, 10, 64, 64, 0.002);
    let maps = informative_maps(401, &masks, 0.3, true, 0.0);
    cases.push(case("random masks 64x64", 64, 64, maps, &masks));
    let masks = random_masks(402, 3, 40, 30, 0.05);
    cases.push(case(
        "random masks perfect",
        40,
        30,
        perfect_maps(403, &masks),
        &masks,
    ));

    // Undefined: no defect anywhere, no good pixel anywhere.
    let good = vec![vec![false; 12]; 2];
    let maps = informative_maps(500, &good, 0.0, false, 0.0);
    cases.push(case("no defect", 4, 3, maps, &good));
    let bad = vec![vec![true; 12]; 2];
    let maps = informative_maps(501, &bad, 0.0, false, 0.0);
    cases.push(case("no good pixel", 4, 3, maps, &bad));
    cases
}

fn peer(py: &Path, cases: &[Case]) -> Vec<Json> {
    let input: Vec<Json> = cases
        .iter()
        .map(|c| {
            // f32 → f64 keeps every value exact in JSON.
            let maps: Vec<Vec<f64>> = c
                .maps
                .iter()
                .map(|m| m.iter().map(|&v| v as f64).collect())
                .collect();
            json!({
                "name": c.name,
                "width": c.width,
                "height": c.height,
                "maps": maps,
                "masks": c.masks,
                "fpr_limits": LIMITS,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let out = Command::new(py)
        .arg(common::repo_root().join("tests/peers/pixel_peer.py"))
        .arg(&path)
        .output()
        .expect("run the pixel peer");
    assert!(
        out.status.success(),
        "pixel peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    results
}

fn f64_of(v: &Json, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: peer gave {v}"))
}

fn assert_within(ours: f64, theirs: f64, tol: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours:.17}, peer {theirs:.17}"
    );
}

fn check(c: &Case, r: &Json) {
    let name = &c.name;
    assert_eq!(r["name"], json!(name));
    let (maps, masks) = (c.maps(), c.masks());

    // Labels equal SciPy's, label for label.
    let mut regions = 0;
    for (i, mask) in masks.iter().enumerate() {
        let (labels, count) = label_regions(mask, c.width, c.height);
        assert_eq!(
            json!(count),
            r["counts"][i],
            "{name}: image {i}: region count"
        );
        assert_eq!(json!(labels), r["labels"][i], "{name}: image {i}: labels");
        regions += count;
    }

    match pixel_auroc(&maps, &masks) {
        None => assert!(r["pixel_auroc"].is_null(), "{name}: pixel AUROC None"),
        Some(a) => assert_within(
            a,
            f64_of(&r["pixel_auroc"], name),
            1e-9,
            &format!("{name}: pixel AUROC"),
        ),
    }

    let curve = pro_curve(&maps, &masks, c.width, c.height);
    let Some(curve) = curve else {
        assert!(r["curve"].is_null(), "{name}: PRO curve None, peer has one");
        for &limit in &LIMITS {
            assert_eq!(aupro(&maps, &masks, c.width, c.height, limit), None);
        }
        assert!(r["aupro"].is_null());
        return;
    };
    let fpr = r["curve"]["fpr"].as_array().expect("a peer curve");
    let pro = r["curve"]["pro"].as_array().unwrap();
    assert_eq!(curve[0], (0.0, 0.0), "{name}: the curve starts at (0, 0)");
    assert_eq!(curve.last(), Some(&(1.0, 1.0)), "{name}: ends at (1, 1)");
    assert_eq!(curve.len() - 1, fpr.len(), "{name}: PRO curve points");
    for (k, (&(f, p), (tf, tp))) in curve[1..].iter().zip(fpr.iter().zip(pro)).enumerate() {
        assert_within(f, f64_of(tf, name), 1e-12, &format!("{name}: FPR[{k}]"));
        assert_within(p, f64_of(tp, name), 1e-9, &format!("{name}: PRO[{k}]"));
    }
    for w in curve.windows(2) {
        assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1, "{name}: not monotone");
    }

    for (k, &limit) in LIMITS.iter().enumerate() {
        let what = format!("{name}: AUPRO to {limit}");
        let a = aupro(&maps, &masks, c.width, c.height, limit).expect("defined");
        assert!((0.0..=1.0).contains(&a), "{what}: {a} outside [0, 1]");
        assert_within(a, f64_of(&r["aupro"][k], &what), 1e-9, &what);
        // The official float32 FPRs agree to their precision.
        assert_within(
            a,
            f64_of(&r["aupro_f32"][k], &what),
            1e-5,
            &format!("{what} (float32 FPRs)"),
        );
    }

    let m = pixel_metrics(&maps, &masks, c.width, c.height, AUPRO_FPR_LIMIT);
    assert_eq!(m.regions, regions, "{name}");
    assert_eq!(
        m.aupro,
        aupro(&maps, &masks, c.width, c.height, AUPRO_FPR_LIMIT)
    );
    assert_eq!(m.pixel_auroc, pixel_auroc(&maps, &masks));
    let defect: usize = c.masks.iter().flatten().filter(|&&d| d).count();
    assert_eq!(
        (m.defect_pixels, m.good_pixels),
        (defect, c.masks.len() * c.width * c.height - defect)
    );
}

#[test]
fn pixel_metrics_match_the_mvtec_ad_evaluation() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let cases = cases();
    // The data sets cover what they claim to.
    let (w, h, hand) = handmade_masks();
    let counts: Vec<usize> = hand.iter().map(|m| label_regions(m, w, h).1).collect();
    assert_eq!(counts[1], 0, "a good image");
    assert!(counts.iter().sum::<usize>() >= 8);
    let results = peer(&py, &cases);
    for (c, r) in cases.iter().zip(&results) {
        check(c, r);
    }
}

#[test]
fn diagonal_contact_is_one_region_and_a_gap_is_two() {
    let (w, h, hand) = handmade_masks();
    // Image 0: the large rectangle, the corner-touching squares (one), the pixel, the line.
    assert_eq!(label_regions(&hand[0], w, h).1, 4);
    // Image 3: two squares one pixel apart (two), the diagonal line (one), the corner pair.
    assert_eq!(label_regions(&hand[3], w, h).1, 4);
    let (labels, _) = label_regions(&hand[0], w, h);
    let at = |x: usize, y: usize| labels[y * w + x];
    assert_eq!(
        at(12, 2),
        at(15, 5),
        "corner-touching squares share a label"
    );
    assert_ne!(at(1, 1), at(12, 2));
}

#[test]
fn perfect_map_gives_one_and_inverted_gives_zero() {
    let (w, h, hand) = handmade_masks();
    let masks = random_masks(7, 5, 30, 20, 0.02);
    for (masks, w, h) in [(hand, w, h), (masks, 30, 20)] {
        let mk: Vec<&[bool]> = masks.iter().map(|m| &m[..]).collect();
        let perfect = perfect_maps(8, &masks);
        let inverted = negated(&perfect);
        let p: Vec<&[f32]> = perfect.iter().map(|m| &m[..]).collect();
        let i: Vec<&[f32]> = inverted.iter().map(|m| &m[..]).collect();
        for &limit in &LIMITS {
            let a = aupro(&p, &mk, w, h, limit).unwrap();
            assert!(
                (a - 1.0).abs() <= 1e-12 && a <= 1.0,
                "perfect to {limit}: {a}"
            );
            assert_eq!(
                aupro(&i, &mk, w, h, limit),
                Some(0.0),
                "inverted to {limit}"
            );
        }
        assert_eq!(pixel_auroc(&p, &mk), Some(1.0));
        assert_eq!(pixel_auroc(&i, &mk), Some(0.0));
    }
}

#[test]
fn region_weighting_differs_from_pixel_weighting() {
    // A 40-pixel region found and a 1-pixel region missed: PRO is 1/2 while the pixel TPR
    // would be 40/41. Derivable: good pixels score 0.5, the large region 1, the small one 0.
    let mut m = Mask::new(10, 10);
    let mask = m.rect(0, 0, 10, 4).set(8, 8).done();
    let map: Vec<f32> = mask
        .iter()
        .enumerate()
        .map(|(i, &d)| match (d, i < 40) {
            (true, true) => 1.0,
            (true, false) => 0.0,
            _ => 0.5,
        })
        .collect();
    let curve = pro_curve(&[&map], &[&mask], 10, 10).unwrap();
    let want = [(0.0, 0.0), (0.0, 0.5), (1.0, 0.5), (1.0, 1.0)];
    assert_eq!(curve.len(), want.len(), "{curve:?}");
    for (g, w) in curve.iter().zip(&want) {
        assert!(
            (g.0 - w.0).abs() < 1e-15 && (g.1 - w.1).abs() < 1e-15,
            "{curve:?}"
        );
    }
    let a = aupro(&[&map], &[&mask], 10, 10, AUPRO_FPR_LIMIT).unwrap();
    assert!((a - 0.5).abs() < 1e-15, "{a}");
}

#[test]
fn aupro_scales_to_millions_of_pixels() {
    // 40 maps of 256×256 = 2.6 M pixels: one sort, seconds at most (an accidental O(P²)
    // would take hours).
    let (w, h) = (256, 256);
    let masks = random_masks(9, 40, w, h, 0.0005);
    let maps = informative_maps(10, &masks, 0.5, true, 0.0);
    let mk: Vec<&[bool]> = masks.iter().map(|m| &m[..]).collect();
    let mp: Vec<&[f32]> = maps.iter().map(|m| &m[..]).collect();
    let start = Instant::now();
    let m = pixel_metrics(&mp, &mk, w, h, AUPRO_FPR_LIMIT);
    let took = start.elapsed();
    eprintln!("pixel metrics of {} pixels: {took:?} ({m:?})", 40 * w * h);
    let a = m.aupro.unwrap();
    assert!(a > 0.0 && a < 1.0, "{a}");
    assert!(took.as_secs() < 60, "took {took:?}");
}

#[test]
#[should_panic(expected = "pro_curve: 1 maps but 2 masks")]
fn mismatched_counts_panic() {
    let _ = pro_curve(&[&[0.0f32; 4]], &[&[true; 4], &[false; 4]], 2, 2);
}
