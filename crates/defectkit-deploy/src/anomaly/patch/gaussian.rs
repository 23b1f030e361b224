//! PaDiM's patch Gaussian: for every location (i, j) of the feature grid, the class's good
//! images give N patch vectors maps[:, :, i, j] (N×C), whose mean μᵢⱼ and shrunk covariance
//! Σᵢⱼ ([`crate::stats::covariance`](mod@crate::stats::covariance): scikit-learn's
//! `LedoitWolf` by default, i.e. the 1/N maximum-likelihood covariance shrunk towards
//! tr(S)/C·I; or a fixed δ on the 1/(N−1) covariance) describe what a good patch looks like
//! there. A test patch z scores its Mahalanobis distance sqrt((z−μᵢⱼ)ᵀ Σᵢⱼ⁻¹ (z−μᵢⱼ)).
//!
//! Scoring representation: Σᵢⱼ = LLᵀ by Cholesky, and the inverse factor Wᵢⱼ = L⁻¹ is kept
//! (lower triangular, f32), so a location's scores over a batch are ‖Wᵢⱼ(z − μᵢⱼ)‖ — one
//! triangular mat-vec per patch, no solve at scoring time. Memory: h·w·C² f32 for the
//! factors (stored square; 16×16×192² = 9.4 M floats = 37.7 MB) plus h·w·C f64 for the
//! means; that is what [`ClassScorer::memory_bytes`] reports.

use ndarray::{Array2, Array3, ArrayView4};
use rayon::prelude::*;

use super::{
    check_fit_maps, check_score_maps, h5_invalid, map_max, maps_of, read_header, require_maps,
    write_attr, write_big, write_grid, GridShape, MapOptions,
};
use crate::anomaly::{
    column_means, write_mean_and_rows, AnomalyError, ClassScorer, Observations, OnnxPart,
};
use crate::stats::{covariance, Cholesky, Shrinkage};

/// One class's PaDiM statistics: a Gaussian per feature-map location.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchGaussian {
    grid: GridShape,
    opts: MapOptions,
    /// μ per location: (h·w)×C, location l = i·w + j.
    means: Array2<f64>,
    /// W = L⁻¹ per location: (h·w)×C×C, row-major, lower triangular.
    whitening: Array3<f32>,
    /// δ applied per location (h·w).
    shrinkage: Vec<f64>,
    /// Column means of the pooled embeddings seen at fit.
    centre: Vec<f64>,
    /// Images fitted on.
    rows: usize,
}

impl PatchGaussian {
    /// Fits one Gaussian per location on the class's good images' feature maps
    /// (`obs.maps`, N×C×h×w with N ≥ 2; `obs.embeddings` give the class centre). Errors when
    /// there are no maps (re-embed with `defectkit embed --maps`), a value is not finite, or
    /// a location's covariance is singular (naming the location).
    pub fn fit(
        obs: &Observations<'_>,
        shrinkage: Shrinkage,
        opts: MapOptions,
    ) -> Result<Self, AnomalyError> {
        opts.validate()?;
        let maps = require_maps(obs, "padim")?;
        let grid = check_fit_maps(&maps, obs.embeddings.nrows())?;
        let n = maps.dim().0;
        if n < 2 {
            return Err(AnomalyError::Invalid(format!(
                "padim needs at least 2 good images to estimate a covariance per location, got \
                 {n}"
            )));
        }
        let c = grid.channels;
        let fitted: Vec<(Vec<f64>, Vec<f32>, f64)> = (0..grid.locations())
            .into_par_iter()
            .map(|l| {
                let (i, j) = (l / grid.w, l % grid.w);
                let rows = location_rows(&maps, i, j);
                let at = |e: crate::stats::StatsError| {
                    AnomalyError::Invalid(format!("padim, location ({i}, {j}): {e}"))
                };
                let est = covariance(rows.view(), shrinkage).map_err(at)?;
                let w = Cholesky::new(&est.covariance, est.rows)
                    .map_err(at)?
                    .inverse_factor();
                let mut factor = vec![0.0f32; c * c];
                for r in 0..c {
                    for s in 0..=r {
                        factor[r * c + s] = w[(r, s)] as f32;
                    }
                }
                Ok((est.mean, factor, est.shrinkage))
            })
            .collect::<Vec<Result<_, AnomalyError>>>()
            .into_iter()
            .collect::<Result<_, _>>()?; // the first failing location, deterministically
        let hw = grid.locations();
        let mut means = Array2::<f64>::zeros((hw, c));
        let mut whitening = Array3::<f32>::zeros((hw, c, c));
        let mut deltas = Vec::with_capacity(hw);
        for (l, (mean, factor, delta)) in fitted.into_iter().enumerate() {
            means.row_mut(l).assign(&ndarray::Array1::from(mean));
            whitening
                .index_axis_mut(ndarray::Axis(0), l)
                .assign(&Array2::from_shape_vec((c, c), factor).expect("c×c"));
            deltas.push(delta);
        }
        Ok(Self {
            grid,
            opts,
            means,
            whitening,
            shrinkage: deltas,
            centre: column_means(obs.embeddings),
            rows: n,
        })
    }

    /// The grid it was fitted on (channels, h, w).
    pub fn grid(&self) -> GridShape {
        self.grid
    }

    /// How its maps are made (side, σ).
    pub fn map_options(&self) -> MapOptions {
        self.opts
    }

    /// The shrinkage δ applied at each location (l = i·w + j).
    pub fn shrinkage(&self) -> &[f64] {
        &self.shrinkage
    }

    /// Mahalanobis distance of every patch of `maps` (N×C×h×w, the fitted C, h, w) to its
    /// location's Gaussian: N×h×w.
    pub fn patch_scores(&self, maps: ArrayView4<'_, f32>) -> Result<Array3<f32>, AnomalyError> {
        check_score_maps(&maps, self.grid)?;
        let (n, c) = (maps.dim().0, self.grid.channels);
        let per_location: Vec<Vec<f32>> = (0..self.grid.locations())
            .into_par_iter()
            .map(|l| {
                let (i, j) = (l / self.grid.w, l % self.grid.w);
                let mean = self.means.row(l);
                let w = self.whitening.index_axis(ndarray::Axis(0), l);
                let w = w.as_slice().expect("standard layout");
                let mut centred = vec![0.0f64; c];
                (0..n)
                    .map(|img| {
                        for (ch, v) in centred.iter_mut().enumerate() {
                            *v = maps[[img, ch, i, j]] as f64 - mean[ch];
                        }
                        let mut q = 0.0f64;
                        for r in 0..c {
                            let y = lower_dot(&w[r * c..r * c + r + 1], &centred[..r + 1]);
                            q += y * y;
                        }
                        q.sqrt() as f32
                    })
                    .collect()
            })
            .collect();
        let mut out = Array3::<f32>::zeros((n, self.grid.h, self.grid.w));
        for (l, scores) in per_location.iter().enumerate() {
            let (i, j) = (l / self.grid.w, l % self.grid.w);
            for (img, s) in scores.iter().enumerate() {
                out[[img, i, j]] = *s;
            }
        }
        Ok(out)
    }

    /// Reads what [`ClassScorer::save`] wrote, validating every shape against the stored
    /// grid and every value for finiteness.
    pub fn load(group: &hdf5::Group) -> Result<Self, AnomalyError> {
        let (grid, opts, rows, centre) = read_header(group, 2)?;
        let (hw, c) = (grid.locations(), grid.channels);
        let means = group
            .dataset("patch_means")
            .and_then(|d| d.read_2d::<f64>())
            .map_err(h5_invalid("patch_means"))?;
        if means.dim() != (hw, c) {
            return Err(AnomalyError::Invalid(format!(
                "dataset \"patch_means\" is {:?}; the grid {grid} needs ({hw}, {c})",
                means.dim()
            )));
        }
        let whitening = group
            .dataset("whitening")
            .and_then(|d| d.read::<f32, ndarray::Ix3>())
            .map_err(h5_invalid("whitening"))?;
        if whitening.dim() != (hw, c, c) {
            return Err(AnomalyError::Invalid(format!(
                "dataset \"whitening\" is {:?}; the grid {grid} needs ({hw}, {c}, {c})",
                whitening.dim()
            )));
        }
        let shrinkage = group
            .dataset("shrinkage")
            .and_then(|d| d.read_1d::<f64>())
            .map_err(h5_invalid("shrinkage"))?
            .to_vec();
        if shrinkage.len() != hw {
            return Err(AnomalyError::Invalid(format!(
                "dataset \"shrinkage\" has {} values; the grid {grid} has {hw} locations",
                shrinkage.len()
            )));
        }
        if means.iter().any(|v| !v.is_finite())
            || whitening.iter().any(|v| !v.is_finite())
            || shrinkage.iter().any(|v| !(0.0..=1.0).contains(v))
        {
            return Err(AnomalyError::Invalid(
                "padim statistics with non-finite values (or a shrinkage outside [0, 1])".into(),
            ));
        }
        for (l, w) in whitening.outer_iter().enumerate() {
            let bad = (0..c).any(|r| w[[r, r]] <= 0.0 || (r + 1..c).any(|s| w[[r, s]] != 0.0));
            if bad {
                return Err(AnomalyError::Invalid(format!(
                    "dataset \"whitening\", location {l}: not an inverse Cholesky factor (lower \
                     triangular with a positive diagonal)"
                )));
            }
        }
        Ok(Self {
            grid,
            opts,
            means,
            whitening,
            shrinkage,
            centre,
            rows,
        })
    }
}

impl PatchGaussian {
    /// The anomaly maps of `obs` (side × side per image).
    fn maps(&self, obs: &Observations<'_>) -> Result<Vec<Vec<f32>>, AnomalyError> {
        let scores = self.patch_scores(require_maps(obs, "padim")?)?;
        Ok(maps_of(scores.view(), &self.opts))
    }
}

/// The N×C rows maps[:, :, i, j].
fn location_rows(maps: &ArrayView4<'_, f32>, i: usize, j: usize) -> Array2<f32> {
    let (n, c, _, _) = maps.dim();
    Array2::from_shape_fn((n, c), |(img, ch)| maps[[img, ch, i, j]])
}

/// Σ wₖ·dₖ (f32 factor, f64 centred patch) in 4 independent f64 lanes.
fn lower_dot(w: &[f32], d: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (cw, cd) = (w.chunks_exact(4), d.chunks_exact(4));
    let tail: f64 = cw
        .remainder()
        .iter()
        .zip(cd.remainder())
        .map(|(a, b)| *a as f64 * b)
        .sum();
    for (a, b) in cw.zip(cd) {
        for k in 0..4 {
            acc[k] += a[k] as f64 * b[k];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

impl ClassScorer for PatchGaussian {
    /// The maximum of each image's anomaly map.
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        Ok(self.maps(obs)?.iter().map(|m| map_max(m) as f64).collect())
    }

    fn maps_and_scores(
        &self,
        obs: &Observations<'_>,
    ) -> Option<Result<crate::anomaly::MapsAndScores, AnomalyError>> {
        Some(self.maps(obs).map(|maps| {
            let scores = maps.iter().map(|m| map_max(m) as f64).collect();
            (maps, scores)
        }))
    }

    fn anomaly_maps(&self, obs: &Observations<'_>) -> Option<Result<Vec<Vec<f32>>, AnomalyError>> {
        Some(self.maps(obs))
    }

    fn centre(&self) -> &[f64] {
        &self.centre
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        write_grid(group, self.grid, &self.opts)?;
        write_mean_and_rows(group, &self.centre, self.rows)?;
        group
            .new_dataset_builder()
            .with_data(&self.means)
            .create("patch_means")?;
        write_big(group, "whitening", self.whitening.view())?;
        group
            .new_dataset_builder()
            .with_data(&ndarray::Array1::from(self.shrinkage.clone()))
            .create("shrinkage")?;
        write_attr(group, "locations", self.grid.locations() as u64)
    }

    fn summary(&self) -> serde_json::Value {
        let (min, max) = self
            .shrinkage
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| {
                (lo.min(d), hi.max(d))
            });
        let mean = self.shrinkage.iter().sum::<f64>() / self.shrinkage.len().max(1) as f64;
        serde_json::json!({
            "n_fit": self.rows,
            "locations": self.grid.locations(),
            "grid": [self.grid.h, self.grid.w],
            "channels": self.grid.channels,
            "side": self.opts.side,
            "sigma": self.opts.sigma,
            "shrinkage": { "min": min, "mean": mean, "max": max },
            "memory_bytes": self.memory_bytes(),
        })
    }

    fn onnx_part(&self) -> OnnxPart {
        OnnxPart::Unsupported(
            "padim scores every feature-map location against its own Gaussian and smooths the \
             upsampled map; the scored graph holds one whole-image head, so score with \
             `defectkit score` on the model and detector.json instead"
                .into(),
        )
    }

    fn memory_bytes(&self) -> usize {
        self.whitening.len() * std::mem::size_of::<f32>()
            + self.means.len() * std::mem::size_of::<f64>()
            + self.shrinkage.len() * std::mem::size_of::<f64>()
    }
}
