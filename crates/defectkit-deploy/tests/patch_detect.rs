//! Patch-level detection end to end on a tiny synthetic set with a model whose `features`
//! output is the local colour mean (`TinyModel::with_features`): `embed --maps` stores
//! exactly the model's maps (or the recorded, seeded channel subset); `detect` with PaDiM
//! and PatchCore writes pixel metrics, overlays and a detector that reloads to the same
//! scores; `score --maps` writes one heat map per image and names it in its row; a painted
//! defect at a known place makes the map peak there; and what cannot work is refused with
//! the fix named (no maps, no `features` output, bundling a patch detector).

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use defectkit_core::config::detector::DetectorMethod;
use defectkit_core::config::schema::{DataConfig, DataKind};
use defectkit_core::config::DetectorConfig;
use defectkit_core::data::image_io::load_rgb8;
use defectkit_core::data::mvtec::Split;
use defectkit_core::data::synth::{generate, SynthOptions};
use defectkit_core::data::PreprocessSpec;
use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind};
use defectkit_deploy::anomaly::{Detector, Observations};
use defectkit_deploy::detect::{detect, DetectOptions};
use defectkit_deploy::embed::{embed, EmbedOptions, MapSelection};
use defectkit_deploy::runtime::{OnnxModel, RuntimeOptions};
use defectkit_deploy::score::{score, ClassChoice, Format, ScoreOptions};
use defectkit_deploy::store::EmbeddingStore;

const SIDE: usize = 32;
const STRIDE: usize = 4;
const CLASSES: [&str; 2] = ["bottle", "carpet"];

// HDF5 stores: the tests of this file run one at a time (`common::one_at_a_time`).

fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("syn");
    let opts = SynthOptions {
        seed: 5,
        image_size: 64,
        train_good: 14,
        test_good: 3,
        test_defect_per_type: 2,
        classes: Some(CLASSES.iter().map(|c| c.to_string()).collect()),
        force: false,
    };
    generate(&opts, &root, false).unwrap();
    root
}

fn data_config(root: &Path) -> DataConfig {
    DataConfig {
        kind: DataKind::Synthetic,
        root: root.to_path_buf(),
        classes: None,
        val_fraction: 0.25,
        split_seed: 1,
        strict: true,
        preprocess: PreprocessSpec::imagenet(SIDE as u32),
        cache: false,
        synth: None,
    }
}

fn tiny() -> TinyModel {
    TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4).with_features(STRIDE)
}

fn write_model(dir: &Path, model: &TinyModel, name: &str) -> PathBuf {
    let path = dir.join(name);
    onnxfile::write_model(&path, &model.model).unwrap();
    path
}

fn embed_options(model: &Path, out: &Path, maps: Option<MapSelection>) -> EmbedOptions {
    EmbedOptions {
        model: model.to_path_buf(),
        root: None,
        out: out.to_path_buf(),
        runtime: RuntimeOptions::default(),
        batch_size: 4,
        splits: vec![Split::Train, Split::Val, Split::Test],
        progress: false,
        recon_pool: 8,
        maps,
    }
}

fn all_maps() -> Option<MapSelection> {
    Some(MapSelection {
        channels: None,
        seed: 0,
    })
}

fn patch_config(method: DetectorMethod) -> DetectorConfig {
    DetectorConfig {
        method,
        shrinkage: defectkit_core::config::detector::Shrinkage::LedoitWolf,
        coreset_ratio: 0.5,
        sigma: 1.0,
        ..DetectorConfig::for_method(method)
    }
}

#[test]
fn embed_maps_stores_the_models_features_and_the_chosen_channels() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let model = tiny();
    let path = write_model(dir.path(), &model, "model.onnx");
    let out = dir.path().join("e.h5");
    embed(
        &data_config(&root),
        &embed_options(&path, &out, all_maps()),
        &AtomicBool::new(false),
    )
    .unwrap();
    let store = EmbeddingStore::open(&out).unwrap();
    let maps = store.attributes.maps.clone().expect("maps recorded");
    assert_eq!(maps.shape(), [3, SIDE / STRIDE, SIDE / STRIDE]);
    assert_eq!(maps.channels, vec![0, 1, 2]);
    assert_eq!(maps.seed, None);
    let spec = PreprocessSpec::imagenet(SIDE as u32);
    for split in ["train", "val", "test"] {
        let r = store.split(split).unwrap();
        let values = r.maps.as_ref().expect("every split has maps");
        assert_eq!(values.len(), r.len() * maps.per_image(), "{split}");
        // Row 0's map is the model's features of that image.
        let input = spec.to_tensor(&load_rgb8(Path::new(&r.path[0])).unwrap());
        let want = model.features(&input);
        for (a, b) in values[..maps.per_image()].iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{split}: {a} vs {b}");
        }
        // Defective test images name their masks; good ones none.
        assert_eq!(r.mask.len(), r.len());
        for i in 0..r.len() {
            assert_eq!(r.mask[i].is_empty(), r.label[i] == 0, "{split} row {i}");
        }
    }

    // A seeded subset of 2 channels: recorded, deterministic, and the same values.
    let subset = |seed: u64, name: &str| {
        let out = dir.path().join(name);
        let sel = Some(MapSelection {
            channels: Some(2),
            seed,
        });
        embed(
            &data_config(&root),
            &embed_options(&path, &out, sel),
            &AtomicBool::new(false),
        )
        .unwrap();
        EmbeddingStore::open(&out).unwrap()
    };
    let a = subset(7, "a.h5");
    let b = subset(7, "b.h5");
    let ma = a.attributes.maps.clone().unwrap();
    assert_eq!(ma, b.attributes.maps.clone().unwrap());
    assert_eq!(ma.channels.len(), 2);
    assert_eq!(ma.seed, Some(7));
    let plane = maps.height * maps.width;
    let full = store.split("test").unwrap().maps.clone().unwrap();
    let kept = a.split("test").unwrap().maps.clone().unwrap();
    for (i, &c) in ma.channels.iter().enumerate() {
        assert_eq!(
            kept[i * plane..(i + 1) * plane],
            full[c * plane..(c + 1) * plane]
        );
    }
    // Too many channels is refused before anything is written.
    let err = embed(
        &data_config(&root),
        &embed_options(
            &path,
            &dir.path().join("c.h5"),
            Some(MapSelection {
                channels: Some(4),
                seed: 0,
            }),
        ),
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("only 3 channels"), "{err}");
    assert!(!dir.path().join("c.h5").exists());
}

#[test]
fn patch_detectors_write_pixel_metrics_overlays_and_reload_to_the_same_scores() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let path = write_model(dir.path(), &tiny(), "model.onnx");
    let emb = dir.path().join("e.h5");
    embed(
        &data_config(&root),
        &embed_options(&path, &emb, all_maps()),
        &AtomicBool::new(false),
    )
    .unwrap();
    for method in [DetectorMethod::Padim, DetectorMethod::Patchcore] {
        let out = dir.path().join(method.as_str());
        let report = detect(&DetectOptions {
            embeddings: emb.clone(),
            out_dir: out.clone(),
            config: patch_config(method),
            plots: true,
            bundle: None,
        })
        .unwrap();
        let pixel = report.metrics.pixel.clone().expect("pixel metrics");
        assert_eq!(pixel.side, SIDE);
        assert_eq!(pixel.per_class.len(), CLASSES.len(), "{method}");
        for c in &pixel.per_class {
            let aupro = c.all.aupro.expect("defect regions exist");
            assert!(
                (0.0..=1.0).contains(&aupro),
                "{method} {}: {aupro}",
                c.class
            );
            let auroc = c.all.pixel_auroc.expect("both pixel kinds");
            assert!((0.0..=1.0).contains(&auroc));
            assert!(!c.per_defect.is_empty());
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        assert!(json["pixel"]["mean_aupro"].is_number(), "{method}");
        let md = std::fs::read_to_string(out.join("metrics.md")).unwrap();
        assert!(md.contains("AUPRO"), "{method}");
        for class in CLASSES {
            assert!(out.join("overlays").join(format!("{class}.png")).is_file());
        }
        // Reloaded, the detector gives the same test scores.
        let loaded = Detector::load(&out.join("detector.json")).unwrap();
        let store = EmbeddingStore::open(&emb).unwrap();
        let test = store.split("test").unwrap();
        assert_eq!(
            loaded.score_split(test).unwrap(),
            report.detector.score_split(test).unwrap(),
            "{method}"
        );
        assert!(report
            .detector
            .memory_per_class()
            .iter()
            .all(|(_, b)| *b > 0));
        // A patch detector cannot be bundled into one graph: refused with the reason.
        let err = defectkit_deploy::anomaly::bundle::write_scored_model(
            &loaded,
            &path,
            &dir.path().join("scored.onnx"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot be bundled"), "{err}");
    }
    // A mask moved away since `embed`: left out with a warning, not a failed run.
    let store = EmbeddingStore::open(&emb).unwrap();
    let test = store.split("test").unwrap();
    let mask = test.mask.iter().find(|m| !m.is_empty()).unwrap();
    std::fs::remove_file(mask).unwrap();
    let report = detect(&DetectOptions {
        embeddings: emb.clone(),
        out_dir: dir.path().join("moved"),
        config: patch_config(DetectorMethod::Padim),
        plots: true,
        bundle: None,
    })
    .unwrap();
    assert_eq!(report.metrics.pixel.unwrap().unreadable_masks.len(), 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("could not be read")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_detector_refuses_maps_with_other_channels_than_it_was_fitted_on() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let path = write_model(dir.path(), &tiny(), "model.onnx");
    let embed_subset = |channels: usize, seed: u64, name: &str| {
        let out = dir.path().join(name);
        let sel = Some(MapSelection {
            channels: Some(channels),
            seed,
        });
        embed(
            &data_config(&root),
            &embed_options(&path, &out, sel),
            &AtomicBool::new(false),
        )
        .unwrap();
        out
    };
    let fitted_on = embed_subset(2, 1, "a.h5");
    let det = dir.path().join("det");
    detect(&DetectOptions {
        embeddings: fitted_on.clone(),
        out_dir: det.clone(),
        config: patch_config(DetectorMethod::Padim),
        plots: false,
        bundle: None,
    })
    .unwrap();
    let detector = Detector::load(&det.join("detector.json")).unwrap();
    let same = EmbeddingStore::open(&fitted_on).unwrap();
    detector.check_maps(same.attributes.maps.as_ref()).unwrap();
    // Find a seed that keeps other channels than seed 1 (out of 3 choose 2).
    let mine = same.attributes.maps.clone().unwrap().channels;
    let other = (2..50)
        .find(|&s| {
            MapSelection {
                channels: Some(2),
                seed: s,
            }
            .choose(3)
            .unwrap()
                != mine
        })
        .unwrap();
    let moved = EmbeddingStore::open(&embed_subset(2, other, "b.h5")).unwrap();
    let err = detector
        .check_maps(moved.attributes.maps.as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--map-seed"), "{err}");
    // Maps of another size per image are an error, never a panic.
    let all = EmbeddingStore::open(&embed_subset(3, 0, "c.h5")).unwrap();
    let err = detector
        .score_split(all.split("test").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("map values"), "{err}");
}

#[test]
fn score_maps_writes_a_heat_map_per_image_and_a_painted_defect_peaks_where_it_was_painted() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    let model_path = write_model(dir.path(), &tiny(), "model.onnx");
    let emb = dir.path().join("e.h5");
    embed(
        &data_config(&root),
        &embed_options(&model_path, &emb, all_maps()),
        &AtomicBool::new(false),
    )
    .unwrap();
    let out = dir.path().join("padim");
    detect(&DetectOptions {
        embeddings: emb.clone(),
        out_dir: out.clone(),
        config: patch_config(DetectorMethod::Padim),
        plots: false,
        bundle: None,
    })
    .unwrap();

    // A good test image with a bright square painted at a known place (in model-input
    // pixels: rows and columns 20..28 of 32, after the 64 → 32 resize).
    let good = root.join("bottle/test/good");
    let first = std::fs::read_dir(&good)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let mut img = load_rgb8(&first).unwrap();
    for y in 40..56 {
        for x in 40..56 {
            img.put_pixel(x, y, image::Rgb([255, 0, 255]));
        }
    }
    let line = dir.path().join("line");
    std::fs::create_dir_all(&line).unwrap();
    img.save(line.join("painted.png")).unwrap();
    std::fs::copy(&first, line.join("clean.png")).unwrap();

    // The heat maps go inside the scored folder: a second run must not score them.
    let maps_dir = line.join("maps");
    let csv = dir.path().join("scores.csv");
    let options = || ScoreOptions {
        inputs: vec![line.clone()],
        model: model_path.clone(),
        detector: out.join("detector.json"),
        class: ClassChoice::Named("bottle".into()),
        out: Some(csv.clone()),
        format: Format::Csv,
        shard: None,
        strict: true,
        runtime: RuntimeOptions::default(),
        batch_size: 4,
        progress: false,
        maps_dir: Some(maps_dir.clone()),
    };
    let report = score(&options(), &AtomicBool::new(false)).unwrap();
    assert_eq!(report.scored, 2);
    let again = score(&options(), &AtomicBool::new(false)).unwrap();
    assert_eq!((again.files, again.scored), (2, 2));
    // An interrupted run keeps the finished folder as it was.
    let before = std::fs::read_dir(&maps_dir).unwrap().count();
    let err = score(&options(), &AtomicBool::new(true)).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(std::fs::read_dir(&maps_dir).unwrap().count(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&line)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "maps" && !n.ends_with(".png"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "path,class,score,threshold,anomalous,error,map"
    );
    let mut scores = Vec::new();
    for l in lines {
        let cols: Vec<&str> = l.split(',').collect();
        let map = PathBuf::from(cols[6]);
        assert!(map.is_file(), "{l}");
        assert!(map.starts_with(&maps_dir));
        let png = image::open(&map).unwrap();
        assert_eq!((png.width(), png.height()), (SIDE as u32, SIDE as u32));
        scores.push((cols[0].to_string(), cols[2].parse::<f64>().unwrap()));
    }
    let painted = scores
        .iter()
        .find(|(p, _)| p.ends_with("painted.png"))
        .unwrap()
        .1;
    let clean = scores
        .iter()
        .find(|(p, _)| p.ends_with("clean.png"))
        .unwrap()
        .1;
    assert!(painted > clean, "painted {painted} vs clean {clean}");

    // The map itself peaks inside the painted square.
    let detector = Detector::load(&out.join("detector.json")).unwrap();
    let mut model = OnnxModel::load(&model_path, &RuntimeOptions::default()).unwrap();
    model.request_features().unwrap();
    let spec = model.metadata.preprocess.clone();
    let input = spec.to_tensor(&img);
    let outputs = model.run(&input).unwrap();
    let features = outputs.features.unwrap();
    let cells = SIDE / STRIDE;
    let maps = ndarray::Array4::from_shape_vec((1, 3, cells, cells), features).unwrap();
    let emb_row = ndarray::Array2::from_shape_vec((1, 4), outputs.embedding).unwrap();
    let pos = detector.class_position("bottle").unwrap();
    let map = detector.scorers[pos]
        .anomaly_maps(&Observations {
            embeddings: emb_row.view(),
            recon_error: None,
            recon_local: None,
            maps: Some(maps.view()),
        })
        .unwrap()
        .unwrap()
        .remove(0);
    let peak = (0..map.len())
        .max_by(|&a, &b| map[a].total_cmp(&map[b]))
        .unwrap();
    let (y, x) = (peak / SIDE, peak % SIDE);
    assert!(
        (19..29).contains(&y) && (19..29).contains(&x),
        "peak at ({y}, {x})"
    );
}

#[test]
fn what_cannot_work_is_refused_with_the_fix_named() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path());
    // Embeddings without maps: a patch detector names `embed --maps`.
    let path = write_model(dir.path(), &tiny(), "model.onnx");
    let emb = dir.path().join("plain.h5");
    embed(
        &data_config(&root),
        &embed_options(&path, &emb, None),
        &AtomicBool::new(false),
    )
    .unwrap();
    let err = detect(&DetectOptions {
        embeddings: emb,
        out_dir: dir.path().join("d"),
        config: patch_config(DetectorMethod::Padim),
        plots: false,
        bundle: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("embed --maps"), "{err}");
    assert!(!dir.path().join("d").exists());
    // A model without a `features` output: `--maps` names re-exporting.
    let old = write_model(
        dir.path(),
        &TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4),
        "old.onnx",
    );
    let out = dir.path().join("old.h5");
    let err = embed(
        &data_config(&root),
        &embed_options(&old, &out, all_maps()),
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("re-export"), "{err}");
    assert!(!out.exists());
}
