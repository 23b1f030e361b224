//! The deployment side end to end: export A, B, C and the teacher to ONNX; ONNX Runtime (ours
//! and onnxruntime-Python) reproduces Burn within 1e-4; the ONNX checker passes; `embed`
//! writes the documented HDF5 schema (read back by h5py too); bad input gives clear errors;
//! an interrupted embed leaves no file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use defectkit::burn::prelude::*;
use defectkit::data::mvtec::Split;
use defectkit::data::synth::{generate, SynthOptions};
use defectkit::data::PreprocessSpec;
use defectkit::embed::{embed, EmbedError, EmbedOptions};
use defectkit::export::{export_network, Network};
use defectkit::models::{ClassifierConfig, ResNet18Config, UNetConfig, UpsampleMode};
use defectkit::onnx::Parity;
use defectkit::onnx::{self as onnxfile, ModelKind, ModelMetadata, Precision};
use defectkit::runtime::{OnnxModel, RuntimeError, RuntimeOptions};
use defectkit::store::EmbeddingStore;

const SIDE: usize = 32;
const CLASSES: [&str; 3] = ["bottle", "carpet", "screw"];

/// A small synthetic set (3 categories, 32 px) shared by the tests of this file.
fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("defectkit-deploy-test-{}", std::process::id()));
        let opts = SynthOptions {
            seed: 3,
            image_size: 48,
            train_good: 8,
            test_good: 3,
            test_defect_per_type: 1,
            classes: Some(CLASSES.iter().map(|s| s.to_string()).collect()),
            force: true,
        };
        generate(&opts, &dir, false).expect("generate data");
        dir
    })
}

fn classes() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

fn metadata(kind: ModelKind) -> ModelMetadata {
    ModelMetadata {
        kind,
        precision: Precision::Fp32,
        preprocess: PreprocessSpec::imagenet(SIDE as u32),
        classes: classes(),
        input_shape: [3, SIDE, SIDE],
        embedding_dim: 0,
        outputs: vec![],
        run_id: "test".into(),
        config_hash: "0".repeat(64),
        defectkit_version: env!("CARGO_PKG_VERSION").into(),
        checkpoint: "none".into(),
        opset: 0,
        data_split: None,
        features: None,
    }
}

/// Fresh networks of every exportable kind (names for messages).
fn networks(device: &Device) -> Vec<(&'static str, Network)> {
    let n = CLASSES.len();
    vec![
        (
            "A",
            Network::new(
                ModelKind::CnnScratch,
                ClassifierConfig::new(n).with_width(8).init(device),
            ),
        ),
        (
            "B",
            Network::new(
                ModelKind::CnnDistilled,
                ClassifierConfig::new(n)
                    .with_width(16)
                    .with_hidden(Some(32))
                    .with_dropout(0.3)
                    .init(device),
            ),
        ),
        (
            "C",
            Network::new(
                ModelKind::UnetAe,
                UNetConfig::new(SIDE)
                    .with_depth(2)
                    .with_base_width(8)
                    .with_latent_dim(24)
                    .init(device),
            ),
        ),
        (
            "C skip bilinear",
            Network::new(
                ModelKind::UnetAe,
                UNetConfig::new(SIDE)
                    .with_depth(3)
                    .with_base_width(4)
                    .with_latent_dim(8)
                    .with_skip_connections(true)
                    .with_upsample(UpsampleMode::Bilinear)
                    .init(device),
            ),
        ),
        (
            "teacher",
            Network::new(
                ModelKind::Teacher,
                ResNet18Config::new().with_num_classes(n).init(device),
            ),
        ),
    ]
}

fn export_to(dir: &Path, network: &Network, device: &Device) -> PathBuf {
    let (model, _) = export_network(network, metadata(network.kind()), device).unwrap();
    let path = dir.join(format!("{}.onnx", network.kind().as_str()));
    onnxfile::write_model(&path, &model).unwrap();
    path
}

/// Seeded inputs in [-2, 2].
fn random_input(batch: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..batch * 3 * SIDE * SIDE)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn burn_outputs(network: &Network, input: &[f32], device: &Device) -> (Vec<f32>, Vec<f32>) {
    let batch = input.len() / (3 * SIDE * SIDE);
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [batch, 3, SIDE, SIDE]),
        device,
    );
    let out = network.outputs(x);
    (out.primary, out.embedding)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// onnx.checker + onnxruntime-Python on `input`; returns (summary JSON, outputs by name).
fn python_peer(
    py: &Path,
    model: &Path,
    input: &[f32],
    batch: usize,
) -> (serde_json::Value, Vec<(String, Vec<f32>)>) {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.f32");
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_path, bytes).unwrap();
    let prefix = dir.path().join("out");
    let out = Command::new(py)
        .arg(common::repo_root().join("tests/peers/onnx_peer.py"))
        .arg("model")
        .arg(model)
        .arg(&input_path)
        .arg(format!("{batch},3,{SIDE},{SIDE}"))
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python peer failed on {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let n = n.as_str().unwrap().to_string();
            let v = read_f32(&dir.path().join(format!("out.{n}.f32")));
            (n, v)
        })
        .collect();
    (json, outputs)
}

#[test]
fn every_model_exports_and_onnx_runtime_matches_burn() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let py = common::peer_python();
    for (name, network) in networks(&device) {
        let path = export_to(dir.path(), &network, &device);
        let proto = onnxfile::read_model(&path).unwrap();
        assert_eq!(onnxfile::input_names(&proto), ["input"], "{name}");
        let primary = network.kind().primary_output();
        assert_eq!(
            onnxfile::output_names(&proto),
            [primary, "embedding", "features"],
            "{name}"
        );
        assert!(onnxfile::opset_version(&proto).unwrap() >= 13, "{name}");
        let graph = proto.graph.as_ref().unwrap();
        let input = graph.input.iter().find(|v| v.name == "input").unwrap();
        let dims = onnxfile::value_dims(input);
        assert_eq!(
            dims,
            [None, Some(3), Some(SIDE as i64), Some(SIDE as i64)],
            "{name}: batch must be symbolic"
        );
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(!ops.contains(&"ConvTranspose"), "{name}");

        let mut model = OnnxModel::load(&path, &RuntimeOptions::default()).unwrap();
        assert_eq!(model.metadata.kind, network.kind());
        assert_eq!(model.metadata.classes, classes());
        for batch in [1, 3] {
            let input = random_input(batch, batch as u64);
            let (burn_primary, burn_embedding) = burn_outputs(&network, &input, &device);
            let out = model.run(&input).unwrap();
            assert_eq!(out.embedding.len(), batch * model.metadata.embedding_dim);
            for (what, reference, got) in [
                (primary, &burn_primary, &out.primary),
                ("embedding", &burn_embedding, &out.embedding),
            ] {
                let p = Parity::of(reference, got);
                assert!(
                    p.max_abs_diff <= 1e-4,
                    "{name} batch {batch} {what}: max |ORT − Burn| = {} (values up to {})",
                    p.max_abs_diff,
                    p.max_abs_value
                );
            }
            if let Some(py) = &py {
                let (json, outputs) = python_peer(py, &path, &input, batch);
                assert_eq!(json["checker"], "ok");
                assert_eq!(json["input_shape"][0], "batch", "{name}: {json}");
                assert!(json["metadata"]["defectkit"].is_string(), "{name}");
                let by_name = |n: &str| &outputs.iter().find(|(k, _)| k == n).unwrap().1;
                for (what, ours) in [(primary, &out.primary), ("embedding", &out.embedding)] {
                    let p = Parity::of(by_name(what), ours);
                    assert!(
                        p.max_abs_diff <= 1e-5,
                        "{name} {what}: defectkit runtime vs onnxruntime-Python differ by {}",
                        p.max_abs_diff
                    );
                }
            }
        }
    }
}

fn embed_options(model: &Path, out: &Path) -> EmbedOptions {
    EmbedOptions {
        model: model.to_path_buf(),
        root: Some(dataset().to_path_buf()),
        out: out.to_path_buf(),
        runtime: RuntimeOptions::default(),
        batch_size: 4,
        splits: vec![Split::Train, Split::Val, Split::Test],
        progress: false,
        recon_pool: 8,
        maps: None,
    }
}

fn embed_overrides() -> Vec<String> {
    vec![
        format!("data.root={}", dataset().display()),
        "data.val_fraction=0.25".into(),
    ]
}

fn data_config() -> defectkit::config::schema::DataConfig {
    let loader =
        defectkit::config::Loader::new(&common::repo_root().join("conf"), "config", "embed")
            .unwrap();
    let composed = loader.compose(&embed_overrides()).unwrap();
    loader.typed(&composed).unwrap().data
}

#[test]
fn embed_writes_the_documented_schema() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let nets = networks(&device);
    let index = defectkit::data::mvtec::Index::scan(
        dataset(),
        &defectkit::data::mvtec::IndexOptions {
            classes: Some(classes()),
            val_fraction: 0.25,
            seed: 0,
            strict: false,
        },
    )
    .unwrap();
    for (name, network) in [&nets[0], &nets[2]] {
        let model_path = export_to(dir.path(), network, &device);
        let out = dir.path().join(format!("{}.h5", network.kind().as_str()));
        // Through the CLI, as users run it.
        let mut args = vec![
            "embed".to_string(),
            "--model".into(),
            model_path.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--batch-size".into(),
            "5".into(),
        ];
        args.extend(embed_overrides());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = common::run_cli(&common::repo_root(), &args);
        assert!(ok, "{name}: {stderr}");
        assert!(stdout.contains("embedded train"), "{stdout}");

        let store = EmbeddingStore::open(&out).unwrap();
        let a = &store.attributes;
        let is_ae = network.kind() == ModelKind::UnetAe;
        assert_eq!(a.model_kind, network.kind().as_str());
        assert_eq!(a.precision, "fp32");
        assert_eq!(
            a.model_sha256,
            defectkit::embed::sha256_file(&model_path).unwrap()
        );
        assert_eq!(a.defectkit_version, env!("CARGO_PKG_VERSION"));
        let spec: PreprocessSpec = serde_json::from_str(&a.preprocess).unwrap();
        assert_eq!(spec, PreprocessSpec::imagenet(SIDE as u32));
        let dim = a.embedding_dim;
        // C: z (latent_dim 24); A: pooled conv3_x, twice the width (8).
        assert_eq!(dim, if is_ae { 24 } else { 2 * 8 });
        for split in [Split::Train, Split::Val, Split::Test] {
            let r = store.split(split.as_str()).unwrap();
            assert_eq!(r.len(), index.count(split), "{name} {split:?}");
            assert_eq!(r.embeddings.len(), r.len() * dim);
            assert!(r.embeddings.iter().all(|v| v.is_finite()));
            for i in 0..r.len() {
                assert_eq!(r.label[i] == 0, r.defect_type[i] == "good");
                assert!(CLASSES.contains(&r.class[i].as_str()));
            }
            match (&r.recon_error, is_ae) {
                (Some(e), true) => {
                    assert_eq!(e.len(), r.len());
                    assert!(e.iter().all(|v| v.is_finite() && *v >= 0.0));
                }
                (None, false) => {}
                other => panic!("{name}: recon_error presence wrong: {other:?}"),
            }
            if split != Split::Test {
                assert!(r.label.iter().all(|&l| l == 0), "defects in {split:?}");
            } else {
                assert!(r.label.contains(&1) && r.label.contains(&0));
            }
        }
        // A stored embedding equals the model's output for that image.
        let test = store.split("test").unwrap();
        let mut model = OnnxModel::load(&model_path, &RuntimeOptions::default()).unwrap();
        let img = defectkit::data::image_io::load_rgb8(Path::new(&test.path[0])).unwrap();
        let x = spec.to_tensor(&spec.prepare(&img));
        let direct = model.run(&x).unwrap();
        let p = Parity::of(&direct.embedding, &test.embeddings[..dim]);
        assert!(p.max_abs_diff <= 1e-5, "{name}: stored vs direct {p:?}");
        if is_ae {
            let e = defectkit::embed::recon_errors(&x, &direct.primary, x.len())[0];
            assert!((e - test.recon_error.as_ref().unwrap()[0]).abs() <= 1e-5 * e.max(1.0));
        }

        // h5py sees the same arrays and attributes.
        if let Some(py) = common::peer_python() {
            let o = Command::new(py)
                .arg(common::repo_root().join("tests/peers/onnx_peer.py"))
                .arg("h5")
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(j["attrs"]["model_sha256"], a.model_sha256.as_str());
            assert_eq!(j["attrs"]["embedding_dim"], dim as u64);
            assert_eq!(j["attrs"]["precision"], "fp32");
            for (split, r) in &store.splits {
                let s = &j["splits"][split];
                let emb = &s["embeddings"];
                assert_eq!(emb["shape"], serde_json::json!([r.len(), dim]));
                assert_eq!(emb["dtype"], "float32");
                assert_eq!(
                    emb["compression"], "gzip",
                    "{split}: embeddings not compressed"
                );
                let sum: f64 = r.embeddings.iter().map(|&v| v as f64).sum();
                let peer_sum = emb["sum"].as_f64().unwrap();
                assert!((sum - peer_sum).abs() <= 1e-6 * sum.abs().max(1.0));
                let first: Vec<f64> = r.embeddings[..dim].iter().map(|&v| v as f64).collect();
                assert_eq!(emb["first"], serde_json::json!(first));
                assert_eq!(s["label"]["dtype"], "uint8");
                assert_eq!(s["path"]["values"], serde_json::json!(r.path));
                assert_eq!(s["class"]["values"], serde_json::json!(r.class));
                assert_eq!(s["defect_type"]["values"], serde_json::json!(r.defect_type));
                assert_eq!(s["recon_error"].is_object(), is_ae);
            }
        }
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let nets = networks(&device);
    let good = export_to(dir.path(), &nets[0].1, &device);
    let opts = RuntimeOptions::default();

    // A missing file.
    let missing = dir.path().join("nope.onnx");
    let e = OnnxModel::load(&missing, &opts).unwrap_err();
    assert!(e.to_string().contains("cannot read ONNX model"), "{e}");
    assert!(e.to_string().contains("nope.onnx"), "{e}");

    // Garbage and a truncated export.
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf \xff\xfe\x00\x01").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for bad in [&garbage, &truncated] {
        let e = OnnxModel::load(bad, &opts).unwrap_err();
        assert!(
            matches!(e, RuntimeError::Onnx(onnxfile::OnnxError::Malformed { .. })),
            "{}: {e}",
            bad.display()
        );
        assert!(e.to_string().contains("not a valid ONNX model"), "{e}");
    }

    // A valid ONNX file that defectkit did not export.
    let mut proto = onnxfile::read_model(&good).unwrap();
    proto.metadata_props.clear();
    let foreign = dir.path().join("foreign.onnx");
    onnxfile::write_model(&foreign, &proto).unwrap();
    let e = OnnxModel::load(&foreign, &opts).unwrap_err();
    assert!(e.to_string().contains("not a model exported by"), "{e}");

    // A wrong input size.
    let mut model = OnnxModel::load(&good, &opts).unwrap();
    let e = model.run(&vec![0.0; 3 * 16 * 16]).unwrap_err();
    assert!(matches!(e, RuntimeError::InputShape { .. }), "{e}");
    assert!(e.to_string().contains("[3, 32, 32]"), "{e}");
    // A model whose preprocessing disagrees with its input (edited metadata) is refused
    // when it is opened, naming the file and the field, before any image is decoded.
    let mut proto = onnxfile::read_model(&good).unwrap();
    let mut meta =
        ModelMetadata::from_json(onnxfile::metadata_prop(&proto, onnxfile::METADATA_KEY).unwrap())
            .unwrap();
    meta.preprocess = PreprocessSpec::imagenet(48);
    onnxfile::set_metadata_prop(&mut proto, onnxfile::METADATA_KEY, &meta.to_json());
    let resized = dir.path().join("resized.onnx");
    onnxfile::write_model(&resized, &proto).unwrap();
    let out = dir.path().join("resized.h5");
    let e = embed(
        &data_config(),
        &embed_options(&resized, &out),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("resized.onnx") && msg.contains("input_shape"),
        "{msg}"
    );
    assert!(!out.exists());

    // Through the CLI: a missing ONNX Runtime library names the install command; a GPU
    // provider in a CPU build is an error, not a silent CPU run; a malformed model.
    let root = common::repo_root();
    let out = dir.path().join("x.h5");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "embed".into(),
            "--model".into(),
            good.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(embed_overrides());
        v
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_cli(&root, &args)
    };
    let (ok, _, stderr) = run(base(&["--ort-lib", "/nonexistent/libonnxruntime.so"]));
    assert!(!ok);
    assert!(stderr.contains("scripts/setup-ort.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A file that is not a shared library at all.
    let fake_lib = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake_lib, b"not an ELF file").unwrap();
    let (ok, _, stderr) = run(base(&["--ort-lib", &fake_lib.display().to_string()]));
    assert!(!ok);
    assert!(
        stderr.contains("cannot load the ONNX Runtime library"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    if !cfg!(feature = "ort-gpu") {
        let (ok, _, stderr) = run(base(&["--ep", "cuda"]));
        assert!(!ok);
        assert!(stderr.contains("ort-gpu"), "{stderr}");
    }
    let (ok, _, stderr) = run(base(&["--ep", "tpu"]));
    assert!(!ok);
    assert!(stderr.contains("unknown execution provider"), "{stderr}");
    let mut args = base(&[]);
    args[2] = garbage.display().to_string();
    let (ok, _, stderr) = run(args);
    assert!(!ok);
    assert!(stderr.contains("not a valid ONNX model"), "{stderr}");
    assert!(!out.exists());
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".h5"))
        .collect()
}

#[test]
fn an_interrupted_embed_leaves_no_file() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let nets = networks(&device);
    let model = export_to(dir.path(), &nets[4].1, &device);
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();

    // Library: a cancelled run returns Interrupted and writes nothing.
    let out = out_dir.join("cancelled.h5");
    let e = embed(
        &data_config(),
        &embed_options(&model, &out),
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(matches!(e, EmbedError::Interrupted), "{e}");
    assert!(leftovers(&out_dir).is_empty(), "{:?}", leftovers(&out_dir));

    // CLI: SIGINT at several points of a run. Whatever the timing, the output is either
    // absent (interrupted: exit 130, or killed before the handler was installed) or complete.
    let mut interrupted = 0;
    for delay_ms in [150u64, 400, 800, 1500] {
        let out = out_dir.join(format!("sigint-{delay_ms}.h5"));
        let mut args = vec![
            "embed".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--batch-size".into(),
            "1".into(),
            "--threads".into(),
            "1".into(),
        ];
        args.extend(embed_overrides());
        let child = Command::new(common::defectkit_bin())
            .args(&args)
            .current_dir(common::repo_root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            EmbeddingStore::open(&out).expect("a finished run leaves a complete file");
        } else {
            interrupted += 1;
            assert!(
                !out.exists(),
                "{delay_ms} ms: partial output left: {stderr}"
            );
            if output.status.code() == Some(130) {
                assert!(stderr.contains("interrupted"), "{stderr}");
            }
        }
        let temp: Vec<String> = leftovers(&out_dir)
            .into_iter()
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(temp.is_empty(), "temporary files left: {temp:?}");
    }
    assert!(
        interrupted > 0,
        "no run was interrupted; the test proved nothing"
    );
}

#[test]
fn export_cli_turns_trained_runs_into_models() {
    let tmp = tempfile::tempdir().unwrap();
    let run_a = tmp.path().join("run_a");
    let run_b = tmp.path().join("run_b");
    let tiny = |model: &str, run: &Path| -> Vec<String> {
        let mut v = vec![
            "train".to_string(),
            format!("model={model}"),
            format!("data.root={}", dataset().display()),
            "data.preprocess.resize=32".into(),
            "data.val_fraction=0.25".into(),
            "trainer.max_epochs=1".into(),
            "trainer.batch_size=8".into(),
            "model.width=8".into(),
            format!("paths.root_dir={}", tmp.path().display()),
            format!("hydra.run.dir={}", run.display()),
        ];
        if model == "cnn_distilled" {
            v.push("model.teacher.train_epochs=1".into());
        }
        v
    };
    for (model, run) in [("cnn_scratch", &run_a), ("cnn_distilled", &run_b)] {
        let args = tiny(model, run);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = common::run_cli(tmp.path(), &args);
        assert!(ok, "training {model}: {stderr}");
    }
    let export = |run: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "export".to_string(),
            run.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_cli(tmp.path(), &args)
    };
    for (run, extra, kind) in [
        (&run_a, &[][..], ModelKind::CnnScratch),
        (&run_b, &[][..], ModelKind::CnnDistilled),
        (&run_b, &["--teacher"][..], ModelKind::Teacher),
    ] {
        let out = tmp.path().join(format!("export-{}", kind.as_str()));
        let (ok, stdout, stderr) = export(run, &out, extra);
        assert!(ok, "{kind:?}: {stderr}");
        assert!(
            stdout.contains("check: ONNX Runtime vs Burn"),
            "{kind:?}: {stdout}"
        );
        let json: ModelMetadata =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap())
                .unwrap();
        assert_eq!(json.kind, kind);
        assert_eq!(json.classes, classes());
        assert_eq!(json.input_shape, [3, 32, 32]);
        assert_eq!(json.config_hash.len(), 64);
        let embedded = onnxfile::read_model(&out.join("model.onnx")).unwrap();
        let inside =
            ModelMetadata::from_json(onnxfile::metadata_prop(&embedded, "defectkit").unwrap())
                .unwrap();
        assert_eq!(inside, json, "model.json and the ONNX metadata agree");
        assert_matches_snapshot(&out.join("model.json"), kind);
    }
    // Wrong targets are clear errors.
    let (ok, _, stderr) = export(&run_a, &tmp.path().join("x"), &["--teacher"]);
    assert!(!ok);
    assert!(stderr.contains("--teacher needs a model B"), "{stderr}");
    let (ok, _, stderr) = export(&tmp.path().join("no-such-run"), &tmp.path().join("y"), &[]);
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("y").exists());
}

/// `model.json` minus the fields that change from run to run (run id, config hash, version)
/// equals `tests/fixtures/model_json/<kind>.json`: what export writes stays what it wrote
/// before a refactor. `DEFECTKIT_UPDATE_SNAPSHOTS=1` rewrites the fixture (a deliberate change).
fn assert_matches_snapshot(model_json: &Path, kind: ModelKind) {
    let mut got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_json).unwrap()).unwrap();
    let map = got.as_object_mut().unwrap();
    for volatile in ["run_id", "config_hash", "defectkit_version"] {
        assert!(
            map.remove(volatile).is_some(),
            "model.json lacks {volatile}"
        );
    }
    let fixture = common::repo_root()
        .join("tests/fixtures/model_json")
        .join(format!("{}.json", kind.as_str()));
    if std::env::var("DEFECTKIT_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display())),
    )
    .unwrap();
    assert_eq!(got, want, "model.json differs from {}", fixture.display());
}

/// A model file whose own metadata is broken (here a zero `std`, which would divide every
/// pixel by zero) is refused by `embed` up front, naming the file and the field, with no
/// output written; it used to embed all-NaN vectors and exit 0.
#[test]
fn embed_refuses_a_model_whose_metadata_the_config_layer_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = onnxfile::testing::TinyModel::classifier(ModelKind::CnnScratch, 16, &["a"], 4);
    let mut meta = tiny.metadata.clone();
    meta.preprocess.std = [0.0, 0.224, 0.225];
    let mut model = tiny.model.clone();
    model.metadata_props.clear();
    onnxfile::set_metadata_prop(&mut model, onnxfile::METADATA_KEY, &meta.to_json());
    let path = dir.path().join("tampered.onnx");
    onnxfile::write_model(&path, &model).unwrap();
    let out = dir.path().join("out.h5");
    let mut args = vec![
        "embed".to_string(),
        "--model".into(),
        path.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(embed_overrides());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = common::run_cli(&common::repo_root(), &args);
    assert!(!ok, "a zero std was embedded");
    assert!(stderr.contains("tampered.onnx"), "{stderr}");
    assert!(stderr.contains("preprocess"), "{stderr}");
    assert!(!out.exists(), "an output was written");
}
