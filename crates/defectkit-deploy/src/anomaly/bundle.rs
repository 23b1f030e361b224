//! `detect --bundle`: the exported graph with the fitted detector appended as ONNX ops
//! (`model.scored.onnx`), so any ONNX runtime scores images with no defectkit at all. The
//! graph gains the outputs `score`, `class_index` (into the model's classes), `threshold`
//! and `anomalous` (score ≥ threshold), and carries `detector.json` in its metadata
//! (`defectkit.detector`). It picks each image's class as `defectkit score --class auto`
//! does: the classifier's prediction for A, B and the teacher; for the autoencoder the lowest
//! per-class score (or, with the recon detector, the nearest class mean). The graph itself is
//! built by [`defectkit_core::onnx::scoring`].

use std::path::{Path, PathBuf};

use defectkit_core::config::detector::{DetectorMethod, ReconScore};
use defectkit_core::onnx::scoring::{append_scoring, ClassRule, ScoringHead, ScoringSpec};
use defectkit_core::onnx::{self, ModelMetadata, METADATA_KEY};

use super::{AnomalyError, Detector, OnnxPart};

fn file_err(path: &Path, reason: impl std::fmt::Display) -> AnomalyError {
    AnomalyError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The scoring spec of `detector` for a model with `metadata` (classes in logit order).
pub fn scoring_spec(
    detector: &Detector,
    metadata: &ModelMetadata,
) -> Result<ScoringSpec, AnomalyError> {
    let positions: Vec<usize> = metadata
        .classes
        .iter()
        .map(|name| {
            detector.class_position(name).ok_or_else(|| {
                AnomalyError::Invalid(format!(
                    "the model's class {name:?} has no detector (fitted classes: {}); a scored \
                     graph needs one per class",
                    detector.classes().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    // `score` chooses among the detector's classes: the graph must know the same ones.
    if positions.len() != detector.file.classes.len() {
        return Err(AnomalyError::Invalid(format!(
            "the detector has classes the model does not ({}); a scored graph needs exactly \
             the model's classes ({})",
            detector
                .classes()
                .filter(|c| !metadata.classes.iter().any(|m| m == c))
                .collect::<Vec<_>>()
                .join(", "),
            metadata.classes.join(", ")
        )));
    }
    let parts: Vec<OnnxPart> = positions
        .iter()
        .map(|&p| detector.scorers[p].onnx_part())
        .collect();
    let cfg = &detector.file.config;
    if let Some(OnnxPart::Unsupported(why)) = parts.first() {
        return Err(AnomalyError::Invalid(format!(
            "the {} detector cannot be bundled into one ONNX graph: {why}",
            cfg.method
        )));
    }
    let head = match cfg.method {
        DetectorMethod::Mahalanobis | DetectorMethod::Euclidean => {
            let mut means = Vec::new();
            let mut transforms = Vec::new();
            for part in &parts {
                let OnnxPart::Whitened { mean, transform } = part else {
                    unreachable!("Gaussian detectors give whitened parts")
                };
                means.push(mean.clone());
                transforms.extend(transform.clone());
            }
            ScoringHead::Whitened {
                means,
                transforms: (!transforms.is_empty()).then_some(transforms),
            }
        }
        DetectorMethod::Knn => {
            let mut k = cfg.k;
            let mut references = Vec::new();
            for part in &parts {
                let OnnxPart::Knn {
                    references: r,
                    k: part_k,
                } = part
                else {
                    unreachable!("knn detectors give knn parts")
                };
                k = *part_k;
                references.push(r.clone());
            }
            ScoringHead::Knn { k, references }
        }
        DetectorMethod::Recon => ScoringHead::Recon {
            pool: (cfg.score == ReconScore::Local).then_some(cfg.pool),
        },
        DetectorMethod::Padim | DetectorMethod::Patchcore => {
            unreachable!("patch detectors give unsupported parts (refused above)")
        }
    };
    let class_rule = if !metadata.kind.is_autoencoder() {
        ClassRule::Logits
    } else if cfg.method == DetectorMethod::Recon {
        ClassRule::NearestMean(
            positions
                .iter()
                .map(|&p| {
                    detector.scorers[p]
                        .centre()
                        .iter()
                        .map(|&v| v as f32)
                        .collect()
                })
                .collect(),
        )
    } else {
        ClassRule::LowestScore
    };
    Ok(ScoringSpec {
        head,
        class_rule,
        thresholds: positions
            .iter()
            .map(|&p| detector.file.classes[p].threshold.value as f32)
            .collect(),
        detector_json: serde_json::to_string(&detector.file).expect("detector serializes"),
    })
}

/// Writes `out` = `model` + `detector` as ONNX ops. The model must be the one the detector
/// was fitted on (same SHA-256).
pub fn write_scored_model(
    detector: &Detector,
    model: &Path,
    out: &Path,
) -> Result<PathBuf, AnomalyError> {
    let sha = crate::embed::sha256_file(model).map_err(|e| file_err(model, e))?;
    if sha != detector.file.model.sha256 {
        return Err(file_err(
            model,
            format!(
                "not the model the detector was fitted on (SHA-256 {}…, expected {}…)",
                &sha[..12],
                &detector.file.model.sha256[..12.min(detector.file.model.sha256.len())]
            ),
        ));
    }
    let mut proto = onnx::read_model(model).map_err(|e| file_err(model, e))?;
    let metadata = onnx::metadata_prop(&proto, METADATA_KEY)
        .ok_or_else(|| file_err(model, "no defectkit metadata: not a defectkit export"))
        .and_then(|json| ModelMetadata::from_json(json).map_err(|e| file_err(model, e)))?;
    let spec = scoring_spec(detector, &metadata)?;
    append_scoring(&mut proto, &spec).map_err(|e| file_err(model, e))?;
    onnx::write_model(out, &proto).map_err(|e| file_err(out, e))?;
    Ok(out.to_path_buf())
}
