//! The int8 quantizer on a Rust-built ResNet-shaped graph (`testing::conv_classifier`) and a
//! tiny synthetic set: BatchNorm folding is exact, the QDQ graph passes `onnx.checker` and runs
//! in onnxruntime-Python with the outputs defectkit computes, its scales, zero points and
//! pre-quantized weights equal onnxruntime.quantization's own arithmetic
//! (tests/peers/quantize_peer.py), ONNX Runtime fuses it into int8 kernels and the fusion
//! check names a node that was built to stay float, calibration reads only good training
//! images, and bad inputs are refused with clear errors.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use defectkit_core::config::quantize::CalibrationMethod;
use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::{Loader, QuantizeConfig};
use defectkit_core::data::mvtec::{Index, IndexOptions, Split};
use defectkit_core::data::synth::{generate, SynthOptions};
use defectkit_core::onnx::testing::conv_classifier;
use defectkit_core::onnx::{self as onnxfile, ModelProto, Precision};
use defectkit_deploy::quantize::accuracy::AccuracyOptions;
use defectkit_deploy::quantize::calibrate::write_npy;
use defectkit_deploy::quantize::histogram::{entropy_threshold, percentile_threshold, Histogram};
use defectkit_deploy::quantize::{fold, fusion, graph, qdq};
use defectkit_deploy::quantize::{
    quantize, QuantizationInfo, QuantizeError, QuantizeOptions, QUANTIZATION_KEY,
};
use defectkit_deploy::runtime::{OnnxModel, RuntimeOptions};
use serde_json::{json, Value};

const SIDE: usize = 32;
const CLASSES: [&str; 2] = ["bottle", "carpet"];
const WIDTH: usize = 8;

/// A small synthetic set shared by the tests of this file (generated once).
fn dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let opts = SynthOptions {
                seed: 11,
                image_size: 40,
                train_good: 6,
                test_good: 2,
                test_defect_per_type: 1,
                classes: Some(CLASSES.iter().map(|c| c.to_string()).collect()),
                force: false,
            };
            generate(&opts, &dir.path().join("syn"), false).unwrap();
            dir
        });
        dir.path().join("syn")
    })
}

fn data_config(root: &Path) -> DataConfig {
    let loader = Loader::new(&common::repo_root().join("conf"), "config", "quantize").unwrap();
    let composed = loader
        .compose(&[
            format!("data.root={}", root.display()),
            "data.val_fraction=0.25".into(),
        ])
        .unwrap();
    loader.typed(&composed).unwrap().data
}

fn write(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    onnxfile::write_model(&path, model).unwrap();
    path
}

fn options(model: &Path, out: &Path, config: QuantizeConfig) -> QuantizeOptions {
    QuantizeOptions {
        model: model.to_path_buf(),
        out: out.to_path_buf(),
        root: Some(dataset().to_path_buf()),
        data: data_config(dataset()),
        config,
        runtime: RuntimeOptions {
            threads: Some(1),
            ..Default::default()
        },
        keep_float: Vec::new(),
        save_calibration: None,
        accuracy: None,
        progress: false,
    }
}

/// Seeded inputs in the range of normalised images.
fn inputs(batch: usize) -> Vec<f32> {
    let mut state = 7u64;
    (0..batch * 3 * SIDE * SIDE)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn peer(args: &[&str]) -> Option<Value> {
    let python = common::peer_python()?;
    let script = common::repo_root().join("tests/peers/quantize_peer.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn batchnorm_folding_and_gemm_fusion_leave_outputs_unchanged() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 3);
    let fp32 = write(dir.path(), "fp32.onnx", &model);
    let mut folded = model.clone();
    let report = fold::simplify(folded.graph.as_mut().unwrap()).unwrap();
    assert_eq!(
        (report.batchnorms, report.gemms, report.constant_reshapes),
        (3, 1, 1)
    );
    let ops: HashSet<String> = folded
        .graph
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect();
    assert!(
        !ops.contains("BatchNormalization") && !ops.contains("MatMul"),
        "{ops:?}"
    );
    let folded_path = write(dir.path(), "folded.onnx", &folded);
    let opts = RuntimeOptions {
        threads: Some(1),
        ..Default::default()
    };
    let x = inputs(4);
    let a = OnnxModel::load(&fp32, &opts).unwrap().run(&x).unwrap();
    let b = OnnxModel::load(&folded_path, &opts)
        .unwrap()
        .run(&x)
        .unwrap();
    for (name, p, q) in [
        ("logits", &a.primary, &b.primary),
        ("embedding", &a.embedding, &b.embedding),
    ] {
        let scale = p.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1.0);
        let diff = max_abs_diff(p, q);
        assert!(
            diff <= 1e-5 * scale,
            "{name}: max |Δ| {diff} (scale {scale})"
        );
    }
}

#[test]
fn quantize_calibrates_on_train_good_only_fuses_and_runs_like_onnxruntime_python() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 3);
    let fp32 = write(dir.path(), "model.onnx", &model);
    let out = dir.path().join("model.int8.onnx");
    let mut opts = options(&fp32, &out, QuantizeConfig::default());
    opts.save_calibration = Some(dir.path().join("calibration.npy"));
    let report = quantize(&opts, &AtomicBool::new(false)).unwrap();

    // Calibration read exactly the good training images (never val, never test).
    let index = Index::scan(
        dataset(),
        &IndexOptions {
            classes: None,
            val_fraction: opts.data.val_fraction,
            seed: opts.data.split_seed,
            strict: false,
        },
    )
    .unwrap();
    let train: HashSet<PathBuf> = index
        .split(Split::Train)
        .filter(|s| s.is_good())
        .map(|s| s.path.clone())
        .collect();
    let elsewhere: HashSet<PathBuf> = index
        .samples
        .iter()
        .filter(|s| s.split != Split::Train)
        .map(|s| s.path.clone())
        .collect();
    assert!(!elsewhere.is_empty());
    let used: HashSet<PathBuf> = report.calibration_paths.iter().cloned().collect();
    assert_eq!(
        used, train,
        "calibration must use every train/good image (cap 256)"
    );
    assert!(used.is_disjoint(&elsewhere));
    assert_eq!(report.info.calibration_images, train.len());

    // The file says what it is.
    let back = onnxfile::read_model(&out).unwrap();
    let info: QuantizationInfo =
        serde_json::from_str(onnxfile::metadata_prop(&back, QUANTIZATION_KEY).unwrap()).unwrap();
    assert_eq!(info, report.info);
    assert_eq!(info.method, "minmax");
    let mut int8 = OnnxModel::load(&out, &opts.runtime).unwrap();
    assert_eq!(int8.metadata.precision, Precision::Int8);

    // ONNX Runtime fused every quantized op.
    let kernels: HashMap<String, usize> = report.fusion.int8_kernels.iter().cloned().collect();
    assert_eq!(kernels.get("QLinearConv"), Some(&3), "{kernels:?}");
    assert_eq!(kernels.get("QGemm"), Some(&1), "{kernels:?}");
    assert_eq!(kernels.get("QLinearAdd"), Some(&1), "{kernels:?}");
    assert!(
        report.fusion.unfused.is_empty(),
        "{:?}",
        report.fusion.unfused
    );

    // Close to FP32 and equal to onnxruntime-Python's run of the same file.
    let x = inputs(3);
    let ours = int8.run(&x).unwrap();
    let reference = OnnxModel::load(&fp32, &opts.runtime)
        .unwrap()
        .run(&x)
        .unwrap();
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|v| v * v).sum::<f32>().sqrt()
            * b.iter().map(|v| v * v).sum::<f32>().sqrt())
    };
    for (q, f) in ours
        .embedding
        .chunks(WIDTH)
        .zip(reference.embedding.chunks(WIDTH))
    {
        assert!(cos(q, f) > 0.98, "embedding cosine {}", cos(q, f));
    }
    let npy = dir.path().join("input.npy");
    write_npy(&npy, &x, &[3, 3, SIDE, SIDE]).unwrap();
    let ours_dir = dir.path().join("ours");
    std::fs::create_dir_all(&ours_dir).unwrap();
    write_npy(
        &ours_dir.join("logits.npy"),
        &ours.primary,
        &[3, CLASSES.len()],
    )
    .unwrap();
    write_npy(
        &ours_dir.join("embedding.npy"),
        &ours.embedding,
        &[3, WIDTH],
    )
    .unwrap();
    let Some(result) = peer(&[
        "check",
        out.to_str().unwrap(),
        npy.to_str().unwrap(),
        ours_dir.to_str().unwrap(),
    ]) else {
        eprintln!("peer venv missing: skipped the onnxruntime-Python comparison");
        return;
    };
    assert_eq!(result["checker"], "ok");
    for name in ["logits", "embedding"] {
        let diff = result["outputs"][name]["max_abs_diff"].as_f64().unwrap();
        assert!(
            diff <= 1e-5,
            "{name}: ours vs onnxruntime-Python max |Δ| {diff}"
        );
    }
    assert!(result["ops"]["QuantizeLinear"].as_u64().unwrap() > 0);
    // The saved calibration tensors are exactly the images calibrated on.
    let saved = std::fs::read(dir.path().join("calibration.npy")).unwrap();
    assert_eq!(saved.len() % 4, 0);
    assert!(saved.len() >= 4 * train.len() * 3 * SIDE * SIDE);
}

/// The folded conv classifier with hand-set values in its first conv: a weight channel whose
/// scale is exactly 1 (max |w| = 127) with ties at .5 (round half to even), and a bias too
/// large for int32 (clamped).
fn hand_built() -> ModelProto {
    let (mut model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 5);
    let g = model.graph.as_mut().unwrap();
    fold::simplify(g).unwrap();
    let conv = g.node.iter().find(|n| n.op_type == "Conv").unwrap().clone();
    let w = g
        .initializer
        .iter_mut()
        .find(|t| t.name == conv.input[1])
        .unwrap();
    let mut values = graph::float_values(w).unwrap();
    let per_channel = values.len() / WIDTH;
    let ties = [127.0f32, 2.5, 3.5, -0.5, -1.5, 0.5, -2.5, 126.5];
    for (k, v) in ties.iter().enumerate() {
        values[k % per_channel] = *v;
    }
    w.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let b = g
        .initializer
        .iter_mut()
        .find(|t| t.name == conv.input[2])
        .unwrap();
    let mut bias = graph::float_values(b).unwrap();
    bias[1] = 1e12;
    b.raw_data = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
    model
}

#[test]
fn scales_zero_points_and_weights_equal_onnxruntime_quantizers_arithmetic() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let folded = hand_built();
    let folded_path = write(dir.path(), "folded.onnx", &folded);
    for (symmetric, reduce_range) in [(false, false), (true, false), (false, true)] {
        let plan = qdq::plan(&folded.graph, &HashSet::new(), symmetric);
        // Made-up calibrated ranges of every kind: ReLU outputs from 0, signed values, a
        // positive-only range that must widen to 0, a degenerate one.
        let mut ranges = HashMap::new();
        for (i, src) in plan.range_sources().iter().enumerate() {
            let k = i as f32 + 1.0;
            let relu = plan.removed_relus.iter().any(|r| r.contains(src.as_str()))
                || src.starts_with('r')
                || src.starts_with('p');
            let range = match i % 4 {
                _ if relu => (0.0, 0.9 * k),
                0 => (-0.37 * k, 1.13 * k),
                1 => (0.25 * k, 2.0 * k),
                2 => (-3.0 * k, -0.5),
                _ => (-1.0, 1.0),
            };
            ranges.insert(src.clone(), range);
        }
        let quantized = qdq::apply(&plan, &ranges, symmetric, reduce_range).unwrap();
        if !symmetric {
            // The removed ReLUs' outputs are quantized with zero point 0, so Q clips at 0.
            assert_eq!(plan.removed_relus.len(), 3, "{:?}", plan.removed_relus);
            for q in quantized
                .node
                .iter()
                .filter(|n| n.op_type == "QuantizeLinear")
            {
                if q.input[0] == "r1" {
                    let zp = graph::initializer(&quantized, &q.input[2]).unwrap();
                    assert_eq!(zp.raw_data, vec![0u8]);
                }
            }
        } else {
            assert!(plan.removed_relus.is_empty(), "symmetric int8 keeps ReLUs");
        }
        let mut q_model = folded.clone();
        q_model.graph = onnxfile::MessageField::some(quantized);
        let q_path = write(
            dir.path(),
            &format!("q_{symmetric}_{reduce_range}.onnx"),
            &q_model,
        );
        let sources: HashMap<&String, &String> = plan.tensors.iter().map(|(t, s)| (t, s)).collect();
        let spec = json!({
            "ranges": ranges.iter().map(|(k, v)| (k.clone(), json!([v.0, v.1]))).collect::<serde_json::Map<_, _>>(),
            "sources": sources,
            "symmetric": symmetric,
            "reduce_range": reduce_range,
        });
        let spec_path = dir.path().join("ranges.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();
        let Some(result) = peer(&[
            "arith",
            q_path.to_str().unwrap(),
            spec_path.to_str().unwrap(),
            folded_path.to_str().unwrap(),
        ]) else {
            eprintln!("peer venv missing: skipped");
            return;
        };
        assert_eq!(
            result["mismatches"],
            json!([]),
            "symmetric={symmetric}: {result}"
        );
        assert_eq!(result["checked"]["weights"], json!(4));
        assert_eq!(result["checked"]["biases"], json!(4));
        assert!(
            result["checked"]["activations"].as_u64().unwrap() >= 7,
            "{result}"
        );
    }
}

#[test]
fn the_fusion_check_names_a_conv_left_float() {
    let _guard = common::one_at_a_time();
    let folded = hand_built();
    let plan = qdq::plan(&folded.graph, &HashSet::new(), false);
    let ranges: HashMap<String, (f32, f32)> = plan
        .range_sources()
        .into_iter()
        .map(|s| (s, (-1.0, 1.0)))
        .collect();
    let mut g = qdq::apply(&plan, &ranges, false, false).unwrap();
    // The pooling that writes the float embedding runs in FP32 by design.
    let (float_nodes, float_outputs) = plan.float_nodes();
    assert!(
        float_nodes.contains("GlobalAveragePool_g"),
        "{float_nodes:?}"
    );
    let runtime = RuntimeOptions::default();
    let scratch = tempfile::tempdir().unwrap();
    let mut model = folded.clone();
    model.graph = onnxfile::MessageField::some(g.clone());
    let bytes = onnxfile::Message::write_to_bytes(&model).unwrap();
    let fused = fusion::check(
        &bytes,
        &float_nodes,
        &float_outputs,
        &runtime,
        scratch.path(),
    )
    .unwrap();
    assert!(fused.unfused.is_empty(), "{:?}", fused.unfused);
    // Take the Q/DQ pair off the second conv's output: ONNX Runtime cannot make it a
    // QLinearConv any more.
    let conv = g
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .nth(1)
        .unwrap()
        .clone();
    let out = conv.output[0].clone();
    let q = g
        .node
        .iter()
        .position(|n| n.op_type == "QuantizeLinear" && n.input[0] == out)
        .unwrap();
    let q_out = g.node[q].output[0].clone();
    let dq = g
        .node
        .iter()
        .position(|n| n.op_type == "DequantizeLinear" && n.input[0] == q_out)
        .unwrap();
    let dq_out = g.node[dq].output[0].clone();
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if *i == dq_out {
                *i = out.clone();
            }
        }
    }
    g.node.remove(q.max(dq));
    g.node.remove(q.min(dq));
    model.graph = onnxfile::MessageField::some(g);
    let bytes = onnxfile::Message::write_to_bytes(&model).unwrap();
    let report = fusion::check(
        &bytes,
        &float_nodes,
        &float_outputs,
        &runtime,
        scratch.path(),
    )
    .unwrap();
    // The conv itself, and the next one, which now reads a float value.
    assert!(
        report.unfused.contains(&format!("{} (Conv)", conv.name)),
        "{:?}",
        report.unfused
    );
    assert!(report.unfused.len() <= 2, "{:?}", report.unfused);
}

#[test]
fn bad_models_are_refused_and_a_cancelled_run_writes_nothing() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.int8.onnx");
    let cfg = QuantizeConfig::default();
    // Not ONNX.
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"definitely not protobuf \xff\xff").unwrap();
    let err = quantize(&options(&garbage, &out, cfg), &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(err, QuantizeError::Onnx(_)), "{err}");
    assert!(err.to_string().contains("garbage.onnx"), "{err}");
    // Missing.
    let err = quantize(
        &options(&dir.path().join("nope.onnx"), &out, cfg),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope.onnx"), "{err}");
    // No defectkit metadata.
    let (mut bare, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 1);
    bare.metadata_props.clear();
    let bare_path = write(dir.path(), "bare.onnx", &bare);
    let err = quantize(&options(&bare_path, &out, cfg), &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("metadata"), "{err}");
    // Already quantized: quantize once, then feed the result back.
    let (model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 1);
    let fp32 = write(dir.path(), "model.onnx", &model);
    quantize(&options(&fp32, &out, cfg), &AtomicBool::new(false)).unwrap();
    let again = dir.path().join("again.onnx");
    let err = quantize(&options(&out, &again, cfg), &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("already quantized"), "{err}");
    // The same graph with the metadata saying fp32 still has Q/DQ nodes.
    let mut sneaky = onnxfile::read_model(&out).unwrap();
    sneaky.metadata_props.retain(|p| p.key != QUANTIZATION_KEY);
    let (_, meta) = conv_classifier(SIDE, &CLASSES, WIDTH, 1);
    onnxfile::set_metadata_prop(&mut sneaky, onnxfile::METADATA_KEY, &meta.to_json());
    let sneaky_path = write(dir.path(), "sneaky.onnx", &sneaky);
    let err = quantize(&options(&sneaky_path, &again, cfg), &AtomicBool::new(false)).unwrap_err();
    assert!(
        err.to_string().contains("QuantizeLinear") || err.to_string().contains("DequantizeLinear"),
        "{err}"
    );
    assert!(!again.exists());
    // A keep-float name that is not in the graph.
    let mut opts = options(&fp32, &again, cfg);
    opts.keep_float = vec!["no_such_node".into()];
    let err = quantize(&opts, &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("no_such_node"), "{err}");
    // Cancelled before the first batch: nothing written.
    let err = quantize(&options(&fp32, &again, cfg), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(err, QuantizeError::Interrupted), "{err}");
    assert!(!again.exists());
    // Kept-float nodes stay float and are not reported as unfused.
    let mut opts = options(&fp32, &again, cfg);
    opts.keep_float = vec!["c3_conv".into()];
    let report = quantize(&opts, &AtomicBool::new(false)).unwrap();
    assert!(!report.quantized_nodes.contains(&"c3_conv".to_string()));
    assert!(
        report.fusion.unfused.is_empty(),
        "{:?}",
        report.fusion.unfused
    );
    assert_eq!(report.info.kept_float, ["c3_conv"]);
}

#[test]
fn histogram_methods_match_onnxruntime_and_narrow_the_range() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Three batches of a heavy-tailed variable, the later ones wider (forcing merges).
    let mut state = 99u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64).max(1e-12)
    };
    let batches: Vec<Vec<f32>> = (0..3)
        .map(|b| {
            (0..4000)
                .map(|_| {
                    // Laplace(0, 1) scaled up per batch, plus a rare outlier.
                    let u = uniform() - 0.5;
                    let v = -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-12).ln();
                    (v * (1.0 + b as f64)) as f32
                })
                .collect()
        })
        .collect();
    let mut h = Histogram::new(&batches[0], 2048);
    for b in &batches[1..] {
        h.add(b);
    }
    let flat: Vec<f32> = batches.concat();
    let npy = dir.path().join("batches.npy");
    write_npy(&npy, &flat, &[3, 4000]).unwrap();
    let percentile = 99.9;
    let t = percentile_threshold(&h, percentile);
    let (lo, hi) = entropy_threshold(&h, 128);
    assert!(t > 0.0 && t <= h.threshold);
    assert!(hi <= h.threshold + 1e-9 && lo < 0.0);
    let Some(result) = peer(&[
        "hist",
        npy.to_str().unwrap(),
        "2048",
        &percentile.to_string(),
    ]) else {
        eprintln!("peer venv missing: skipped");
        return;
    };
    let theirs: Vec<u64> = result["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(theirs.len(), h.counts.len());
    // Binning can differ for values within an ulp of a bin edge (NumPy bins in float32).
    let moved: u64 = theirs
        .iter()
        .zip(&h.counts)
        .map(|(a, b)| a.abs_diff(*b))
        .sum();
    assert!(moved <= 4, "{moved} values binned differently");
    let width = result["bin_width"].as_f64().unwrap();
    assert!((result["threshold"].as_f64().unwrap() - h.threshold).abs() < 1e-5 * h.threshold);
    let entropy: Vec<f64> = result["entropy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (entropy[0] - lo).abs() <= width * 1.01 && (entropy[1] - hi).abs() <= width * 1.01,
        "ours ({lo}, {hi}) vs ORT {entropy:?}"
    );
    let folded = result["folded_percentile"].as_f64().unwrap();
    assert!(
        (t - folded).abs() <= 1e-4 * folded,
        "percentile: ours {t} vs the peer's fold {folded}"
    );
    let exact = result["abs_percentile"].as_f64().unwrap();
    assert!(
        t >= exact - 1e-6 && t <= exact + width * 1.01,
        "percentile: ours {t} vs numpy {exact} (bin {width})"
    );

    // End to end: the histogram methods clip at most as wide as MinMax.
    let (model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 3);
    let fp32 = write(dir.path(), "model.onnx", &model);
    for method in [CalibrationMethod::Percentile, CalibrationMethod::Entropy] {
        let cfg = QuantizeConfig {
            method,
            ..QuantizeConfig::default()
        };
        let out = dir.path().join(format!("{}.onnx", method.as_str()));
        let report = quantize(&options(&fp32, &out, cfg), &AtomicBool::new(false)).unwrap();
        assert_eq!(report.info.method, method.as_str());
        assert!(report.fusion.unfused.is_empty());
        assert!(out.is_file());
    }
}

#[test]
fn the_accuracy_aware_mode_keeps_sensitive_layers_float_until_the_drift_is_within_bounds() {
    let _guard = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = conv_classifier(SIDE, &CLASSES, WIDTH, 3);
    let fp32 = write(dir.path(), "model.onnx", &model);
    // A detector fitted on the FP32 model's embeddings (Euclidean: stable on 4 images).
    let data = data_config(dataset());
    let h5 = dir.path().join("embeddings.h5");
    defectkit_deploy::embed::embed(
        &data,
        &defectkit_deploy::embed::EmbedOptions {
            model: fp32.clone(),
            root: None,
            out: h5.clone(),
            runtime: RuntimeOptions::default(),
            batch_size: 4,
            splits: vec![Split::Train, Split::Val, Split::Test],
            progress: false,
            recon_pool: 8,
            maps: None,
        },
        &AtomicBool::new(false),
    )
    .unwrap();
    let mut detector = defectkit_core::config::DetectorConfig {
        method: defectkit_core::config::detector::DetectorMethod::Euclidean,
        ..Default::default()
    };
    detector.threshold_split = "val".into();
    let detect_dir = dir.path().join("detect");
    defectkit_deploy::detect::detect(&defectkit_deploy::detect::DetectOptions {
        embeddings: h5,
        out_dir: detect_dir.clone(),
        config: detector,
        plots: false,
        bundle: None,
    })
    .unwrap();
    let detector_json = detect_dir.join("detector.json");
    let run = |max_drop: f64, max_deviation: f64| {
        let mut opts = options(
            &fp32,
            &dir.path().join("acc.onnx"),
            QuantizeConfig::default(),
        );
        opts.accuracy = Some(AccuracyOptions {
            detector: detector_json.clone(),
            max_drop,
            max_deviation,
        });
        quantize(&opts, &AtomicBool::new(false)).unwrap()
    };
    // Loose bounds: the all-int8 model already meets them; nothing is ranked or kept.
    let loose = run(2.0, 1e9);
    let acc = loose.accuracy.unwrap();
    assert!(acc.met && acc.kept_float.is_empty() && acc.sensitivity.is_empty());
    assert!(loose.info.kept_float.is_empty());
    assert!(acc.images >= 3);
    // A tight score bound: layers go back to FP32 in sensitivity order until the drift is
    // within it; what was kept is recorded in the file and left out of the fusion warning.
    // (The rank bound stays loose: with 4 validation images, rounding alone can swap two
    // near-tied scores.)
    let tight = run(0.5, 1e-3);
    let acc = tight.accuracy.unwrap();
    assert!(!acc.all_int8.within(&AccuracyOptions {
        detector: PathBuf::new(),
        max_drop: 0.5,
        max_deviation: 1e-3
    }));
    assert_eq!(acc.sensitivity.len(), loose.quantized_nodes.len());
    let order: Vec<&String> = acc.sensitivity.iter().map(|s| &s.node).collect();
    let kept: Vec<&String> = acc.kept_float.iter().map(|(n, _)| n).collect();
    assert_eq!(
        kept,
        order[..kept.len()].to_vec(),
        "kept in sensitivity order"
    );
    assert!(acc.met, "{acc:?}");
    assert!(acc.final_drift.max_deviation <= 1e-3);
    assert!(!acc.kept_float.is_empty());
    let mut recorded = tight.info.kept_float.clone();
    recorded.sort();
    let mut expected: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(recorded, expected);
    assert!(
        tight.fusion.unfused.is_empty(),
        "{:?}",
        tight.fusion.unfused
    );
    assert!(acc.test_auroc_fp32.is_some() && acc.test_auroc_int8.is_some());
}

#[test]
fn a_gemm_writing_a_float_graph_output_that_quantized_ops_also_read_still_fuses() {
    let _guard = common::one_at_a_time();
    // C's shape: a Gemm writes `embedding` (a graph output) and a second Gemm reads it. Here:
    // the classifier's `logits` Gemm, read by one more Gemm writing `head`.
    let mut model = hand_built();
    let g = model.graph.as_mut().unwrap();
    let n = CLASSES.len() as i64;
    let w: Vec<f32> = (0..n * 3).map(|i| i as f32 / 7.0 - 0.3).collect();
    g.initializer
        .push(defectkit_core::onnx::build::float_tensor(
            "head.weight",
            &[n, 3],
            &w,
        ));
    g.initializer
        .push(defectkit_core::onnx::build::float_tensor(
            "head.bias",
            &[3],
            &[0.1, -0.2, 0.3],
        ));
    g.node.push(defectkit_core::onnx::build::named_node(
        "head_gemm",
        "Gemm",
        &["logits", "head.weight", "head.bias"],
        &["head"],
        vec![],
    ));
    g.output.push(defectkit_core::onnx::build::value(
        "head",
        &[
            defectkit_core::onnx::build::Dim::Batch,
            defectkit_core::onnx::build::Dim::Fixed(3),
        ],
    ));
    let plan = qdq::plan(&model.graph, &HashSet::new(), false);
    assert!(plan.float_graph_outputs.contains("logits"));
    let ranges: HashMap<String, (f32, f32)> = plan
        .range_sources()
        .into_iter()
        .map(|s| (s, (-2.0, 2.0)))
        .collect();
    let quantized = qdq::apply(&plan, &ranges, false, false).unwrap();
    let gemms = quantized
        .node
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .count();
    assert_eq!(
        gemms, 3,
        "the logits Gemm is duplicated for its quantized reader"
    );
    model.graph = onnxfile::MessageField::some(quantized);
    let bytes = onnxfile::Message::write_to_bytes(&model).unwrap();
    let (float_nodes, float_outputs) = plan.float_nodes();
    let scratch = tempfile::tempdir().unwrap();
    let report = fusion::check(
        &bytes,
        &float_nodes,
        &float_outputs,
        &RuntimeOptions::default(),
        scratch.path(),
    )
    .unwrap();
    assert!(report.unfused.is_empty(), "{:?}", report.unfused);
    let kernels: HashMap<String, usize> = report.int8_kernels.into_iter().collect();
    assert_eq!(kernels.get("QGemm"), Some(&3), "{kernels:?}");
}
