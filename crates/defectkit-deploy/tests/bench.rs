//! `bench` on a tiny synthetic set with Rust-built ONNX models: percentiles are NumPy's
//! (linear interpolation), an unavailable execution provider is a skipped row (never a CPU
//! run), the report files are written with what was measured, a variant missing its file
//! is a clear error, and `--top` ranks on train/val evidence alone. Nothing asserts on wall
//! time. When the peer Python is here, the int8 files come from
//! `bench/peers/ort_quantize.py` (our quantizer's output is tested in its own files).

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::{DetectorConfig, Loader, QuantizeConfig};
use defectkit_core::data::mvtec::{Index, IndexOptions, Split};
use defectkit_core::data::synth::{generate, SynthOptions};
use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind, METADATA_KEY};
use defectkit_deploy::bench::latency::LatencyStats;
use defectkit_deploy::bench::{bench, select_top, BenchError, BenchOptions, TimingPlan, Variant};
use defectkit_deploy::embed::{embed, EmbedOptions};
use defectkit_deploy::pipeline::{run_batches, PipelineOptions};
use defectkit_deploy::runtime::{ExecutionProvider, OnnxModel, RuntimeOptions};

const SIDE: usize = 32;
const CLASSES: [&str; 2] = ["bottle", "carpet"];

fn dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let opts = SynthOptions {
                seed: 11,
                image_size: 40,
                train_good: 8,
                test_good: 3,
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

fn configs(root: &Path) -> (DataConfig, DetectorConfig, QuantizeConfig) {
    let loader = Loader::new(&common::repo_root().join("conf"), "config", "bench").unwrap();
    let composed = loader
        .compose(&[
            format!("data.root={}", root.display()),
            "data.val_fraction=0.25".into(),
        ])
        .unwrap();
    let cfg = loader.typed(&composed).unwrap();
    (cfg.data, cfg.detector, cfg.quantize)
}

/// A model dir holding the tiny classifier's `model.onnx`.
fn model_dir(parent: &Path, name: &str, dim: usize) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, dim);
    onnxfile::write_model(&dir.join("model.onnx"), &tiny.model).unwrap();
    dir
}

fn options(models: Vec<PathBuf>, out: PathBuf, quantized: bool) -> BenchOptions {
    let (data, detector, quantize) = configs(dataset());
    BenchOptions {
        models,
        quantized,
        quantize_missing: false,
        eps: vec![ExecutionProvider::Cpu],
        batches: vec![1, 4],
        threads: Some(1),
        library: None,
        timing: TimingPlan {
            warmup: 1,
            min_iterations: 5,
            min_seconds: 0.0,
            max_iterations: 5,
        },
        out,
        data,
        root: None,
        detector,
        quantize,
        quality: true,
        embeddings_dir: None,
        plots: true,
        progress: false,
        selection: None,
        command: "defectkit bench (test)".into(),
    }
}

/// A float32 `.npy` file (format 1.0) of shape `shape`.
fn write_npy(path: &Path, shape: [usize; 4], values: &[f32]) {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}",
        shape[0], shape[1], shape[2], shape[3]
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Train-split images preprocessed by the model's spec, as the quantizer's
/// `save_calibration` writes them.
fn calibration(model: &Path, cal: &Path) {
    let (data, _, _) = configs(dataset());
    let index = Index::scan(
        dataset(),
        &IndexOptions {
            classes: None,
            val_fraction: data.val_fraction,
            seed: data.split_seed,
            strict: false,
        },
    )
    .unwrap();
    let train: Vec<_> = index.split(Split::Train).cloned().collect();
    let mut m = OnnxModel::load(model, &RuntimeOptions::default()).unwrap();
    let mut values = Vec::new();
    let opts = PipelineOptions {
        batch_size: 8,
        strict: true,
        warn_skipped: true,
    };
    let bar = indicatif::ProgressBar::hidden();
    run_batches(&mut m, &train, opts, &AtomicBool::new(false), &bar, |b| {
        values.extend_from_slice(&b.input)
    })
    .unwrap();
    let n = values.len() / (3 * SIDE * SIDE);
    write_npy(cal, [n, 3, SIDE, SIDE], &values);
}

/// `model.int8.onnx` and `model.int8.ort.onnx` for `dir`: the peer's quantization when its
/// Python is here, else a relabelled copy of the FP32 graph (precision int8), which still
/// exercises every path of the bench.
fn int8_files(dir: &Path) -> bool {
    let fp32 = dir.join("model.onnx");
    if let Some(py) = common::peer_python() {
        let cal = dir.join("calibration.npy");
        calibration(&fp32, &cal);
        let out = dir.join(Variant::Int8Ort.file_name());
        let o = Command::new(py)
            .arg(common::repo_root().join("bench/peers/ort_quantize.py"))
            .args(["--model".as_ref(), fp32.as_os_str()])
            .args(["--calibration".as_ref(), cal.as_os_str()])
            .args(["--out".as_ref(), out.as_os_str()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            summary["ops"]["QuantizeLinear"].as_u64().unwrap_or(0) > 0,
            "{summary}"
        );
        std::fs::copy(&out, dir.join(Variant::Int8.file_name())).unwrap();
        true
    } else {
        let mut model = onnxfile::read_model(&fp32).unwrap();
        let json = onnxfile::metadata_prop(&model, METADATA_KEY)
            .unwrap()
            .replace("\"fp32\"", "\"int8\"");
        onnxfile::set_metadata_prop(&mut model, METADATA_KEY, &json);
        for v in [Variant::Int8, Variant::Int8Ort] {
            onnxfile::write_model(&dir.join(v.file_name()), &model).unwrap();
        }
        false
    }
}

#[test]
fn percentiles_are_numpys_linear_interpolation() {
    // numpy.percentile(s, [50, 95, 99]) (method "linear", the default).
    let s: Vec<f64> = (0..23)
        .map(|i| ((i * 37) % 101) as f64 / 7.0)
        .chain([3.0, 3.0])
        .collect();
    let st = LatencyStats::of(&s).unwrap();
    let expected = [5.714285714285714, 13.228571428571426, 13.754285714285714];
    for (got, want) in [st.p50, st.p95, st.p99].iter().zip(expected) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    let two = LatencyStats::of(&[5.0, 1.0]).unwrap();
    assert_eq!((two.p50, two.min, two.max), (3.0, 1.0, 5.0));
    assert!((two.p95 - 4.8).abs() < 1e-12 && (two.p99 - 4.96).abs() < 1e-12);
    // Nearest-rank would give 5.0 for p95 of [1, 5]: not what we report.
    assert_ne!(two.p95, 5.0);

    if let Some(py) = common::peer_python() {
        let list = s
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        let o = Command::new(py)
            .args([
                "-c",
                &format!(
                    "import numpy as np; print(' '.join(repr(float(v)) for v in \
                     np.percentile([{list}], [50, 95, 99])))"
                ),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let live: Vec<f64> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        for (got, want) in [st.p50, st.p95, st.p99].iter().zip(live) {
            assert!((got - want).abs() < 1e-12, "{got} vs numpy {want}");
        }
    }
}

#[test]
fn bench_measures_every_variant_skips_cuda_and_writes_the_report() {
    let _one = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m", 4);
    let from_peer = int8_files(&dir);
    let out = tmp.path().join("results/quantized");
    let mut opts = options(vec![dir.clone()], out.clone(), true);
    opts.eps = vec![ExecutionProvider::Cpu, ExecutionProvider::Cuda];
    let report = bench(&opts, &AtomicBool::new(false)).unwrap();

    // 3 variants × 2 providers.
    assert_eq!(report.rows.len(), 6);
    for r in &report.rows {
        match r.ep {
            ExecutionProvider::Cuda => {
                let why = r
                    .skipped
                    .as_deref()
                    .expect("cuda is skipped in a CPU build");
                assert!(why.contains("cuda"), "{why}");
                assert!(r.timings.is_empty() && r.load_ms.is_none());
            }
            _ => {
                assert!(r.skipped.is_none(), "{:?}", r.skipped);
                assert_eq!(
                    r.timings.iter().map(|t| t.batch).collect::<Vec<_>>(),
                    [1, 4]
                );
                for t in &r.timings {
                    assert_eq!(t.iterations, 5);
                    let s = t.stats;
                    assert!(s.min <= s.p50 && s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max);
                    assert!(t.throughput > 0.0);
                }
                assert!(r.file_bytes > 0);
            }
        }
    }
    let variants: Vec<Variant> = report.quality.iter().map(|q| q.variant).collect();
    assert_eq!(variants, [Variant::Fp32, Variant::Int8, Variant::Int8Ort]);
    for q in &report.quality {
        assert!(q.auroc.is_some_and(|a| (0.0..=1.0).contains(&a)));
        if q.variant.is_int8() {
            let a = q.vs_fp32.expect("int8 is compared with fp32");
            assert!(a.images > 0 && a.spearman.is_some());
            if !from_peer {
                // A relabelled copy computes exactly what FP32 does.
                assert_eq!(a.max_abs_diff, 0.0);
                assert_eq!(a.spearman, Some(1.0));
            } else {
                assert!(a.mean_cosine > 0.99, "{a:?}");
            }
        }
    }
    let ort = report
        .quality
        .iter()
        .find(|q| q.variant == Variant::Int8Ort);
    let vs_int8 = ort.and_then(|q| q.vs_int8).expect("int8-ort vs int8");
    // Both int8 files are the same graph here.
    assert_eq!(vs_int8.max_abs_diff, 0.0);
    // Goals: speed at both batches, size, AUROC drop, ours vs peer at both batches.
    let names: Vec<&str> = report.goals.iter().map(|g| g.goal.as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.iter().any(|g| g.contains("size")));

    let md = std::fs::read_to_string(tmp.path().join("results/quantized.md")).unwrap();
    if std::env::var_os("BENCH_TEST_PRINT").is_some() {
        eprintln!("{md}");
    }
    assert_eq!(md, report.markdown);
    assert!(md.contains("| m | cnn_scratch | fp32 | cuda |"), "{md}");
    assert!(md.contains("skipped: cuda unavailable"), "{md}");
    assert!(md.contains("## Goals"));
    assert!(md.contains("ONNX Runtime"));
    let csv = std::fs::read_to_string(tmp.path().join("results/quantized.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let columns = lines[0].split(',').count();
    // 3 measured rows × 2 batches + 3 skipped rows.
    assert_eq!(lines.len(), 1 + 6 + 3, "{csv}");
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), columns, "{l}");
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(",cuda,skipped,"))
            .count(),
        3
    );
    for png in ["latency_b1.png", "latency_b4.png", "size.png", "auroc.png"] {
        let p = out.join(png);
        assert!(p.is_file(), "{}", p.display());
        assert_eq!(&std::fs::read(&p).unwrap()[..4], b"\x89PNG");
    }
    for f in &report.files {
        assert!(f.is_file(), "{}", f.display());
    }
}

#[test]
fn a_variant_missing_its_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "only_fp32", 4);
    let out = tmp.path().join("r");
    let opts = options(vec![dir.clone()], out.clone(), true);
    let e = bench(&opts, &AtomicBool::new(false)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, BenchError::MissingFile { path, .. } if path == &dir.join("model.int8.onnx")),
        "{e:?}"
    );
    assert!(
        msg.contains("model.int8.onnx") && msg.contains("defectkit quantize"),
        "{msg}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = bench(
        &options(vec![empty.clone()], out.clone(), false),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(&empty.join("model.onnx").display().to_string()),
        "{e}"
    );
    assert!(!out.exists() && !tmp.path().join("r.md").exists());

    // A cancelled run writes nothing either.
    let e = bench(
        &options(vec![dir], out.clone(), false),
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(matches!(e, BenchError::Interrupted), "{e:?}");
    assert!(!tmp.path().join("r.md").exists());
}

#[test]
fn top_ranks_on_train_and_val_embeddings_only() {
    let _one = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (data, detector, _) = configs(dataset());
    let mut dirs = Vec::new();
    for (name, dim) in [("small", 2), ("wide", 6)] {
        let dir = model_dir(tmp.path(), name, dim);
        // Train and val only: no test split exists for --top to peek at.
        let opts = EmbedOptions {
            model: dir.join("model.onnx"),
            root: None,
            out: dir.join("embeddings.h5"),
            runtime: RuntimeOptions::default(),
            batch_size: 8,
            splits: vec![Split::Train, Split::Val],
            progress: false,
            recon_pool: 8,
            maps: None,
        };
        embed(&data, &opts, &AtomicBool::new(false)).unwrap();
        dirs.push(dir);
    }
    let none = model_dir(tmp.path(), "no_embeddings", 4);
    dirs.push(none.clone());
    let sel = select_top(&dirs, 1, &detector).unwrap();
    assert_eq!(sel.ranked.len(), 2);
    assert_eq!(sel.picked.len(), 1);
    assert_eq!(sel.picked[0], sel.ranked[0].dir);
    assert_eq!(sel.excluded.len(), 1);
    assert_eq!(sel.excluded[0].0, none);
    for c in &sel.ranked {
        assert!((0.0..=1.0).contains(&c.val_out_of_class_auroc), "{c:?}");
        assert!(c.val_images > 0);
    }
    let ranks: Vec<usize> = sel.ranked.iter().map(|c| c.rank).collect();
    assert_eq!(ranks, [1, 2]);
    let first = &sel.ranked[0];
    let second = &sel.ranked[1];
    assert!(
        first.val_out_of_class_auroc > second.val_out_of_class_auroc
            || (first.val_out_of_class_auroc == second.val_out_of_class_auroc
                && first.val_median_ratio <= second.val_median_ratio)
    );
    let e = select_top(&[none], 1, &detector).unwrap_err();
    assert!(e.to_string().contains("embeddings.h5"), "{e}");
}
