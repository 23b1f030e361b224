//! PatchCore's memory bank: every patch vector (C-dim, one per location of every good image
//! of the class: N·h·w of them) is a sample of "good"; a greedy k-center coreset
//! ([`super::coreset`]) keeps ⌈ratio·N·h·w⌉ of them as the bank (M×C f32). A test patch
//! scores its exact L2 distance (full dimension, f64) to the nearest bank patch, found by a
//! Gram-matrix search whose close calls are measured again exactly. Memory: M·C f32 (for
//! 48 images of 16×16 patches of 192 channels at ratio 0.1: 1229 × 192 = 0.9 MB).
//!
//! Optional reweighting, as anomalib's `PatchcoreModel.compute_anomaly_score` does it:
//! take the image's patch with the largest score s*, its nearest bank patch m*, the
//! b = min(9, M) bank patches nearest to m* (m* itself first, as anomalib's
//! `nearest_neighbors(m*, b)` returns them), the distances d₁…d_b of the test patch to
//! those; weight = 1 − softmax(d)₁. An image whose worst patch sits in a dense part of the
//! bank keeps less of its score. Here the weight multiplies the maximum of the image's
//! (upsampled, smoothed) anomaly map; anomalib multiplies s* itself.

use ndarray::{Array2, Array3, ArrayView2, ArrayView4};
use rayon::prelude::*;

use super::coreset::{greedy_coreset, PATCHCORE_PROJECTION};
use super::{
    check_fit_maps, check_score_maps, h5_invalid, map_max, maps_of, nearest_rows, patch_rows,
    read_attr, read_header, require_maps, squared_distance, write_attr, write_big, write_grid,
    GridShape, MapOptions,
};
use crate::anomaly::{
    column_means, write_mean_and_rows, AnomalyError, ClassScorer, Observations, OnnxPart,
};

/// Bank patches whose softmax gives the reweighting (anomalib's `num_neighbors`).
pub const REWEIGHT_NEIGHBOURS: usize = 9;

/// One class's PatchCore statistics: the coreset of its good patches.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchMemoryBank {
    grid: GridShape,
    opts: MapOptions,
    /// The bank: M×C.
    bank: Array2<f32>,
    /// Each bank row's index among the fit patches ((n·h + i)·w + j).
    indices: Vec<usize>,
    /// Every fit patch lies within this distance of a bank patch.
    radius: f32,
    ratio: f64,
    seed: u64,
    reweight: bool,
    /// Column means of the pooled embeddings seen at fit.
    centre: Vec<f64>,
    /// Images fitted on.
    rows: usize,
}

/// Each patch's distance to its nearest bank patch and that patch's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    /// N×h×w distances.
    pub distance: Array3<f32>,
    /// N×h×w bank rows.
    pub index: Array3<usize>,
}

impl PatchMemoryBank {
    /// Builds the bank from the class's good images' feature maps (`obs.maps`, N×C×h×w):
    /// a greedy coreset of ⌈ratio·N·h·w⌉ (≥ 1) of the N·h·w patches, selected on a seeded
    /// 128-dim Gaussian projection when C > 128 ([`PATCHCORE_PROJECTION`]), the first pick
    /// seeded by `seed`. `reweight` turns on anomalib's image-score reweighting.
    pub fn fit(
        obs: &Observations<'_>,
        ratio: f64,
        seed: u64,
        reweight: bool,
        opts: MapOptions,
    ) -> Result<Self, AnomalyError> {
        opts.validate()?;
        check_ratio(ratio)?;
        let maps = require_maps(obs, "patchcore")?;
        let grid = check_fit_maps(&maps, obs.embeddings.nrows())?;
        let patches = patch_rows(&maps);
        let p = patches.nrows();
        let n_select = ((ratio * p as f64).ceil() as usize).clamp(1, p);
        let coreset = greedy_coreset(patches.view(), n_select, seed, Some(PATCHCORE_PROJECTION));
        let bank = patches.select(ndarray::Axis(0), &coreset.indices);
        Ok(Self {
            grid,
            opts,
            bank,
            indices: coreset.indices,
            radius: coreset.radius,
            ratio,
            seed,
            reweight,
            centre: column_means(obs.embeddings),
            rows: maps.dim().0,
        })
    }

    /// The bank (M×C), rows in the order the coreset picked them.
    pub fn bank(&self) -> ArrayView2<'_, f32> {
        self.bank.view()
    }

    /// Each bank row's index among the fit patches, (n·h + i)·w + j for image n and
    /// location (i, j).
    pub fn bank_indices(&self) -> &[usize] {
        &self.indices
    }

    /// The coverage radius: every fit patch lies within it of a bank patch.
    pub fn radius(&self) -> f32 {
        self.radius
    }

    /// Whether image scores are reweighted.
    pub fn reweight(&self) -> bool {
        self.reweight
    }

    /// The grid it was fitted on (channels, h, w).
    pub fn grid(&self) -> GridShape {
        self.grid
    }

    /// How its maps are made (side, σ).
    pub fn map_options(&self) -> MapOptions {
        self.opts
    }

    /// Each patch of `maps` (N×C×h×w, the fitted C, h, w): the exact distance to its
    /// nearest bank patch and that patch's row (the lowest row on ties).
    pub fn nearest(&self, maps: ArrayView4<'_, f32>) -> Result<Nearest, AnomalyError> {
        check_score_maps(&maps, self.grid)?;
        let queries = patch_rows(&maps);
        let found = nearest_rows(
            queries.as_slice().expect("standard layout"),
            self.bank.as_slice().expect("standard layout"),
            self.grid.channels,
        );
        let (n, h, w) = (maps.dim().0, self.grid.h, self.grid.w);
        Ok(Nearest {
            distance: Array3::from_shape_fn((n, h, w), |(a, i, j)| {
                found[(a * h + i) * w + j].0.sqrt() as f32
            }),
            index: Array3::from_shape_fn((n, h, w), |(a, i, j)| found[(a * h + i) * w + j].1),
        })
    }

    /// The distance of every patch of `maps` to its nearest bank patch: N×h×w.
    pub fn patch_scores(&self, maps: ArrayView4<'_, f32>) -> Result<Array3<f32>, AnomalyError> {
        Ok(self.nearest(maps)?.distance)
    }

    /// anomalib's reweighting factor of each image (see the module docs): 1 − softmax(d)₁
    /// over the distances from the image's highest-scoring patch to the b = min(9, M) bank
    /// patches nearest its nearest bank patch.
    pub fn reweight_factors(&self, maps: ArrayView4<'_, f32>) -> Result<Vec<f64>, AnomalyError> {
        let nearest = self.nearest(maps)?;
        Ok(self.factors(&nearest, maps))
    }

    /// [`Self::reweight_factors`] from the patches' nearest bank rows (`maps` checked).
    fn factors(&self, nearest: &Nearest, maps: ArrayView4<'_, f32>) -> Vec<f64> {
        let (n, h, w) = nearest.distance.dim();
        let c = self.grid.channels;
        let bank = self.bank.as_slice().expect("standard layout");
        let b = REWEIGHT_NEIGHBOURS.min(self.bank.nrows());
        (0..n)
            .into_par_iter()
            .map(|img| {
                // The highest patch score (the first on ties), its patch and nearest bank row.
                let (mut top, mut at) = (f32::NEG_INFINITY, (0, 0));
                for i in 0..h {
                    for j in 0..w {
                        if nearest.distance[[img, i, j]] > top {
                            (top, at) = (nearest.distance[[img, i, j]], (i, j));
                        }
                    }
                }
                let m_star = nearest.index[[img, at.0, at.1]];
                let patch: Vec<f32> = (0..c).map(|ch| maps[[img, ch, at.0, at.1]]).collect();
                // The b bank rows nearest m* (m* itself at distance 0 first).
                let anchor = &bank[m_star * c..(m_star + 1) * c];
                let mut order: Vec<(f64, usize)> = bank
                    .chunks_exact(c)
                    .enumerate()
                    .map(|(m, row)| (squared_distance(anchor, row), m))
                    .collect();
                order.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                let d: Vec<f64> = order[..b]
                    .iter()
                    .map(|&(_, m)| squared_distance(&patch, &bank[m * c..(m + 1) * c]).sqrt())
                    .collect();
                let top_d = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = d.iter().map(|v| (v - top_d).exp()).sum();
                1.0 - (d[0] - top_d).exp() / sum
            })
            .collect()
    }

    /// Maps and image scores of `obs` (maximum of each map, times the reweighting factor
    /// when on).
    fn maps_with_scores(
        &self,
        obs: &Observations<'_>,
    ) -> Result<(Vec<Vec<f32>>, Vec<f64>), AnomalyError> {
        let maps = require_maps(obs, "patchcore")?;
        let nearest = self.nearest(maps)?;
        let out = maps_of(nearest.distance.view(), &self.opts);
        let mut image: Vec<f64> = out.iter().map(|m| map_max(m) as f64).collect();
        if self.reweight {
            for (s, f) in image.iter_mut().zip(self.factors(&nearest, maps)) {
                *s *= f;
            }
        }
        Ok((out, image))
    }

    /// Reads what [`ClassScorer::save`] wrote, validating the bank's shape against the
    /// stored grid and every value for finiteness.
    pub fn load(group: &hdf5::Group) -> Result<Self, AnomalyError> {
        let (grid, opts, rows, centre) = read_header(group, 1)?;
        let ratio = read_attr::<f64>(group, "ratio")?;
        check_ratio(ratio)?;
        let seed = read_attr::<u64>(group, "seed")?;
        let radius = read_attr::<f32>(group, "radius")?;
        if !(radius.is_finite() && radius >= 0.0) {
            return Err(AnomalyError::Invalid(format!(
                "attribute \"radius\" = {radius}: expected a finite distance ≥ 0"
            )));
        }
        let reweight = match read_attr::<u8>(group, "reweight")? {
            0 => false,
            1 => true,
            v => {
                return Err(AnomalyError::Invalid(format!(
                    "attribute \"reweight\" = {v}: expected 0 or 1"
                )))
            }
        };
        let bank = group
            .dataset("bank")
            .and_then(|d| d.read_2d::<f32>())
            .map_err(h5_invalid("bank"))?;
        let patches = rows * grid.locations();
        let m = bank.nrows();
        if bank.ncols() != grid.channels || m == 0 || m > patches {
            return Err(AnomalyError::Invalid(format!(
                "dataset \"bank\" is {:?}; the grid {grid} of {rows} images needs 1 to \
                 {patches} rows of {} channels",
                bank.dim(),
                grid.channels
            )));
        }
        if bank.iter().any(|v| !v.is_finite()) {
            return Err(AnomalyError::Invalid(
                "dataset \"bank\" holds non-finite values".into(),
            ));
        }
        let indices: Vec<usize> = group
            .dataset("bank_indices")
            .and_then(|d| d.read_1d::<u64>())
            .map_err(h5_invalid("bank_indices"))?
            .iter()
            .map(|&i| i as usize)
            .collect();
        if indices.len() != m || indices.iter().any(|&i| i >= patches) {
            return Err(AnomalyError::Invalid(format!(
                "dataset \"bank_indices\" must hold {m} indices below {patches}"
            )));
        }
        Ok(Self {
            grid,
            opts,
            bank,
            indices,
            radius,
            ratio,
            seed,
            reweight,
            centre,
            rows,
        })
    }
}

fn check_ratio(ratio: f64) -> Result<(), AnomalyError> {
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(AnomalyError::Invalid(format!(
            "patchcore coreset ratio {ratio}: expected a fraction in (0, 1]"
        )))
    }
}

impl ClassScorer for PatchMemoryBank {
    /// The maximum of each image's anomaly map (times the reweighting factor when on).
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        Ok(self.maps_with_scores(obs)?.1)
    }

    fn maps_and_scores(
        &self,
        obs: &Observations<'_>,
    ) -> Option<Result<crate::anomaly::MapsAndScores, AnomalyError>> {
        Some(self.maps_with_scores(obs))
    }

    fn anomaly_maps(&self, obs: &Observations<'_>) -> Option<Result<Vec<Vec<f32>>, AnomalyError>> {
        Some(
            require_maps(obs, "patchcore")
                .and_then(|maps| self.patch_scores(maps))
                .map(|scores| maps_of(scores.view(), &self.opts)),
        )
    }

    fn centre(&self) -> &[f64] {
        &self.centre
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        write_grid(group, self.grid, &self.opts)?;
        write_mean_and_rows(group, &self.centre, self.rows)?;
        write_big(group, "bank", self.bank.view())?;
        let indices: ndarray::Array1<u64> = self.indices.iter().map(|&i| i as u64).collect();
        group
            .new_dataset_builder()
            .with_data(&indices)
            .create("bank_indices")?;
        write_attr(group, "ratio", self.ratio)?;
        write_attr(group, "seed", self.seed)?;
        write_attr(group, "radius", self.radius)?;
        write_attr(group, "reweight", self.reweight as u8)
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "n_fit": self.rows,
            "locations": self.grid.locations(),
            "grid": [self.grid.h, self.grid.w],
            "channels": self.grid.channels,
            "side": self.opts.side,
            "sigma": self.opts.sigma,
            "patches": self.rows * self.grid.locations(),
            "bank": self.bank.nrows(),
            "coreset_ratio": self.ratio,
            "coreset_seed": self.seed,
            "coverage_radius": self.radius,
            "reweight": self.reweight,
            "memory_bytes": self.memory_bytes(),
        })
    }

    fn onnx_part(&self) -> OnnxPart {
        OnnxPart::Unsupported(
            "patchcore scores every feature-map patch by its nearest neighbour in a memory \
             bank and smooths the upsampled map; the scored graph holds one whole-image head, \
             so score with `defectkit score` on the model and detector.json instead"
                .into(),
        )
    }

    fn memory_bytes(&self) -> usize {
        self.bank.len() * std::mem::size_of::<f32>()
    }
}
