//! Pixel-level evaluation of anomaly maps against the ground-truth masks: pixel AUROC and
//! AUPRO (the per-region-overlap curve integrated to FPR 0.3 and divided by 0.3), per class
//! and per defect type, as MVTec AD papers report them. Masks are brought to the model
//! input's geometry with the model's own preprocessing spec (resize, then center crop;
//! nearest-neighbour so a mask stays binary), the resolution the maps are produced at.

use std::collections::BTreeMap;
use std::path::Path;

use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

use defectkit_core::data::image_io::load_mask;
use defectkit_core::data::PreprocessSpec;
use defectkit_core::metrics::{aupro, pixel_auroc};

use super::AnomalyError;

/// The FPR up to which the PRO curve is integrated (the MVTec AD convention).
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// Pixel metrics of one set of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PixelScores {
    /// Images evaluated.
    pub images: usize,
    /// ROC AUC over every pixel (None without both good and defective pixels).
    pub pixel_auroc: Option<f64>,
    /// Area under the PRO curve to FPR 0.3, divided by 0.3 (None without a defect region).
    pub aupro: Option<f64>,
}

/// One class's pixel metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPixelMetrics {
    /// The class.
    pub class: String,
    /// All its test images.
    pub all: PixelScores,
    /// Per defect type: its images plus the class's good test images.
    pub per_defect: BTreeMap<String, PixelScores>,
}

/// `metrics.json`'s `pixel` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PixelMetrics {
    /// The AUPRO integration limit.
    pub aupro_fpr_limit: f64,
    /// Side of the maps and masks compared, in pixels.
    pub side: usize,
    /// Per class, sorted by name.
    pub per_class: Vec<ClassPixelMetrics>,
    /// Mean pixel AUROC over classes that have one.
    pub mean_pixel_auroc: Option<f64>,
    /// Mean AUPRO over classes that have one.
    pub mean_aupro: Option<f64>,
    /// Defective test images without a mask (left out).
    pub missing_masks: usize,
    /// Masks that could not be read (moved or damaged since `embed`; left out), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_masks: Vec<(String, String)>,
}

/// A mask brought to the model input's geometry (`side`×`side`, row-major).
pub fn prepare_mask(path: &Path, spec: &PreprocessSpec) -> Result<Vec<bool>, AnomalyError> {
    let mask = load_mask(path).map_err(|e| AnomalyError::File {
        path: path.to_path_buf(),
        reason: format!("cannot read the ground-truth mask: {e}"),
    })?;
    let side = spec.input_size().max(1);
    let resize = spec.resize.max(side);
    let resized = if mask.dimensions() == (resize, resize) {
        mask
    } else {
        imageops::resize(&mask, resize, resize, FilterType::Nearest)
    };
    let off = (resize - side) / 2;
    let cropped = imageops::crop_imm(&resized, off, off, side, side).to_image();
    Ok(cropped.pixels().map(|p| p.0[0] > 127).collect())
}

/// One test image for pixel evaluation.
#[derive(Debug, Clone)]
pub struct MapImage<'a> {
    /// Its class.
    pub class: &'a str,
    /// `good` or the defect type.
    pub defect_type: &'a str,
    /// Its anomaly map (side × side).
    pub map: &'a [f32],
    /// Its mask path (`""` for a good image).
    pub mask: &'a str,
}

fn scores(maps: &[&[f32]], masks: &[&[bool]], side: usize) -> PixelScores {
    PixelScores {
        images: maps.len(),
        pixel_auroc: pixel_auroc(maps, masks),
        aupro: aupro(maps, masks, side, side, AUPRO_FPR_LIMIT),
    }
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Pixel AUROC and AUPRO per class and per defect type. Defective images must have masks
/// (those without, or whose mask cannot be read any more, are left out and counted); good
/// images count as all-good pixels.
pub fn evaluate_pixels(
    images: &[MapImage<'_>],
    spec: &PreprocessSpec,
) -> Result<PixelMetrics, AnomalyError> {
    let side = spec.input_size() as usize;
    let mut missing = 0;
    let mut unreadable = Vec::new();
    let mut by_class: BTreeMap<&str, Vec<(usize, Vec<bool>)>> = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        if img.map.len() != side * side {
            return Err(AnomalyError::Invalid(format!(
                "an anomaly map has {} values, expected {side}×{side}",
                img.map.len()
            )));
        }
        let mask = if img.defect_type == "good" {
            vec![false; side * side]
        } else if img.mask.is_empty() {
            missing += 1;
            continue;
        } else {
            match prepare_mask(Path::new(img.mask), spec) {
                Ok(mask) => mask,
                Err(e) => {
                    unreadable.push((img.mask.to_string(), e.to_string()));
                    continue;
                }
            }
        };
        by_class.entry(img.class).or_default().push((i, mask));
    }
    let mut per_class = Vec::new();
    for (class, rows) in by_class {
        let all_maps: Vec<&[f32]> = rows.iter().map(|(i, _)| images[*i].map).collect();
        let all_masks: Vec<&[bool]> = rows.iter().map(|(_, m)| m.as_slice()).collect();
        let mut defects: Vec<&str> = rows
            .iter()
            .map(|(i, _)| images[*i].defect_type)
            .filter(|d| *d != "good")
            .collect();
        defects.sort_unstable();
        defects.dedup();
        let mut per_defect = BTreeMap::new();
        for defect in defects {
            let pick: Vec<usize> = (0..rows.len())
                .filter(|&k| {
                    let d = images[rows[k].0].defect_type;
                    d == "good" || d == defect
                })
                .collect();
            let maps: Vec<&[f32]> = pick.iter().map(|&k| all_maps[k]).collect();
            let masks: Vec<&[bool]> = pick.iter().map(|&k| all_masks[k]).collect();
            per_defect.insert(defect.to_string(), scores(&maps, &masks, side));
        }
        per_class.push(ClassPixelMetrics {
            class: class.to_string(),
            all: scores(&all_maps, &all_masks, side),
            per_defect,
        });
    }
    Ok(PixelMetrics {
        aupro_fpr_limit: AUPRO_FPR_LIMIT,
        side,
        mean_pixel_auroc: mean(per_class.iter().map(|c| c.all.pixel_auroc)),
        mean_aupro: mean(per_class.iter().map(|c| c.all.aupro)),
        per_class,
        missing_masks: missing,
        unreadable_masks: unreadable,
    })
}
