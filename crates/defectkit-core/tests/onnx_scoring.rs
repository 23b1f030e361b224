//! The anomaly-scoring head (`defectkit_core::onnx::scoring`) appended to tiny exported
//! models, checked by onnx's full checker and run by onnxruntime-Python
//! (tests/peers/scoring_peer.py) against `reference_scores` on the same seeded batch.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use defectkit_core::onnx::scoring::{
    append_scoring, reference_scores, ClassRule, ScoringHead, ScoringSpec, DETECTOR_KEY,
    SCORE_OUTPUTS,
};
use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{write_model, ModelKind, ModelMetadata, METADATA_KEY};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const CLASSES: [&str; 3] = ["bottle", "screw", "tile"];
const D: usize = 4;
const BATCH: usize = 16;

/// `n` images `[3, side, side]`: a per-channel offset plus pixel noise, so that the
/// embeddings (channel means · W) spread.
fn images(rng: &mut ChaCha8Rng, n: usize, side: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * 3 * side * side);
    for _ in 0..n * 3 {
        let offset = rng.random_range(-2.0f32..2.0);
        out.extend((0..side * side).map(|_| offset + rng.random_range(-0.5f32..0.5)));
    }
    out
}

/// The fit data's view of a model: embeddings of other images from the same distribution.
struct Fit {
    embeddings: Vec<Vec<f32>>,
    rng: ChaCha8Rng,
}

impl Fit {
    fn new(tiny: &TinyModel, seed: u64) -> Self {
        let side = tiny.metadata.input_shape[1];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (_, embedding) = tiny.forward(&images(&mut rng, 40, side));
        Fit {
            embeddings: embedding.chunks(D).map(<[f32]>::to_vec).collect(),
            rng,
        }
    }

    /// One embedding of the fit data, jittered.
    fn sample(&mut self) -> Vec<f32> {
        let i = self.rng.random_range(0..self.embeddings.len());
        let jitter: Vec<f32> = (0..D)
            .map(|_| self.rng.random_range(-0.1f32..0.1))
            .collect();
        self.embeddings[i]
            .iter()
            .zip(jitter)
            .map(|(e, j)| e + j)
            .collect()
    }

    fn means(&mut self) -> Vec<Vec<f32>> {
        (0..CLASSES.len()).map(|_| self.sample()).collect()
    }

    /// Random lower-triangular W_c with a positive diagonal (the inverse of a Cholesky
    /// factor is one).
    fn transforms(&mut self) -> Vec<Vec<f32>> {
        (0..CLASSES.len())
            .map(|_| {
                let mut w = vec![0.0f32; D * D];
                for i in 0..D {
                    for j in 0..i {
                        w[i * D + j] = self.rng.random_range(-0.5f32..0.5);
                    }
                    w[i * D + i] = self.rng.random_range(0.5f32..1.5);
                }
                w
            })
            .collect()
    }

    fn references(&mut self, counts: [usize; 3]) -> Vec<Vec<f32>> {
        counts
            .iter()
            .map(|n| (0..*n).flat_map(|_| self.sample()).collect())
            .collect()
    }
}

struct Case {
    name: String,
    tiny: TinyModel,
    spec: ScoringSpec,
    input: Vec<f32>,
}

impl Case {
    fn side(&self) -> usize {
        self.tiny.metadata.input_shape[1]
    }

    fn reference(&self) -> Vec<(f64, usize)> {
        let (primary, embedding) = self.tiny.forward(&self.input);
        let side = self.side();
        reference_scores(&self.spec, &self.input, &primary, &embedding, (side, side))
    }
}

/// Thresholds between the batch's reference scores (never within 1e-3 relative of one), so
/// that some images are anomalous and the exact `anomalous` comparison cannot flake.
fn thresholds_between(scores: &[f64]) -> Vec<f32> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    (0..CLASSES.len())
        .map(|c| {
            let target = (c + 1) * sorted.len() / (CLASSES.len() + 1);
            let j = (target.saturating_sub(2)..(target + 2).min(sorted.len() - 1))
                .max_by(|&a, &b| {
                    (sorted[a + 1] - sorted[a]).total_cmp(&(sorted[b + 1] - sorted[b]))
                })
                .unwrap();
            let (lo, hi) = (sorted[j], sorted[j + 1]);
            assert!(
                hi - lo > 2e-3 * hi.abs().max(1e-3),
                "scores too close for a threshold: {lo} {hi}"
            );
            ((lo + hi) / 2.0) as f32
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut out = Vec::new();
    let mut push = |name: &str, tiny: &TinyModel, head: ScoringHead, class_rule: ClassRule| {
        let side = tiny.metadata.input_shape[1];
        let mut case = Case {
            name: name.to_string(),
            tiny: tiny.clone(),
            spec: ScoringSpec {
                head,
                class_rule,
                thresholds: vec![0.0; CLASSES.len()],
                detector_json: json!({"case": name}).to_string(),
            },
            input: images(&mut rng, BATCH, side),
        };
        let scores: Vec<f64> = case.reference().iter().map(|s| s.0).collect();
        case.spec.thresholds = thresholds_between(&scores);
        out.push(case);
    };
    let euclid = |fit: &mut Fit| ScoringHead::Whitened {
        means: fit.means(),
        transforms: None,
    };
    let mahalanobis = |fit: &mut Fit| ScoringHead::Whitened {
        means: fit.means(),
        transforms: Some(fit.transforms()),
    };
    let knn = |fit: &mut Fit, k, counts| ScoringHead::Knn {
        k,
        references: fit.references(counts),
    };
    let nearest = |fit: &mut Fit| ClassRule::NearestMean(fit.means());

    let scratch = TinyModel::classifier(ModelKind::CnnScratch, 8, &CLASSES, D);
    let distilled = TinyModel::classifier(ModelKind::CnnDistilled, 8, &CLASSES, D);
    let teacher = TinyModel::classifier(ModelKind::Teacher, 8, &CLASSES, D);
    let ae = TinyModel::autoencoder(7, &CLASSES, D);
    let mut f = Fit::new(&scratch, 11);
    push(
        "scratch_euclid_logits",
        &scratch,
        euclid(&mut f),
        ClassRule::Logits,
    );
    push(
        "scratch_euclid_lowest",
        &scratch,
        euclid(&mut f),
        ClassRule::LowestScore,
    );
    let (h, r) = (knn(&mut f, 3, [3, 5, 7]), nearest(&mut f));
    push("scratch_knn3_nearest", &scratch, h, r);
    let mut f = Fit::new(&distilled, 12);
    let (h, r) = (mahalanobis(&mut f), nearest(&mut f));
    push("distilled_maha_nearest", &distilled, h, r);
    let h = mahalanobis(&mut f);
    push(
        "distilled_maha_lowest",
        &distilled,
        h,
        ClassRule::LowestScore,
    );
    let h = mahalanobis(&mut f);
    push("distilled_maha_logits", &distilled, h, ClassRule::Logits);
    let mut f = Fit::new(&teacher, 13);
    let h = knn(&mut f, 1, [1, 4, 2]);
    push("teacher_knn1_lowest", &teacher, h, ClassRule::LowestScore);
    let h = knn(&mut f, 3, [3, 5, 7]);
    push("teacher_knn3_logits", &teacher, h, ClassRule::Logits);
    let mut f = Fit::new(&ae, 14);
    let (h, r) = (euclid(&mut f), nearest(&mut f));
    push("ae_euclid_nearest", &ae, h, r);
    let h = mahalanobis(&mut f);
    push("ae_maha_lowest", &ae, h, ClassRule::LowestScore);
    let h = knn(&mut f, 3, [4, 3, 6]);
    push("ae_knn3_lowest", &ae, h, ClassRule::LowestScore);
    let (h, r) = (knn(&mut f, 1, [2, 1, 3]), nearest(&mut f));
    push("ae_knn1_nearest", &ae, h, r);
    for (name, pool) in [
        ("ae_recon_mean", None),
        ("ae_recon_pool3", Some(3)),
        ("ae_recon_pool7", Some(7)),
    ] {
        let r = nearest(&mut f);
        push(name, &ae, ScoringHead::Recon { pool }, r);
    }
    out
}

fn close(ort: f64, reference: f64) -> bool {
    (ort - reference).abs() <= (1e-4 * reference.abs()).max(1e-6)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn scored_models_match_the_reference_in_onnxruntime() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut peer_cases = Vec::new();
    for case in &cases {
        let mut model = case.tiny.model.clone();
        append_scoring(&mut model, &case.spec).unwrap();
        let path = dir.path().join(format!("{}.scored.onnx", case.name));
        write_model(&path, &model).unwrap();
        let side = case.side();
        peer_cases.push(json!({
            "name": case.name,
            "model": path.display().to_string(),
            "input": case.input.iter().map(|v| *v as f64).collect::<Vec<_>>(),
            "shape": [BATCH, 3, side, side],
        }));
    }
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&peer_cases).unwrap()).unwrap();
    let out = Command::new(&py)
        .arg(common::repo_root().join("tests/peers/scoring_peer.py"))
        .arg(&cases_path)
        .output()
        .expect("run the scoring peer");
    assert!(
        out.status.success(),
        "scoring peer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len());

    let (mut anomalous, mut normal) = (0, 0);
    for (case, got) in cases.iter().zip(&results) {
        let name = &case.name;
        assert_eq!(got["name"], json!(name));
        let primary = case.tiny.metadata.kind.primary_output();
        let mut want_outputs = vec![primary, "embedding"];
        want_outputs.extend(SCORE_OUTPUTS);
        assert_eq!(got["outputs"], json!(want_outputs), "{name}");
        for (output, dtype) in SCORE_OUTPUTS
            .iter()
            .zip(["float32", "int64", "float32", "bool"])
        {
            assert_eq!(got["dtypes"][output], dtype, "{name} {output}");
            assert_eq!(got["shapes"][output], json!([BATCH]), "{name} {output}");
        }
        let meta = &got["metadata"];
        assert_eq!(meta[DETECTOR_KEY], json!(case.spec.detector_json), "{name}");
        let metadata = ModelMetadata::from_json(meta[METADATA_KEY].as_str().unwrap()).unwrap();
        assert_eq!(metadata.outputs, want_outputs, "{name}");

        // The model's own outputs are untouched.
        let (want_primary, want_embedding) = case.tiny.forward(&case.input);
        for (output, want) in [(primary, &want_primary), ("embedding", &want_embedding)] {
            let have = floats(&got["values"][output]);
            assert_eq!(have.len(), want.len(), "{name} {output}");
            for (h, w) in have.iter().zip(want.iter()) {
                assert!(close(*h, *w as f64), "{name} {output}: {h} vs {w}");
            }
        }

        let reference = case.reference();
        let values = &got["values"];
        let scores = floats(&values["score"]);
        let thresholds = floats(&values["threshold"]);
        let classes: Vec<usize> = values["class_index"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let flags: Vec<bool> = values["anomalous"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        for (i, (want_score, want_class)) in reference.iter().enumerate() {
            assert_eq!(classes[i], *want_class, "{name} image {i}: class_index");
            assert!(
                close(scores[i], *want_score),
                "{name} image {i}: score {} vs reference {want_score}",
                scores[i]
            );
            let threshold = case.spec.thresholds[*want_class];
            assert_eq!(
                thresholds[i], threshold as f64,
                "{name} image {i}: threshold"
            );
            let want_flag = *want_score >= threshold as f64;
            assert_eq!(flags[i], want_flag, "{name} image {i}: anomalous");
            if want_flag {
                anomalous += 1;
            } else {
                normal += 1;
            }
        }
        let mut distinct = classes.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() >= 2,
            "{name}: every image picked class {distinct:?}; the gather is untested"
        );

        // A batch of one gives the first image's results.
        let single = &got["single"];
        assert!(
            close(floats(&single["score"])[0], reference[0].0),
            "{name}: batch of 1"
        );
        assert_eq!(
            single["class_index"][0],
            json!(reference[0].1),
            "{name}: batch of 1"
        );
    }
    assert!(
        anomalous > 0 && normal > 0,
        "{anomalous} anomalous, {normal} normal"
    );
}
