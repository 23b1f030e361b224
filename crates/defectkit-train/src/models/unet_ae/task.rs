//! Model C's task: reconstruction loss (MSE in normalized space, optionally + SSIM), the
//! reconstruction error of test images as an anomaly score, and the reconstruction grid.

use std::path::{Path, PathBuf};

use burn::nn::loss::{MseLoss, Reduction};
use burn::prelude::*;

use defectkit_core::data::mvtec::Split;
use defectkit_core::onnx::ModelKind;

use super::UNet;
use crate::train::data::{Batch, DataModule, ImageDataModule};
use crate::train::task::{scalar, Metrics, TaskModule};
use crate::train::{figure_err, JobContext, TrainError};

/// Model C: reconstruction loss, MSE in normalized space plus an optional SSIM term:
/// `loss = mse + ssim_weight · (1 − SSIM)`.
#[derive(Debug, Clone)]
pub struct AutoencoderTask {
    /// Weight of the `1 − SSIM` term (0 = MSE only).
    pub ssim_weight: f64,
    /// Dynamic range of the normalized pixels (1/std for [0, 1] images), for SSIM's constants.
    pub data_range: f64,
}

impl Default for AutoencoderTask {
    fn default() -> Self {
        Self {
            ssim_weight: 0.0,
            data_range: 1.0 / 0.226,
        }
    }
}

/// `1 − mean SSIM` over 7×7 box windows (stride 1, no padding), with the usual constants
/// `C1 = (0.01·range)²`, `C2 = (0.03·range)²`. Images must be at least 7 px.
pub fn ssim_loss(x: Tensor<4>, y: Tensor<4>, data_range: f64) -> Tensor<1> {
    use burn::tensor::module::avg_pool2d;
    use burn::tensor::ops::AvgPoolOptions;
    let pool = |t: Tensor<4>| avg_pool2d(t, AvgPoolOptions::new([7, 7]).with_stride([1, 1]));
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let mx = pool(x.clone());
    let my = pool(y.clone());
    let sxx = pool(x.clone() * x.clone()) - mx.clone() * mx.clone();
    let syy = pool(y.clone() * y.clone()) - my.clone() * my.clone();
    let sxy = pool(x * y) - mx.clone() * my.clone();
    let num = (mx.clone() * my.clone()).mul_scalar(2.0).add_scalar(c1)
        * sxy.mul_scalar(2.0).add_scalar(c2);
    let den = (mx.clone() * mx + my.clone() * my).add_scalar(c1) * (sxx + syy).add_scalar(c2);
    (num / den).mean().neg().add_scalar(1.0)
}

/// Per-image mean squared reconstruction error `[B]`.
pub fn per_image_error(reconstruction: Tensor<4>, input: Tensor<4>) -> Vec<f64> {
    let [b, _, _, _] = input.dims();
    let err = (reconstruction - input)
        .powf_scalar(2.0)
        .reshape([b as i32, -1])
        .mean_dim(1);
    err.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map(|v| v.into_iter().map(f64::from).collect())
        .unwrap_or_default()
}

impl TaskModule for AutoencoderTask {
    type Model = UNet;

    fn kind(&self) -> ModelKind {
        ModelKind::UnetAe
    }

    fn training_step(&self, model: &UNet, batch: &Batch) -> (Tensor<1>, Metrics) {
        let out = model.forward(batch.images.clone());
        let mse = MseLoss::new().forward(
            out.reconstruction.clone(),
            batch.images.clone(),
            Reduction::Mean,
        );
        let mut m = Metrics::default();
        m.add("mse", scalar(&mse), batch.len());
        let loss = if self.ssim_weight > 0.0 {
            let ssim = ssim_loss(out.reconstruction, batch.images.clone(), self.data_range);
            m.add("ssim", 1.0 - scalar(&ssim), batch.len());
            mse + ssim.mul_scalar(self.ssim_weight)
        } else {
            mse
        };
        m.add("loss", scalar(&loss), batch.len());
        (loss, m)
    }

    fn test_step(&self, model: &UNet, batch: &Batch) -> Metrics {
        let out = model.forward(batch.images.clone());
        let errors = per_image_error(out.reconstruction, batch.images.clone());
        let mut m = Metrics::default();
        for (e, a) in errors.iter().zip(&batch.anomaly) {
            m.add("loss", *e, 1);
            m.add(
                if *a == 0 {
                    "recon_error_good"
                } else {
                    "recon_error_defective"
                },
                *e,
                1,
            );
            m.add_score(*e, *a == 1);
        }
        m
    }

    /// The reconstruction grid: inputs, reconstructions and error maps of test images.
    fn on_fit_end(
        &self,
        best: &UNet,
        ctx: &JobContext<'_>,
    ) -> Result<Vec<(String, PathBuf)>, TrainError> {
        let grid = write_recon_grid(ctx.run_dir, best, ctx.data, ctx.device)?;
        Ok(vec![("reconstructions".to_string(), grid)])
    }
}

/// Test images for the reconstruction grid: a good and a defective image from each of up to
/// `max_classes` categories spread over the class list, so the figure shows more than one
/// kind of object or texture.
fn recon_grid_picks(
    test: &[defectkit_core::data::mvtec::Sample],
    max_classes: usize,
) -> Vec<usize> {
    let mut classes: Vec<usize> = test.iter().map(|s| s.class_index).collect();
    classes.sort_unstable();
    classes.dedup();
    let n = classes.len();
    let chosen: Vec<usize> = if n <= max_classes {
        classes
    } else {
        (0..max_classes)
            .map(|i| classes[i * n / max_classes])
            .collect()
    };
    let mut picks = Vec::new();
    for class in chosen {
        for good in [true, false] {
            if let Some(i) = test
                .iter()
                .position(|s| s.class_index == class && s.is_good() == good)
            {
                picks.push(i);
            }
        }
    }
    picks
}

/// Inputs, reconstructions and error maps of a few good and defective test images
/// (`reconstructions.png` in the run dir).
fn write_recon_grid(
    run_dir: &Path,
    model: &UNet,
    data: &ImageDataModule,
    device: &Device,
) -> Result<PathBuf, TrainError> {
    let test = data.samples(Split::Test);
    let mut picks = recon_grid_picks(test, 4);
    if picks.is_empty() {
        picks = (0..data.len(Split::Val).min(4)).collect();
    }
    let split = if test.is_empty() {
        Split::Val
    } else {
        Split::Test
    };
    let batch = data.load(split, &picks, device)?;
    let out = model.forward(batch.images.clone());
    let spec = data.preprocess();
    let side = spec.input_size();
    let per = (3 * side * side) as usize;
    let inputs: Vec<f32> = batch
        .images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| figure_err(format!("{e:?}")))?;
    let recons: Vec<f32> = out
        .reconstruction
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| figure_err(format!("{e:?}")))?;
    let mut maps = Vec::new();
    let mut max_err = 0f32;
    for i in 0..batch.len() {
        let plane = (side * side) as usize;
        let mut err = vec![0f32; plane];
        for c in 0..3 {
            for p in 0..plane {
                let d = inputs[i * per + c * plane + p] - recons[i * per + c * plane + p];
                err[p] += d * d / 3.0;
            }
        }
        max_err = err.iter().copied().fold(max_err, f32::max);
        maps.push(err);
    }
    let rows: Vec<defectkit_core::plot::GridRow> = (0..batch.len())
        .map(|i| {
            let s = &data.samples(split)[picks[i]];
            defectkit_core::plot::GridRow {
                label: format!("{} {}", s.class, s.defect.as_deref().unwrap_or("good")),
                images: vec![
                    defectkit_core::plot::chw_to_rgb(
                        &inputs[i * per..(i + 1) * per],
                        side,
                        side,
                        spec.mean,
                        spec.std,
                    ),
                    defectkit_core::plot::chw_to_rgb(
                        &recons[i * per..(i + 1) * per],
                        side,
                        side,
                        spec.mean,
                        spec.std,
                    ),
                    defectkit_core::plot::heatmap(&maps[i], side, side, max_err.max(1e-6)),
                ],
            }
        })
        .collect();
    let path = run_dir.join("reconstructions.png");
    defectkit_core::plot::image_grid(
        &path,
        "U-Net reconstructions (test images)",
        &[
            "input".into(),
            "reconstruction".into(),
            "squared error".into(),
        ],
        &rows,
        (side * 2).clamp(96, 192),
    )
    .map_err(figure_err)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use defectkit_core::data::mvtec::Sample;
    use std::path::PathBuf;

    fn sample(class_index: usize, good: bool) -> Sample {
        Sample {
            path: PathBuf::from(format!("{class_index}-{good}.png")),
            class: format!("c{class_index}"),
            class_index,
            split: Split::Test,
            defect: (!good).then(|| "crack".to_string()),
            mask: None,
        }
    }

    #[test]
    fn the_recon_grid_shows_good_and_defective_images_of_several_classes() {
        let test: Vec<Sample> = (0..10)
            .flat_map(|c| [sample(c, true), sample(c, false), sample(c, true)])
            .collect();
        let picks = recon_grid_picks(&test, 4);
        let shown: Vec<(usize, bool)> = picks
            .iter()
            .map(|&i| (test[i].class_index, test[i].is_good()))
            .collect();
        assert_eq!(
            shown,
            [
                (0, true),
                (0, false),
                (2, true),
                (2, false),
                (5, true),
                (5, false),
                (7, true),
                (7, false)
            ]
        );
        // Fewer classes than asked: all of them; a class without defects gives one row.
        let few = vec![sample(0, true), sample(1, true), sample(1, false)];
        assert_eq!(recon_grid_picks(&few, 4), [0, 1, 2]);
    }
}
