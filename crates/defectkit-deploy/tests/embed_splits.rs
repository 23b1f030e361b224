//! `embed::embed` end to end on a tiny synthetic set, split by split: every split holds
//! exactly the images the index puts there, in index order, with the model's own outputs
//! (one direct batch per split, and the hand-computed forward), its labels, classes and
//! defect types; the attributes describe the model file; h5py reads the same values; the
//! categories default to the model's; a corrupt image is skipped or fatal as `data.strict`
//! says; and mismatched or missing inputs are errors that write nothing.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use defectkit_core::config::schema::{DataConfig, DataKind};
use defectkit_core::data::image_io::load_rgb8;
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};
use defectkit_core::data::synth::{generate, SynthOptions};
use defectkit_core::data::PreprocessSpec;
use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind, Parity};
use defectkit_deploy::embed::{embed, EmbedError, EmbedOptions, EmbedReport};
use defectkit_deploy::runtime::{OnnxModel, RuntimeError, RuntimeOptions};
use defectkit_deploy::store::{EmbeddingStore, SplitRecords};

const SIDE: usize = 32;

// HDF5 stores: the tests of this file run one at a time (`common::one_at_a_time`).

/// Generated categories; the models are trained on the first two only.
const GENERATED: [&str; 3] = ["bottle", "carpet", "grid"];
const TRAINED: [&str; 2] = ["bottle", "carpet"];
const VAL_FRACTION: f64 = 0.25;
const SPLIT_SEED: u64 = 3;
const SPLITS: [Split; 3] = [Split::Train, Split::Val, Split::Test];

/// A fresh synthetic set under `dir` (40 px: the models' 32 px input needs a resize).
fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("syn");
    let opts = SynthOptions {
        seed: 11,
        image_size: 40,
        train_good: 5,
        test_good: 2,
        test_defect_per_type: 1,
        classes: Some(GENERATED.iter().map(|c| c.to_string()).collect()),
        force: false,
    };
    generate(&opts, &root, false).unwrap();
    root
}

/// The data section `embed` gets. Its own preprocessing (128 px) deliberately differs from
/// the model's: `embed` must use the one recorded in the model.
fn data_config(root: &Path, strict: bool) -> DataConfig {
    DataConfig {
        kind: DataKind::Synthetic,
        root: root.to_path_buf(),
        classes: None,
        val_fraction: VAL_FRACTION,
        split_seed: SPLIT_SEED,
        strict,
        preprocess: PreprocessSpec::imagenet(128),
        cache: false,
        synth: None,
    }
}

fn options(model: &Path, out: &Path) -> EmbedOptions {
    EmbedOptions {
        model: model.to_path_buf(),
        root: None,
        out: out.to_path_buf(),
        runtime: RuntimeOptions::default(),
        batch_size: 4,
        splits: SPLITS.to_vec(),
        progress: false,
        recon_pool: 8,
        maps: None,
    }
}

fn write_model(dir: &Path, tiny: &TinyModel, name: &str) -> PathBuf {
    let path = dir.join(name);
    onnxfile::write_model(&path, &tiny.model).unwrap();
    path
}

/// The index `embed` should have used: the model's classes, the config's split.
fn index(root: &Path, classes: &[&str]) -> Index {
    Index::scan(
        root,
        &IndexOptions {
            classes: Some(classes.iter().map(|c| c.to_string()).collect()),
            val_fraction: VAL_FRACTION,
            seed: SPLIT_SEED,
            strict: false,
        },
    )
    .unwrap()
}

fn sha256_hex(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// The model input of `samples`, one batch, preprocessed with `spec`.
fn batch_input(spec: &PreprocessSpec, samples: &[&Sample]) -> Vec<f32> {
    samples
        .iter()
        .flat_map(|s| spec.to_tensor(&load_rgb8(&s.path).unwrap()))
        .collect()
}

/// Files left in `dir` whose name mentions `.h5` (the output or a temporary sibling of it).
fn h5_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".h5"))
        .collect()
}

/// The rows of one split match the index's samples of it, in order.
fn assert_rows_match(what: &str, records: &SplitRecords, samples: &[&Sample]) {
    assert_eq!(records.len(), samples.len(), "{what}: rows");
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(
            records.path[i],
            s.path.display().to_string(),
            "{what} row {i}"
        );
        assert_eq!(records.class[i], s.class, "{what} row {i}");
        assert_eq!(records.label[i], s.label(), "{what} row {i}");
        let defect = s.defect.clone().unwrap_or_else(|| "good".into());
        assert_eq!(records.defect_type[i], defect, "{what} row {i}");
    }
}

#[test]
fn every_split_holds_the_indexed_images_and_the_models_outputs() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    for tiny in [
        TinyModel::classifier(ModelKind::CnnScratch, SIDE, &TRAINED, 7),
        TinyModel::autoencoder(SIDE, &TRAINED, 4),
    ] {
        let kind = tiny.metadata.kind;
        let dim = tiny.metadata.embedding_dim;
        let model_path = write_model(dir.path(), &tiny, &format!("{}.onnx", kind.as_str()));
        let out = dir.path().join("out").join(format!("{}.h5", kind.as_str()));
        let opts = options(&model_path, &out);
        let report: EmbedReport =
            embed(&data_config(&root, false), &opts, &AtomicBool::new(false)).unwrap();
        assert_eq!(report.out, out);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert!(report.seconds >= 0.0);

        let store = EmbeddingStore::open(&out).unwrap();
        let a = &store.attributes;
        assert_eq!(a.model_path, model_path.display().to_string());
        assert_eq!(a.model_sha256, sha256_hex(&model_path));
        assert_eq!(a.model_kind, kind.as_str());
        assert_eq!(a.precision, "fp32");
        let spec: PreprocessSpec = serde_json::from_str(&a.preprocess).unwrap();
        assert_eq!(
            spec,
            PreprocessSpec::imagenet(SIDE as u32),
            "the model's spec"
        );
        let classes: Vec<String> = serde_json::from_str(&a.classes).unwrap();
        assert_eq!(classes, TRAINED);
        assert_eq!(a.embedding_dim, dim);
        assert_eq!(a.defectkit_version, env!("CARGO_PKG_VERSION"));

        // The model's categories only (the config selects none), split as configured.
        let index = index(&root, &TRAINED);
        let names: Vec<&str> = store.splits.keys().map(String::as_str).collect();
        assert_eq!(names, ["test", "train", "val"]);
        let counts: Vec<(Split, usize)> = SPLITS.iter().map(|&s| (s, index.count(s))).collect();
        assert_eq!(report.counts, counts);
        let mut model = OnnxModel::load(&model_path, &RuntimeOptions::default()).unwrap();
        for split in SPLITS {
            let what = format!("{kind:?} {split}");
            let samples: Vec<&Sample> = index.split(split).collect();
            assert!(!samples.is_empty(), "{what}: empty split proves nothing");
            let r = store.split(split.as_str()).unwrap();
            assert_rows_match(&what, r, &samples);
            assert!(r.class.iter().all(|c| TRAINED.contains(&c.as_str())));
            assert_eq!(r.dim, dim);
            if split == Split::Test {
                assert!(r.label.contains(&0) && r.label.contains(&1), "{what}");
            } else {
                assert!(
                    r.label.iter().all(|&l| l == 0),
                    "{what}: defects outside test"
                );
            }

            // One direct batch of the whole split, and the hand-computed forward pass.
            let x = batch_input(&spec, &samples);
            let direct = model.run(&x).unwrap();
            let p = Parity::of(&direct.embedding, &r.embeddings);
            assert!(p.within(1e-6), "{what}: stored vs direct {p:?}");
            let p = Parity::of(&tiny.forward(&x).1, &r.embeddings);
            assert!(p.within(1e-5), "{what}: stored vs hand-computed {p:?}");
            // Different images give different embeddings (the check above is not vacuous).
            assert!(r.embeddings[..dim] != r.embeddings[dim..2 * dim], "{what}");

            match (&r.recon_error, kind.is_autoencoder()) {
                (Some(errors), true) => {
                    // reconstruction = 0.5 x, so the MSE is mean(0.25 x²).
                    let per = 3 * SIDE * SIDE;
                    let want: Vec<f32> = x
                        .chunks(per)
                        .map(|img| {
                            let s: f64 = img.iter().map(|&v| 0.25 * f64::from(v).powi(2)).sum();
                            (s / per as f64) as f32
                        })
                        .collect();
                    let p = Parity::of(&want, errors);
                    assert!(p.within(1e-5), "{what}: recon_error {p:?}");
                }
                (None, false) => {}
                other => panic!("{what}: recon_error presence {other:?}"),
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
            let attrs = &j["attrs"];
            for (key, value) in [
                ("model_path", &a.model_path),
                ("model_sha256", &a.model_sha256),
                ("model_kind", &a.model_kind),
                ("precision", &a.precision),
                ("preprocess", &a.preprocess),
                ("classes", &a.classes),
                ("defectkit_version", &a.defectkit_version),
            ] {
                assert_eq!(attrs[key], value.as_str(), "h5py attribute {key}");
            }
            assert_eq!(attrs["embedding_dim"], dim as u64);
            let groups: Vec<&String> = j["splits"].as_object().unwrap().keys().collect();
            assert_eq!(groups, ["test", "train", "val"]);
            for (name, r) in &store.splits {
                let s = &j["splits"][name];
                let emb = &s["embeddings"];
                assert_eq!(emb["shape"], serde_json::json!([r.len(), dim]), "{name}");
                assert_eq!(emb["dtype"], "float32");
                assert_eq!(emb["compression"], "gzip", "{name}");
                let sum: f64 = r.embeddings.iter().map(|&v| f64::from(v)).sum();
                let peer = emb["sum"].as_f64().unwrap();
                assert!(
                    (sum - peer).abs() <= 1e-6 * sum.abs().max(1.0),
                    "{sum} vs {peer}"
                );
                let first: Vec<f64> = r.embeddings[..dim].iter().map(|&v| f64::from(v)).collect();
                assert_eq!(emb["first"], serde_json::json!(first));
                assert_eq!(s["label"]["dtype"], "uint8");
                assert_eq!(s["label"]["shape"], serde_json::json!([r.len()]));
                let defects = r.label.iter().map(|&l| f64::from(l)).sum::<f64>();
                assert_eq!(s["label"]["sum"].as_f64().unwrap(), defects);
                assert_eq!(s["path"]["values"], serde_json::json!(r.path));
                assert_eq!(s["class"]["values"], serde_json::json!(r.class));
                assert_eq!(s["defect_type"]["values"], serde_json::json!(r.defect_type));
                match &r.recon_error {
                    Some(e) => {
                        assert_eq!(s["recon_error"]["dtype"], "float32");
                        let sum: f64 = e.iter().map(|&v| f64::from(v)).sum();
                        let peer = s["recon_error"]["sum"].as_f64().unwrap();
                        assert!((sum - peer).abs() <= 1e-6 * sum.max(1.0));
                    }
                    None => assert!(s["recon_error"].is_null(), "{name}"),
                }
            }
        }
    }
}

#[test]
fn the_config_selects_categories_and_splits() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let tiny = TinyModel::classifier(ModelKind::Teacher, SIDE, &TRAINED, 3);
    let model_path = write_model(dir.path(), &tiny, "teacher.onnx");
    let out = dir.path().join("grid.h5");
    let mut data = data_config(&root, false);
    data.classes = Some(vec!["grid".into()]);
    let mut opts = options(&model_path, &out);
    opts.splits = vec![Split::Test];
    opts.batch_size = 1;
    let report = embed(&data, &opts, &AtomicBool::new(false)).unwrap();
    let store = EmbeddingStore::open(&out).unwrap();
    assert_eq!(store.splits.keys().collect::<Vec<_>>(), ["test"]);
    let index = index(&root, &["grid"]);
    let samples: Vec<&Sample> = index.split(Split::Test).collect();
    assert_eq!(report.counts, [(Split::Test, samples.len())]);
    assert_rows_match("grid test", store.split("test").unwrap(), &samples);
    assert!(store.split("train").unwrap_err().contains("present: test"));
}

#[test]
fn a_corrupt_image_is_skipped_or_fatal_as_data_strict_says() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let full = index(&root, &TRAINED);
    let victim = full
        .split(Split::Test)
        .find(|s| !s.is_good())
        .unwrap()
        .path
        .clone();
    std::fs::write(&victim, b"\x89PNG\r\n\x1a\n cut off").unwrap();
    let tiny = TinyModel::autoencoder(SIDE, &TRAINED, 3);
    let model_path = write_model(dir.path(), &tiny, "ae.onnx");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();

    let out = out_dir.join("lenient.h5");
    let report = embed(
        &data_config(&root, false),
        &options(&model_path, &out),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].0, victim);
    let store = EmbeddingStore::open(&out).unwrap();
    let test = store.split("test").unwrap();
    let kept: Vec<&Sample> = full
        .split(Split::Test)
        .filter(|s| s.path != victim)
        .collect();
    assert_rows_match("test without the corrupt image", test, &kept);
    assert_eq!(test.recon_error.as_ref().unwrap().len(), kept.len());
    assert_eq!(report.counts[2], (Split::Test, kept.len()));
    assert_eq!(report.counts[0], (Split::Train, full.count(Split::Train)));

    let out = out_dir.join("strict.h5");
    let e = embed(
        &data_config(&root, true),
        &options(&model_path, &out),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, EmbedError::Data(_)), "{e:?}");
    assert!(e.to_string().contains(&victim.display().to_string()), "{e}");
    assert_eq!(
        h5_files(&out_dir),
        ["lenient.h5"],
        "the strict run wrote nothing"
    );
}

#[test]
fn bad_models_and_cancelled_runs_write_nothing() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let data = data_config(&root, false);
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("e.h5");

    // Preprocessing that makes 48 px images for a 32 px input: refused when the model is
    // opened (its metadata contradicts itself), naming the file and the field.
    let mut tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &TRAINED, 3);
    let mut meta = tiny.metadata.clone();
    meta.preprocess = PreprocessSpec::imagenet(48);
    onnxfile::set_metadata_prop(&mut tiny.model, onnxfile::METADATA_KEY, &meta.to_json());
    let resized = write_model(dir.path(), &tiny, "resized.onnx");
    let e = embed(&data, &options(&resized, &out), &AtomicBool::new(false)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("resized.onnx") && msg.contains("input_shape") && msg.contains("48"),
        "{msg}"
    );

    // A missing model and one without defectkit's metadata.
    let missing = dir.path().join("absent.onnx");
    let e = embed(&data, &options(&missing, &out), &AtomicBool::new(false)).unwrap_err();
    assert!(
        matches!(e, EmbedError::Runtime(RuntimeError::Onnx(_))),
        "{e:?}"
    );
    assert!(e.to_string().contains("absent.onnx"), "{e}");
    let mut bare = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &TRAINED, 3);
    bare.model.metadata_props.clear();
    let bare = write_model(dir.path(), &bare, "bare.onnx");
    let e = embed(&data, &options(&bare, &out), &AtomicBool::new(false)).unwrap_err();
    assert!(
        matches!(e, EmbedError::Runtime(RuntimeError::Metadata { .. })),
        "{e:?}"
    );

    // A category the data set does not have.
    let good = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &TRAINED, 3);
    let good = write_model(dir.path(), &good, "good.onnx");
    let mut unknown = data.clone();
    unknown.classes = Some(vec!["zipper".into()]);
    let e = embed(&unknown, &options(&good, &out), &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, EmbedError::Data(_)), "{e:?}");
    assert!(e.to_string().contains("zipper"), "{e}");

    // Cancelled: Interrupted, and no output or temporary file.
    let e = embed(&data, &options(&good, &out), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(e, EmbedError::Interrupted), "{e:?}");
    assert!(
        e.to_string().contains("no embeddings file was written"),
        "{e}"
    );
    assert!(h5_files(&out_dir).is_empty(), "{:?}", h5_files(&out_dir));

    // A cancelled run leaves an earlier store in place, untouched.
    embed(&data, &options(&good, &out), &AtomicBool::new(false)).unwrap();
    let before = std::fs::read(&out).unwrap();
    let e = embed(&data, &options(&resized, &out), &AtomicBool::new(true)).unwrap_err();
    assert!(
        matches!(e, EmbedError::Runtime(RuntimeError::Metadata { .. })),
        "{e:?}"
    );
    let e = embed(&data, &options(&good, &out), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(e, EmbedError::Interrupted), "{e:?}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert_eq!(h5_files(&out_dir), ["e.h5"]);
}

/// A model that gives NaN (here a NaN weight) stops `embed` with an error naming the first
/// image it happened for; no store is written (it used to write NaN embeddings, exit 0).
#[test]
fn non_finite_embeddings_stop_embed_naming_the_image() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let data = data_config(&root, false);
    let mut tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &TRAINED, 3);
    if let Some(graph) = tiny.model.graph.as_mut() {
        let w = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == "W")
            .unwrap();
        w.raw_data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let model = write_model(dir.path(), &tiny, "nan.onnx");
    let out = dir.path().join("nan.h5");
    let e = embed(&data, &options(&model, &out), &AtomicBool::new(false)).unwrap_err();
    let EmbedError::NonFinite { what, path } = &e else {
        panic!("not a non-finite error: {e:?}");
    };
    assert_eq!(*what, "embedding");
    assert!(
        path.ends_with(".png") && e.to_string().contains(path.as_str()),
        "{e}"
    );
    assert!(!out.exists(), "a store of NaNs was written");
}
