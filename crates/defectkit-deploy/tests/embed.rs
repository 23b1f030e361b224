//! The shared pipeline and `embed` on a tiny synthetic set with Rust-built ONNX models: what
//! is stored equals direct runs of the model, h5py reads the same file, undecodable images
//! are skipped or fatal as asked, and a cancelled run writes nothing. No Burn is compiled.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::Loader;
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};
use defectkit_core::data::synth::{generate, SynthOptions};
use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind, Parity};
use defectkit_deploy::embed::{embed, EmbedError, EmbedOptions};
use defectkit_deploy::pipeline::{run_batches, PipelineError, PipelineOptions};
use defectkit_deploy::runtime::{OnnxModel, RuntimeOptions};
use defectkit_deploy::store::EmbeddingStore;

const SIDE: usize = 32;
const CLASSES: [&str; 2] = ["bottle", "carpet"];

/// A small synthetic set shared by the tests of this file (generated once).
fn dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let opts = SynthOptions {
                seed: 5,
                image_size: 40,
                train_good: 4,
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
    let loader = Loader::new(&common::repo_root().join("conf"), "config", "embed").unwrap();
    let composed = loader
        .compose(&[
            format!("data.root={}", root.display()),
            "data.val_fraction=0.25".into(),
        ])
        .unwrap();
    loader.typed(&composed).unwrap().data
}

fn write_model(dir: &Path, tiny: &TinyModel) -> PathBuf {
    let path = dir.join(format!("{}.onnx", tiny.metadata.kind.as_str()));
    onnxfile::write_model(&path, &tiny.model).unwrap();
    path
}

fn test_samples(root: &Path) -> Vec<Sample> {
    let opts = IndexOptions {
        classes: None,
        val_fraction: 0.25,
        seed: 0,
        strict: false,
    };
    let index = Index::scan(root, &opts).unwrap();
    index.split(Split::Test).cloned().collect()
}

#[test]
fn the_pipeline_batches_skips_and_stops_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4);
    let mut model =
        OnnxModel::load(&write_model(dir.path(), &tiny), &RuntimeOptions::default()).unwrap();
    let mut items: Vec<PathBuf> = test_samples(dataset())
        .into_iter()
        .map(|s| s.path)
        .collect();
    let n_images = items.len();
    assert!(n_images >= 6, "{n_images} test images");
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    items.insert(2, corrupt.clone());
    let bar = indicatif::ProgressBar::hidden();
    let never = AtomicBool::new(false);

    let lenient = PipelineOptions {
        batch_size: 4,
        strict: false,
        warn_skipped: true,
    };
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let skipped = run_batches(&mut model, &items, lenient, &never, &bar, |b| {
        sizes.push(b.items.len());
        assert_eq!(b.input.len(), b.items.len() * 3 * SIDE * SIDE);
        assert_eq!(b.outputs.embedding.len(), b.items.len() * 4);
        seen.extend(b.items.iter().map(|p| (*p).clone()));
    })
    .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, corrupt);
    assert_eq!(sizes[0], 3, "the first batch lost its corrupt image");
    assert_eq!(sizes.iter().sum::<usize>(), n_images);
    let mut expected = items.clone();
    expected.retain(|p| p != &corrupt);
    assert_eq!(seen, expected, "order kept");
    assert_eq!(bar.position() as usize, n_images + 1);

    let strict = PipelineOptions {
        batch_size: 4,
        strict: true,
        warn_skipped: true,
    };
    let e = run_batches(&mut model, &items, strict, &never, &bar, |_| {}).unwrap_err();
    assert!(
        matches!(&e, PipelineError::Data(_)) && e.to_string().contains("corrupt.png"),
        "{e}"
    );

    let stop = AtomicBool::new(true);
    let mut calls = 0;
    let e = run_batches(&mut model, &items, lenient, &stop, &bar, |_| calls += 1).unwrap_err();
    assert!(matches!(e, PipelineError::Interrupted));
    assert_eq!(calls, 0);
}

#[test]
fn embed_stores_what_the_model_computes_and_h5py_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_config(dataset());
    for tiny in [
        TinyModel::classifier(ModelKind::Teacher, SIDE, &CLASSES, 6),
        TinyModel::autoencoder(SIDE, &CLASSES, 3),
    ] {
        let kind = tiny.metadata.kind;
        let model_path = write_model(dir.path(), &tiny);
        let out = dir.path().join(format!("{}.h5", kind.as_str()));
        let opts = EmbedOptions {
            model: model_path.clone(),
            root: None,
            out: out.clone(),
            runtime: RuntimeOptions::default(),
            batch_size: 3,
            splits: vec![Split::Train, Split::Val, Split::Test],
            progress: false,
            recon_pool: 8,
            maps: None,
        };
        let report = embed(&data, &opts, &AtomicBool::new(false)).unwrap();
        assert!(report.skipped.is_empty());
        let store = EmbeddingStore::open(&out).unwrap();
        assert_eq!(store.attributes.model_kind, kind.as_str());
        assert_eq!(store.attributes.embedding_dim, tiny.metadata.embedding_dim);
        let counts: Vec<(String, usize)> = report
            .counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect();
        assert_eq!(counts.len(), 3);
        let test = store.split("test").unwrap();
        let n_test = test.len();
        assert_eq!(counts[2], ("test".to_string(), n_test));
        assert_eq!(
            test.label.iter().filter(|&&l| l == 1).count(),
            test.defect_type.iter().filter(|d| *d != "good").count()
        );
        assert!(test.label.contains(&0) && test.label.contains(&1));

        // Every stored test row equals a direct run of the model on that image.
        let mut model = OnnxModel::load(&model_path, &RuntimeOptions::default()).unwrap();
        let spec = model.metadata.preprocess.clone();
        let dim = tiny.metadata.embedding_dim;
        for (i, path) in test.path.iter().enumerate() {
            let img = defectkit_core::data::image_io::load_rgb8(Path::new(path)).unwrap();
            let mut x = vec![0.0f32; model.sample_len()];
            spec.normalize_into(&spec.prepare(&img), &mut x).unwrap();
            let direct = model.run(&x).unwrap();
            let stored = &test.embeddings[i * dim..(i + 1) * dim];
            let p = Parity::of(&direct.embedding, stored);
            assert!(p.within(1e-6), "{kind:?} {path}: {p:?}");
            assert!(Parity::of(&tiny.forward(&x).1, stored).within(1e-5));
            if kind.is_autoencoder() {
                let e = defectkit_deploy::embed::recon_errors(&x, &direct.primary, x.len())[0];
                let stored_e = test.recon_error.as_ref().unwrap()[i];
                assert!(
                    (e - stored_e).abs() <= 1e-6 * e.max(1.0),
                    "{e} vs {stored_e}"
                );
            } else {
                assert!(test.recon_error.is_none());
            }
        }

        if let Some(py) = common::peer_python() {
            let o = Command::new(py)
                .arg(common::repo_root().join("tests/peers/onnx_peer.py"))
                .arg("h5")
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(j["attrs"]["model_kind"], kind.as_str());
            let emb = &j["splits"]["test"]["embeddings"];
            assert_eq!(emb["shape"], serde_json::json!([n_test, dim]));
            let first: Vec<f64> = test.embeddings[..dim].iter().map(|&v| v as f64).collect();
            assert_eq!(emb["first"], serde_json::json!(first));
            assert_eq!(
                j["splits"]["test"]["path"]["values"],
                serde_json::json!(test.path)
            );
        }
    }
}

#[test]
fn a_cancelled_embed_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4);
    let out = dir.path().join("e.h5");
    let opts = EmbedOptions {
        model: write_model(dir.path(), &tiny),
        root: Some(dataset().to_path_buf()),
        out: out.clone(),
        runtime: RuntimeOptions::default(),
        batch_size: 2,
        splits: vec![Split::Test],
        progress: false,
        recon_pool: 8,
        maps: None,
    };
    let e = embed(&data_config(dataset()), &opts, &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(e, EmbedError::Interrupted), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["cnn_scratch.onnx"], "nothing but the model");
}
