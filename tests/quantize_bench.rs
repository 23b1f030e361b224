//! `defectkit quantize` and `defectkit bench --quantized` end to end through the binary, on a
//! small synthetic set with a Rust-built ResNet-shaped model (`onnx::testing::conv_classifier`):
//! the int8 file and its fusion report, the refusals a user meets (a second quantization, a
//! missing file, an accuracy-aware run without a detector), and a bench whose unavailable
//! GPU provider is a skipped row, never a CPU run, and which refuses a dir without a model
//! and a zero batch size.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use defectkit::data::synth::{generate, SynthOptions};
use defectkit::onnx::testing::conv_classifier;
use defectkit::onnx::{self as onnxfile};

use common::run_cli;

const SIDE: usize = 32;
const CLASSES: [&str; 2] = ["bottle", "carpet"];

fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("defectkit-quantize-test-{}", std::process::id()));
        let opts = SynthOptions {
            seed: 3,
            image_size: 40,
            train_good: 6,
            test_good: 2,
            test_defect_per_type: 1,
            classes: Some(CLASSES.iter().map(|s| s.to_string()).collect()),
            force: true,
        };
        generate(&opts, &dir, false).expect("generate data");
        dir
    })
}

#[test]
fn quantize_then_bench_quantized_on_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let models = work.path().join("m");
    std::fs::create_dir_all(&models).unwrap();
    let (model, _) = conv_classifier(SIDE, &CLASSES, 8, 2);
    let fp32 = models.join("model.onnx");
    onnxfile::write_model(&fp32, &model).unwrap();
    let root = format!("data.root={}", dataset().display());
    let fp32_s = fp32.to_str().unwrap();

    let (ok, out, err) = run_cli(
        work.path(),
        &[
            "quantize",
            fp32_s,
            &root,
            "--require-fused",
            "--threads",
            "1",
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("QLinearConv") && out.contains("0 quantized node(s) left float"),
        "{out}"
    );
    let int8 = models.join("model.int8.onnx");
    assert!(int8.is_file());

    // Quantizing the int8 file again is refused, naming it.
    let (ok, _, err) = run_cli(work.path(), &["quantize", int8.to_str().unwrap(), &root]);
    assert!(!ok);
    assert!(
        err.contains("already quantized") && err.contains("model.int8.onnx"),
        "{err}"
    );
    // A missing model, and an accuracy-aware run without a detector.
    let (ok, _, err) = run_cli(work.path(), &["quantize", "nope.onnx", &root]);
    assert!(!ok && err.contains("nope.onnx"), "{err}");
    let (ok, _, err) = run_cli(
        work.path(),
        &["quantize", fp32_s, "--max-drop", "0.1", &root],
    );
    assert!(!ok && err.contains("detector"), "{err}");

    // The bench: FP32 and INT8 side by side; cuda cannot load in this build and is a
    // skipped row.
    let out_base = work.path().join("bench/quantized");
    let (ok, out, err) = run_cli(
        work.path(),
        &[
            "bench",
            "--quantized",
            "--models",
            models.to_str().unwrap(),
            "--ep",
            "cpu,cuda",
            "--batch",
            "1,2",
            "--iterations",
            "3",
            "--min-seconds",
            "0",
            "--no-plots",
            "--out",
            out_base.to_str().unwrap(),
            &root,
        ],
    );
    assert!(ok, "{out}\n{err}");
    let md = std::fs::read_to_string(out_base.with_extension("md")).unwrap();
    assert!(md.contains("| int8 |"), "{md}");
    assert!(
        md.contains("skipped"),
        "the cuda rows must say skipped:\n{md}"
    );
    let csv = std::fs::read_to_string(out_base.with_extension("csv")).unwrap();
    assert!(csv.lines().count() > 3, "{csv}");

    // A dir without a model and a zero batch size are refused, naming what is wrong.
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = run_cli(
        work.path(),
        &["bench", "--models", empty.to_str().unwrap(), &root],
    );
    assert!(!ok && err.contains("model.onnx"), "{err}");
    let (ok, _, err) = run_cli(
        work.path(),
        &[
            "bench",
            "--models",
            models.to_str().unwrap(),
            "--batch",
            "0",
            &root,
        ],
    );
    assert!(!ok && err.contains("--batch"), "{err}");
}
