//! Patch-level detectors on the model's `features` maps (`embed --maps`): N×C×h×w conv maps
//! at stride 8 (16×16 for a 128-px input), each location (i, j) a C-dim "patch" vector
//! describing one receptive field of the image. Both detectors score every patch against
//! the class's good patches, upsample the h×w patch scores to the model input's side × side
//! (PyTorch's bilinear, `align_corners=False`), smooth them with a Gaussian of σ pixels
//! (SciPy's `gaussian_filter`, `mode="reflect"`) and take the map's maximum as the image
//! score — the maps localise the defect, the maximum ranks the images.
//!
//! | detector | patch score of z at (i, j) | statistics kept | file |
//! | --- | --- | --- | --- |
//! | PaDiM ([`gaussian::PatchGaussian`]) | Mahalanobis distance to the Gaussian of location (i, j) | h·w means + h·w C×C inverse Cholesky factors | [`gaussian`] |
//! | PatchCore ([`memory_bank::PatchMemoryBank`]) | L2 distance to the nearest patch of a coreset of all good patches | M×C bank, M = ⌈ratio·N·h·w⌉ | [`memory_bank`], [`coreset`] |
//!
//! [`map`] holds the map arithmetic (upsampling, blur); this module the helpers both
//! detectors share: the options of the map, reading and validating `Observations.maps`,
//! flattening maps into patch rows, and the HDF5 attributes.

pub mod coreset;
pub mod gaussian;
pub mod map;
pub mod memory_bank;

use ndarray::{Array2, ArrayView3, ArrayView4};
use rayon::prelude::*;

use super::{AnomalyError, Observations};

/// How patch scores become an anomaly map: upsampled to `side` × `side` pixels, then
/// smoothed by a Gaussian of `sigma` pixels (0 = no smoothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapOptions {
    /// The model input's side in pixels (the maps are side × side).
    pub side: usize,
    /// σ of the Gaussian smoothing, in map pixels (`detector.sigma`; 0 = none).
    pub sigma: f64,
}

impl MapOptions {
    /// Refuses a side of 0 or a negative / non-finite σ.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        if self.side == 0 {
            return Err(AnomalyError::Invalid(
                "the anomaly map's side must be at least 1 pixel".into(),
            ));
        }
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(AnomalyError::Invalid(format!(
                "the anomaly map's smoothing σ = {}: expected a finite value ≥ 0 pixels",
                self.sigma
            )));
        }
        Ok(())
    }
}

/// The shape of one image's feature maps: C channels on an h×w grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridShape {
    /// Channels C (the patch vectors' dimension).
    pub channels: usize,
    /// Grid height h.
    pub h: usize,
    /// Grid width w.
    pub w: usize,
}

impl GridShape {
    /// Locations h·w.
    pub fn locations(&self) -> usize {
        self.h * self.w
    }

    fn of(maps: &ArrayView4<'_, f32>) -> Self {
        let (_, channels, h, w) = maps.dim();
        Self { channels, h, w }
    }
}

impl std::fmt::Display for GridShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "C×h×w = {}×{}×{}", self.channels, self.h, self.w)
    }
}

/// The feature maps of `obs`, or the error telling the user to re-embed with maps.
pub(crate) fn require_maps<'a>(
    obs: &Observations<'a>,
    detector: &str,
) -> Result<ArrayView4<'a, f32>, AnomalyError> {
    obs.maps.ok_or_else(|| {
        AnomalyError::Invalid(format!(
            "the {detector} detector scores feature maps, and the embeddings have no feature \
             maps: re-embed with `defectkit embed --maps`"
        ))
    })
}

/// Checks maps for fitting: at least one image, a non-empty grid, as many images as
/// embedding rows, every value finite.
pub(crate) fn check_fit_maps(
    maps: &ArrayView4<'_, f32>,
    embedding_rows: usize,
) -> Result<GridShape, AnomalyError> {
    let n = maps.dim().0;
    let shape = GridShape::of(maps);
    if n == 0 {
        return Err(AnomalyError::Invalid(
            "no images to fit on (0 feature maps)".into(),
        ));
    }
    if shape.channels == 0 || shape.h == 0 || shape.w == 0 {
        return Err(AnomalyError::Invalid(format!(
            "feature maps of {shape}: every dimension must be at least 1"
        )));
    }
    if embedding_rows != n {
        return Err(AnomalyError::Invalid(format!(
            "{n} feature maps but {embedding_rows} embeddings: the two must describe the same \
             images"
        )));
    }
    check_finite(maps)?;
    Ok(shape)
}

/// Checks maps for scoring against the fitted grid (channels, h, w) and for finite values.
pub(crate) fn check_score_maps(
    maps: &ArrayView4<'_, f32>,
    fitted: GridShape,
) -> Result<(), AnomalyError> {
    let got = GridShape::of(maps);
    if got != fitted {
        return Err(AnomalyError::Invalid(format!(
            "feature maps of {got}; the detector was fitted on {fitted}"
        )));
    }
    check_finite(maps)
}

/// The first non-finite value of `maps`, named by image, channel and location.
fn check_finite(maps: &ArrayView4<'_, f32>) -> Result<(), AnomalyError> {
    match maps.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((n, c, i, j), v)) => Err(AnomalyError::Invalid(format!(
            "feature map value {v} (not finite) in image {n}, channel {c}, location ({i}, {j}): \
             the model or the embeddings file is broken"
        ))),
    }
}

/// Every image's patch vectors as rows of a (N·h·w)×C matrix, row (n·h + i)·w + j holding
/// maps[n, :, i, j].
pub(crate) fn patch_rows(maps: &ArrayView4<'_, f32>) -> Array2<f32> {
    let (n, c, h, w) = maps.dim();
    let mut rows = Array2::<f32>::zeros((n * h * w, c));
    for (r, mut row) in rows.rows_mut().into_iter().enumerate() {
        let (img, loc) = (r / (h * w), r % (h * w));
        let (i, j) = (loc / w, loc % w);
        for (ch, v) in row.iter_mut().enumerate() {
            *v = maps[[img, ch, i, j]];
        }
    }
    rows
}

/// One anomaly map per image (side × side, row-major) from N×h×w patch scores.
pub(crate) fn maps_of(patch_scores: ArrayView3<'_, f32>, opts: &MapOptions) -> Vec<Vec<f32>> {
    let (n, h, w) = patch_scores.dim();
    (0..n)
        .into_par_iter()
        .map(|img| {
            let scores: Vec<f32> = patch_scores
                .index_axis(ndarray::Axis(0), img)
                .iter()
                .copied()
                .collect();
            map::anomaly_map(&scores, h, w, opts)
        })
        .collect()
}

/// The maximum of a map (−∞ for an empty one).
pub(crate) fn map_max(map: &[f32]) -> f32 {
    map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Σ (aᵢ − bᵢ)² accumulated in f64 in 8 independent lanes (so the compiler vectorises it;
/// the summation order is fixed, hence deterministic).
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = x[l] as f64 - y[l] as f64;
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f64;
    for (x, y) in ra.iter().zip(rb) {
        let d = *x as f64 - *y as f64;
        tail += d * d;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Query rows per block of the nearest-row search (its Gram block is 256×M f64).
const NEAREST_BLOCK: usize = 256;

/// For every row of `queries` (Q×c, row-major), its nearest row of `refs` (M×c, M ≥ 1):
/// (exact squared distance, row), the lowest row on ties.
///
/// Exact, but fast: squared distances are first bounded through the Gram matrix
/// ‖q‖² + ‖b‖² − 2·q·b (one f64 matrix product per block of queries, faer's SIMD kernels),
/// whose rounding error is at most e = γ·(‖q‖ + ‖b‖)² (γ = 2(c+4)·ε, twice the textbook
/// bound (c+3)·u/(1−(c+3)u) of a c-term dot product plus the three additions); every row
/// whose lower bound d̃ − e does not exceed the smallest upper bound d̃ + e is then measured
/// again exactly ([`squared_distance`]) and the smallest of those wins. Rows outside that set
/// are provably farther, so the result equals a brute-force search.
pub(crate) fn nearest_rows(queries: &[f32], refs: &[f32], c: usize) -> Vec<(f64, usize)> {
    use faer::{Accum, Mat, MatRef, Par};
    let m = refs.len() / c.max(1);
    if c == 0 || m == 0 {
        return vec![(0.0, 0); queries.len() / c.max(1)];
    }
    let refs64: Vec<f64> = refs.iter().map(|&v| v as f64).collect();
    let norms = |rows: &[f64]| -> Vec<f64> {
        rows.chunks_exact(c)
            .map(|r| r.iter().map(|v| v * v).sum::<f64>())
            .collect()
    };
    let ref_sq = norms(&refs64);
    let ref_norm: Vec<f64> = ref_sq.iter().map(|v| v.sqrt()).collect();
    let r = MatRef::from_row_major_slice(&refs64, m, c);
    let gamma = 2.0 * (c as f64 + 4.0) * f64::EPSILON;
    queries
        .par_chunks(NEAREST_BLOCK * c)
        .flat_map_iter(|block| {
            let b = block.len() / c;
            let q64: Vec<f64> = block.iter().map(|&v| v as f64).collect();
            let q = MatRef::from_row_major_slice(&q64, b, c);
            let mut gram = Mat::<f64>::zeros(b, m);
            faer::linalg::matmul::matmul(
                gram.as_mut(),
                Accum::Replace,
                q,
                r.transpose(),
                1.0,
                Par::Seq,
            );
            let q_sq = norms(&q64);
            (0..b)
                .map(|i| {
                    let (qs, qn) = (q_sq[i], q_sq[i].sqrt());
                    let approx = |k: usize| qs + ref_sq[k] - 2.0 * gram[(i, k)];
                    let err = |k: usize| gamma * (qn + ref_norm[k]) * (qn + ref_norm[k]);
                    let upper = (0..m)
                        .map(|k| approx(k) + err(k))
                        .fold(f64::INFINITY, f64::min);
                    let row = &block[i * c..(i + 1) * c];
                    let mut best = (f64::INFINITY, 0usize);
                    for k in 0..m {
                        if approx(k) - err(k) <= upper {
                            let d = squared_distance(row, &refs[k * c..(k + 1) * c]);
                            if d < best.0 {
                                best = (d, k);
                            }
                        }
                    }
                    best
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Writes a scalar attribute.
pub(crate) fn write_attr<T: hdf5::H5Type>(
    group: &hdf5::Group,
    name: &str,
    value: T,
) -> hdf5::Result<()> {
    group.new_attr::<T>().create(name)?.write_scalar(&value)
}

/// Reads a scalar attribute, naming it when it is missing or of another type.
pub(crate) fn read_attr<T: hdf5::H5Type>(
    group: &hdf5::Group,
    name: &str,
) -> Result<T, AnomalyError> {
    group
        .attr(name)
        .and_then(|a| a.read_scalar::<T>())
        .map_err(|e| AnomalyError::Invalid(format!("attribute {name:?}: {e}")))
}

/// Reads a u64 attribute that must be at least `min`, as a usize.
pub(crate) fn read_count(group: &hdf5::Group, name: &str, min: u64) -> Result<usize, AnomalyError> {
    let v = read_attr::<u64>(group, name)?;
    if v < min || v > u32::MAX as u64 {
        return Err(AnomalyError::Invalid(format!(
            "attribute {name:?} = {v}: expected a count in [{min}, {}]",
            u32::MAX
        )));
    }
    Ok(v as usize)
}

/// Reads and validates the map options and the grid (attributes `side`, `sigma`,
/// `channels`, `h`, `w`).
pub(crate) fn read_grid(group: &hdf5::Group) -> Result<(GridShape, MapOptions), AnomalyError> {
    let opts = MapOptions {
        side: read_count(group, "side", 1)?,
        sigma: read_attr::<f64>(group, "sigma")?,
    };
    opts.validate()?;
    let grid = GridShape {
        channels: read_count(group, "channels", 1)?,
        h: read_count(group, "h", 1)?,
        w: read_count(group, "w", 1)?,
    };
    Ok((grid, opts))
}

/// Writes what [`read_grid`] reads.
pub(crate) fn write_grid(
    group: &hdf5::Group,
    grid: GridShape,
    opts: &MapOptions,
) -> hdf5::Result<()> {
    write_attr(group, "side", opts.side as u64)?;
    write_attr(group, "sigma", opts.sigma)?;
    write_attr(group, "channels", grid.channels as u64)?;
    write_attr(group, "h", grid.h as u64)?;
    write_attr(group, "w", grid.w as u64)
}

/// Writes a large f32 array chunked (`chunk` elements of the leading axis per chunk) and
/// deflate-compressed.
pub(crate) fn write_big<'a, D: ndarray::Dimension>(
    group: &hdf5::Group,
    name: &str,
    data: ndarray::ArrayView<'a, f32, D>,
) -> hdf5::Result<()> {
    let shape = data.shape().to_vec();
    let builder = group.new_dataset_builder().with_data(&data);
    if shape.iter().all(|&s| s > 0) {
        // Chunks of about 1 MiB along the leading axis.
        let inner: usize = shape[1..].iter().product::<usize>().max(1);
        let lead = (262_144 / inner).clamp(1, shape[0]);
        let mut chunk = shape.clone();
        chunk[0] = lead;
        builder.chunk(chunk).deflate(4).create(name)?;
    } else {
        builder.create(name)?;
    }
    Ok(())
}

/// Maps an HDF5 error while loading to [`AnomalyError::Invalid`], naming the dataset.
pub(crate) fn h5_invalid(name: &str) -> impl Fn(hdf5::Error) -> AnomalyError + '_ {
    move |e| AnomalyError::Invalid(format!("dataset {name:?}: {e}"))
}

/// Checks that a class centre read back from a file is non-empty and finite.
/// Reads what both patch scorers store first: the grid and map options, the fitted image
/// count (at least `min_rows`) and the class centre, checked against each other.
pub(crate) fn read_header(
    group: &hdf5::Group,
    min_rows: u64,
) -> Result<(GridShape, MapOptions, usize, Vec<f64>), AnomalyError> {
    let (grid, opts) = read_grid(group)?;
    let rows = read_count(group, "rows", min_rows)?;
    let (centre, stored_rows) = crate::anomaly::read_mean_and_rows(group)
        .map_err(|e| AnomalyError::Invalid(e.to_string()))?;
    check_centre(&centre)?;
    if stored_rows != rows {
        return Err(AnomalyError::Invalid(format!(
            "attribute \"rows\" = {stored_rows} differs from the {rows} recorded"
        )));
    }
    Ok((grid, opts, rows, centre))
}

pub(crate) fn check_centre(centre: &[f64]) -> Result<(), AnomalyError> {
    if centre.is_empty() || centre.iter().any(|v| !v.is_finite()) {
        return Err(AnomalyError::Invalid(
            "the stored class centre is empty or not finite".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn patch_rows_are_image_then_row_then_column() {
        let maps = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, i, j)| {
            (n * 1000 + c * 100 + i * 10 + j) as f32
        });
        let rows = patch_rows(&maps.view());
        assert_eq!(rows.dim(), (8, 3));
        assert_eq!(rows.row(0).to_vec(), vec![0.0, 100.0, 200.0]);
        assert_eq!(rows.row(3).to_vec(), vec![11.0, 111.0, 211.0]);
        assert_eq!(rows.row(6).to_vec(), vec![1010.0, 1110.0, 1210.0]);
    }

    #[test]
    fn squared_distance_is_the_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        assert!((squared_distance(&a, &b) - plain).abs() < 1e-12);
        assert_eq!(squared_distance(&a, &a), 0.0);
    }

    #[test]
    fn nearest_rows_equal_brute_force_also_under_cancellation_and_ties() {
        // Far from the origin (‖x‖² ≫ distances: the Gram form cancels entirely), values a few
        // f32 ulps apart (many exact and near ties), and duplicates (the lowest row wins).
        let c = 7;
        let mut rng = defectkit_core::rng::SplitMix64(5);
        let mut refs: Vec<f32> = (0..40 * c)
            .map(|_| (1000.0 + 2e-4 * rng.gauss()) as f32)
            .collect();
        let dup: Vec<f32> = refs[3 * c..4 * c].to_vec();
        refs[17 * c..18 * c].copy_from_slice(&dup);
        let mut queries: Vec<f32> = (0..300 * c)
            .map(|_| (1000.0 + 2e-4 * rng.gauss()) as f32)
            .collect();
        queries[..c].copy_from_slice(&dup);
        let got = nearest_rows(&queries, &refs, c);
        assert_eq!(got.len(), 300);
        for (q, (d, k)) in queries.chunks_exact(c).zip(&got) {
            let want = refs
                .chunks_exact(c)
                .enumerate()
                .map(|(k, r)| (squared_distance(q, r), k))
                .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
            assert_eq!((*d, *k), want);
        }
        assert_eq!(got[0], (0.0, 3));
    }

    #[test]
    fn bad_maps_are_named() {
        let mut maps = Array4::<f32>::zeros((2, 3, 2, 2));
        maps[[1, 2, 0, 1]] = f32::NAN;
        let err = check_fit_maps(&maps.view(), 2).unwrap_err().to_string();
        assert!(err.contains("image 1, channel 2, location (0, 1)"), "{err}");
        let err = check_fit_maps(&maps.view(), 3).unwrap_err().to_string();
        assert!(err.contains("3 embeddings"), "{err}");
        let fitted = GridShape {
            channels: 3,
            h: 2,
            w: 3,
        };
        let err = check_score_maps(&maps.view(), fitted)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3×2×2") && err.contains("fitted on C×h×w = 3×2×3"),
            "{err}"
        );
    }
}
