//! Pixel-level metrics of anomaly maps against defect masks: connected defect regions, pixel
//! AUROC and the area under the per-region-overlap curve (AUPRO), as the MVTec AD benchmark's
//! official evaluation code defines them.
//!
//! Inputs are per-image anomaly maps (`&[f32]`, row-major, `width`×`height`) and defect masks
//! of the same shape (`true` = defective pixel). Every image of an evaluation has the same
//! size. MVTec AD reports these metrics per category; evaluate each category's test images
//! (good ones included) as one call. A subset of images is evaluated by passing the selected
//! slices, e.g. `indices.iter().map(|&i| maps[i]).collect::<Vec<_>>()`.

use serde::{Deserialize, Serialize};

use super::{auroc, score_key};

/// The conventional AUPRO integration limit: the false-positive rate 0.3 (MVTec AD).
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// Connected components of `mask` (row-major, `width`×`height`) with 8-connectivity: two
/// defect pixels belong to one region when they touch by an edge or a corner.
///
/// Returns one label per pixel (0 = background, regions 1..=count) and the count. Regions are
/// numbered in scan order of their first pixel (row by row, left to right), so the result
/// equals `scipy.ndimage.label(mask, structure=np.ones((3, 3)))` — the structure the MVTec AD
/// evaluation code uses. (SciPy's default structure is 4-connectivity, which splits regions
/// that touch only diagonally.) O(width·height).
///
/// # Panics
/// If `mask.len() != width * height` (a programmer error).
pub fn label_regions(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, usize) {
    assert_eq!(
        mask.len(),
        width * height,
        "label_regions: mask of {} pixels for a {width}x{height} image",
        mask.len()
    );
    let mut labels = vec![0u32; mask.len()];
    let mut count = 0u32;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = count;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, count as usize)
}

/// Panic unless there are as many masks as maps and every map and mask has `len` pixels
/// (`None`: only map and mask must agree).
fn check_shapes(what: &str, maps: &[&[f32]], masks: &[&[bool]], len: Option<usize>) {
    assert_eq!(
        maps.len(),
        masks.len(),
        "{what}: {} maps but {} masks",
        maps.len(),
        masks.len()
    );
    for (i, (map, mask)) in maps.iter().zip(masks).enumerate() {
        assert_eq!(
            map.len(),
            mask.len(),
            "{what}: image {i} has a map of {} pixels but a mask of {}",
            map.len(),
            mask.len()
        );
        if let Some(len) = len {
            assert_eq!(
                map.len(),
                len,
                "{what}: image {i} has {} pixels, expected {len}",
                map.len()
            );
        }
    }
}

/// ROC AUC over every pixel of every image: each pixel is one sample, scored by its map value
/// and labelled by its mask (`sklearn.metrics.roc_auc_score(masks.ravel(), maps.ravel())`, the
/// MVTec AD "pixel AUROC"). Ties count half; NaN scores rank above every number (see the
/// [module docs](super)). Returns None when only one class of pixel is present (no defect
/// pixel, or no good one).
///
/// Pixel AUROC is dominated by large defects (every pixel weighs the same); [`aupro`] weighs
/// every defect region the same and is the metric to read for small defects.
///
/// # Panics
/// If `maps` and `masks` differ in count, or a map and its mask differ in length.
pub fn pixel_auroc(maps: &[&[f32]], masks: &[&[bool]]) -> Option<f64> {
    check_shapes("pixel_auroc", maps, masks, None);
    let scores: Vec<f64> = maps
        .iter()
        .flat_map(|m| m.iter().map(|&v| v as f64))
        .collect();
    let labels: Vec<bool> = masks.iter().flat_map(|m| m.iter().copied()).collect();
    auroc(&scores, &labels)
}

/// The per-region-overlap (PRO) curve: points (FPR, PRO), exactly as the MVTec AD official
/// evaluation's `compute_pro` (`pro_curve_util.py`) defines them.
///
/// Every distinct map value t, descending, is one threshold (pixels with value ≥ t are
/// flagged; tied values are one step, like the official code's merge of equal scores). At
/// each threshold:
/// - FPR = the flagged fraction of all good (non-defect) pixels of all images — good images
///   included;
/// - PRO = the mean, over every connected defect region of every image ([`label_regions`],
///   8-connectivity), of the flagged fraction of that region's pixels. Each region weighs the
///   same whatever its size.
///
/// The curve starts at (0, 0) (nothing flagged) and ends at (1, 1) (every pixel flagged). Both
/// coordinates are non-decreasing. Returns None when there is no defect region or no good
/// pixel. One sort: O(P log P) in the pixel count P. NaN values rank above every number.
///
/// Unlike the official code, which stores the FPRs as `float32`, FPRs are exact ratios in
/// `f64`.
///
/// # Panics
/// If `maps` and `masks` differ in count, or a map or mask is not `width`×`height`.
pub fn pro_curve(
    maps: &[&[f32]],
    masks: &[&[bool]],
    width: usize,
    height: usize,
) -> Option<Vec<(f64, f64)>> {
    check_shapes("pro_curve", maps, masks, Some(width * height));
    // One entry per pixel: its sort key and 0 (good) or its region's index + 1 over all images.
    let mut pixels: Vec<(f64, u32)> = Vec::with_capacity(maps.len() * width * height);
    let mut region_sizes: Vec<u32> = Vec::new();
    let mut n_good = 0usize;
    for (map, mask) in maps.iter().zip(masks) {
        let (labels, count) = label_regions(mask, width, height);
        let offset = region_sizes.len() as u32;
        region_sizes.resize(region_sizes.len() + count, 0);
        for (&v, &l) in map.iter().zip(&labels) {
            let tag = if l == 0 {
                n_good += 1;
                0
            } else {
                let r = offset + l;
                region_sizes[r as usize - 1] += 1;
                r
            };
            pixels.push((score_key(v as f64), tag));
        }
    }
    let n_regions = region_sizes.len();
    if n_regions == 0 || n_good == 0 {
        return None;
    }
    let inv_size: Vec<f64> = region_sizes.iter().map(|&s| 1.0 / s as f64).collect();
    pixels.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));

    let mut curve = Vec::new();
    curve.push((0.0, 0.0));
    let mut fp = 0usize;
    // Σ over flagged defect pixels of 1 / (their region's size), compensated (Neumaier) so
    // millions of terms add no visible rounding.
    let mut overlap = Neumaier::default();
    let mut i = 0;
    while i < pixels.len() {
        let t = pixels[i].0;
        while i < pixels.len() && pixels[i].0.total_cmp(&t).is_eq() {
            match pixels[i].1 {
                0 => fp += 1,
                r => overlap.add(inv_size[r as usize - 1]),
            }
            i += 1;
        }
        let pro = (overlap.sum() / n_regions as f64).min(1.0);
        curve.push((fp as f64 / n_good as f64, pro));
    }
    // Every pixel flagged: every region is fully covered (no accumulated rounding).
    if let Some(last) = curve.last_mut() {
        *last = (1.0, 1.0);
    }
    Some(curve)
}

/// Compensated summation (Neumaier's variant of Kahan's).
#[derive(Default)]
struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        self.compensation += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
    }

    fn sum(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The normalised area under a PRO curve up to `fpr_limit`: the trapezoid rule from FPR 0,
/// with the curve interpolated linearly at the limit, divided by `fpr_limit`. This is the
/// official `trapezoid(fprs, pros, x_max=fpr_limit) / fpr_limit`.
fn area_to_limit(curve: &[(f64, f64)], fpr_limit: f64) -> f64 {
    let mut area = 0.0;
    let mut prev = (0.0, 0.0);
    for &(x, y) in curve {
        if x <= fpr_limit {
            area += 0.5 * (y + prev.1) * (x - prev.0);
            prev = (x, y);
        } else {
            // x > limit ≥ prev.0, so the segment has width.
            let y_at = prev.1 + (y - prev.1) * (fpr_limit - prev.0) / (x - prev.0);
            area += 0.5 * (y_at + prev.1) * (fpr_limit - prev.0);
            break;
        }
    }
    (area / fpr_limit).clamp(0.0, 1.0)
}

/// AUPRO: the area under the [`pro_curve`] from FPR 0 to `fpr_limit`, divided by
/// `fpr_limit` — the MVTec AD official evaluation (`trapezoid(..., x_max=fpr_limit)` then
/// `/ integration_limit`). [`AUPRO_FPR_LIMIT`] (0.3) is the convention.
///
/// The curve is integrated by the trapezoid rule and interpolated linearly where it crosses
/// `fpr_limit`. The result is in [0, 1]: 1 when every defect pixel scores above every good
/// pixel, 0 when no defect pixel scores above any good one before the limit.
///
/// Pitfall: a common implementation cuts the curve at the limit and divides by the last FPR
/// the curve reached (or renormalises the cut FPRs to end at 1), not by `fpr_limit`; that
/// inflates the area and can report values above 1. This one divides by `fpr_limit`.
///
/// Returns None when there is no defect region or no good pixel.
///
/// # Panics
/// If `fpr_limit` is not in (0, 1], or the shapes are inconsistent (see [`pro_curve`]).
pub fn aupro(
    maps: &[&[f32]],
    masks: &[&[bool]],
    width: usize,
    height: usize,
    fpr_limit: f64,
) -> Option<f64> {
    check_limit(fpr_limit);
    let curve = pro_curve(maps, masks, width, height)?;
    Some(area_to_limit(&curve, fpr_limit))
}

fn check_limit(fpr_limit: f64) {
    assert!(
        fpr_limit > 0.0 && fpr_limit <= 1.0,
        "aupro: the FPR limit {fpr_limit} is outside (0, 1]"
    );
}

/// Both pixel-level metrics of one evaluation, from [`pixel_metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelMetrics {
    /// [`pixel_auroc`]; None with only one class of pixel.
    pub pixel_auroc: Option<f64>,
    /// [`aupro`] up to `fpr_limit`; None without a defect region or a good pixel.
    pub aupro: Option<f64>,
    /// The AUPRO integration limit used.
    pub fpr_limit: f64,
    /// Connected defect regions (8-connectivity) over all images.
    pub regions: usize,
    /// Defect pixels over all images.
    pub defect_pixels: usize,
    /// Good pixels over all images.
    pub good_pixels: usize,
}

/// [`pixel_auroc`], [`aupro`] and the counts behind them, for one set of images (e.g. one
/// category's test split; for a subset, pass the selected maps and masks).
///
/// # Panics
/// As [`aupro`].
pub fn pixel_metrics(
    maps: &[&[f32]],
    masks: &[&[bool]],
    width: usize,
    height: usize,
    fpr_limit: f64,
) -> PixelMetrics {
    check_limit(fpr_limit);
    check_shapes("pixel_metrics", maps, masks, Some(width * height));
    let defect_pixels = masks.iter().map(|m| m.iter().filter(|&&d| d).count()).sum();
    let total: usize = masks.iter().map(|m| m.len()).sum();
    let regions = masks
        .iter()
        .map(|m| label_regions(m, width, height).1)
        .sum();
    PixelMetrics {
        pixel_auroc: pixel_auroc(maps, masks),
        aupro: aupro(maps, masks, width, height, fpr_limit),
        fpr_limit,
        regions,
        defect_pixels,
        good_pixels: total - defect_pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn diagonal_neighbours_are_one_region() {
        // x . .
        // . x .
        // . . x   (one region with 8-connectivity, three with 4)
        let m = [true, false, false, false, true, false, false, false, true];
        let (labels, n) = label_regions(&m, 3, 3);
        assert_eq!(n, 1);
        assert_eq!(labels, vec![1, 0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn regions_are_numbered_in_scan_order() {
        // . . x x     The scan meets (2, 0) and (0, 1) as if they were two regions; they join
        // x . . x     through the bottom row: one region, one label.
        // x . . x
        // x x x x
        let m = [
            false, false, true, true, //
            true, false, false, true, //
            true, false, false, true, //
            true, true, true, true,
        ];
        let (labels, n) = label_regions(&m, 4, 4);
        assert_eq!(n, 1);
        assert!(labels.iter().zip(&m).all(|(&l, &d)| (l == 1) == d));
        let m = [true, false, true, false, false, false, false, true, true];
        let (labels, n) = label_regions(&m, 3, 3);
        assert_eq!((n, labels), (3, vec![1, 0, 2, 0, 0, 0, 0, 3, 3]));
        assert_eq!(label_regions(&[], 0, 0), (vec![], 0));
    }

    #[test]
    fn hand_computed_pro_curve() {
        // One row: region A = pixels 0, 1 (size 2), region B = pixel 3, good = 2, 4, 5.
        let mask = [true, true, false, true, false, false];
        let map = [0.9f32, 0.1, 0.5, 0.8, 0.3, 0.2];
        let curve = pro_curve(&[&map], &[&mask], 6, 1).unwrap();
        let want = [
            (0.0, 0.0),
            (0.0, 0.25),       // 0.9: half of A
            (0.0, 0.75),       // 0.8: all of B
            (1.0 / 3.0, 0.75), // 0.5, 0.3, 0.2: the good pixels
            (2.0 / 3.0, 0.75),
            (1.0, 0.75),
            (1.0, 1.0), // 0.1: the rest of A
        ];
        assert_eq!(curve.len(), want.len(), "{curve:?}");
        for (g, w) in curve.iter().zip(&want) {
            assert!(close(g.0, w.0) && close(g.1, w.1), "{curve:?}");
        }
        // PRO is 0.75 from FPR 0 on, while the pixel TPR would be 2/3.
        for limit in [0.3, 0.5, 1.0] {
            let a = aupro(&[&map], &[&mask], 6, 1, limit).unwrap();
            assert!(close(a, 0.75), "{limit}: {a}");
        }
    }

    #[test]
    fn interpolates_at_the_limit_and_divides_by_it() {
        // Good pixels score 0.9, 0.2, 0.1; the defect pixel 0.5.
        let mask = [true, false, false, false];
        let map = [0.5f32, 0.9, 0.1, 0.2];
        // Curve (0,0) (1/3,0) (1/3,1) (2/3,1) (1,1): area to 0.5 is 1/6, over 0.5 = 1/3.
        let a = aupro(&[&map], &[&mask], 2, 2, 0.5).unwrap();
        assert!(close(a, 1.0 / 3.0), "{a}");
        // Up to 0.2 the curve is still 0 (interpolated on (0,0)–(1/3,0)).
        assert_eq!(aupro(&[&map], &[&mask], 2, 2, 0.2), Some(0.0));
    }

    #[test]
    fn ties_are_one_step() {
        // Everything tied: one step straight to (1, 1); the area to 0.3 is the triangle.
        let mask = [true, false, false, true];
        let map = [0.5f32; 4];
        let curve = pro_curve(&[&map], &[&mask], 2, 2).unwrap();
        assert_eq!(curve, vec![(0.0, 0.0), (1.0, 1.0)]);
        let a = aupro(&[&map], &[&mask], 2, 2, 0.3).unwrap();
        assert!(close(a, 0.15), "{a}");
    }

    #[test]
    fn undefined_cases_are_none() {
        let map = [0.1f32, 0.2, 0.3, 0.4];
        assert_eq!(aupro(&[&map], &[&[false; 4]], 2, 2, 0.3), None);
        assert_eq!(aupro(&[&map], &[&[true; 4]], 2, 2, 0.3), None);
        assert_eq!(aupro(&[], &[], 2, 2, 0.3), None);
        assert_eq!(pixel_auroc(&[&map], &[&[false; 4]]), None);
        assert_eq!(pixel_auroc(&[], &[]), None);
        let m = pixel_metrics(&[&map], &[&[false; 4]], 2, 2, 0.3);
        assert_eq!((m.pixel_auroc, m.aupro, m.regions), (None, None, 0));
        assert_eq!((m.defect_pixels, m.good_pixels), (0, 4));
    }

    #[test]
    fn nan_scores_do_not_panic() {
        let mask = [true, false, false, true];
        let map = [f32::NAN, 0.2, f32::NAN, 0.4];
        let a = aupro(&[&map], &[&mask], 2, 2, 0.3).unwrap();
        assert!((0.0..=1.0).contains(&a));
        assert!(pixel_auroc(&[&map], &[&mask]).is_some());
    }

    #[test]
    #[should_panic(expected = "aupro: the FPR limit 0 is outside (0, 1]")]
    fn zero_limit_panics() {
        let _ = aupro(&[&[0.0f32]], &[&[true]], 1, 1, 0.0);
    }

    #[test]
    #[should_panic(expected = "pro_curve: image 0 has 3 pixels, expected 4")]
    fn wrong_size_panics() {
        let _ = pro_curve(&[&[0.0f32; 3]], &[&[true; 3]], 2, 2);
    }
}
