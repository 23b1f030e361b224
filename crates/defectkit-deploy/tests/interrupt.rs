//! `detect`, `detect --compare` and `cluster` stop on the process-wide interrupt flag
//! ([`defectkit_core::interrupt`], set by the CLI's Ctrl-C handler): they return their
//! `Interrupted` error before writing anything, and what an earlier run completed stays.
//!
//! This file is its own test binary with one test on purpose: the flag is process-wide and is
//! never cleared, so it must not be raised where other tests run.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use defectkit_core::config::cluster::ClusterConfig;
use defectkit_core::config::detector::{DetectorConfig, DetectorMethod};
use defectkit_deploy::anomaly::AnomalyError;
use defectkit_deploy::cluster::{cluster, ClusterError, ClusterOptions};
use defectkit_deploy::detect::{compare, detect, DetectOptions};
use defectkit_deploy::store::{EmbeddingStore, SplitRecords, StoreAttributes};

const DIM: usize = 4;

/// `good` defect-free and `bad` defective rows per class, deterministic and finite; the
/// defective ones sit further out.
fn records(split: &str, good: usize, bad: usize) -> SplitRecords {
    let mut r = SplitRecords::new(DIM, false);
    for class in ["bottle", "carpet"] {
        for i in 0..good + bad {
            let defective = i >= good;
            let shift = if defective { 6.0 } else { 0.0 };
            r.embeddings.extend((0..DIM).map(|j| {
                let wobble = ((i * 7 + j * 3 + class.len()) % 11) as f32 / 11.0;
                wobble + shift + j as f32
            }));
            r.label.push(u8::from(defective));
            r.class.push(class.into());
            r.defect_type
                .push(if defective { "broken" } else { "good" }.into());
            r.path.push(format!("data/{class}/{split}/{i:03}.png"));
        }
    }
    r
}

fn store() -> EmbeddingStore {
    let mut splits = BTreeMap::new();
    splits.insert("train".to_string(), records("train", 24, 0));
    splits.insert("val".to_string(), records("val", 12, 0));
    splits.insert("test".to_string(), records("test", 8, 8));
    EmbeddingStore {
        attributes: StoreAttributes {
            model_path: "exports/b/model.onnx".into(),
            model_sha256: "cd".repeat(32),
            model_kind: "resnet_student".into(),
            precision: "fp32".into(),
            preprocess: r#"{"resize":32,"center_crop":null}"#.into(),
            classes: r#"["bottle","carpet"]"#.into(),
            embedding_dim: DIM,
            defectkit_version: "9.9.9-test".into(),
            split: None,
            maps: None,
        },
        splits,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn detect_compare_and_cluster_stop_on_the_interrupt_flag_and_write_nothing() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let emb = dir.path().join("emb.h5");
    store().write(&emb).unwrap();
    let config = DetectorConfig {
        method: DetectorMethod::Euclidean,
        ..DetectorConfig::default()
    };
    let options = |out: &str| DetectOptions {
        embeddings: emb.clone(),
        out_dir: dir.path().join(out),
        config: config.clone(),
        plots: false,
        bundle: None,
    };
    let cluster_options = |out: &str| ClusterOptions {
        embeddings: emb.clone(),
        out_dir: dir.path().join(out),
        config: ClusterConfig::default(),
        classes: None,
        detector: None,
        plots: false,
    };
    // Before any Ctrl-C the same calls complete (so the fixture is not what stops them).
    detect(&options("done")).unwrap();
    assert!(dir.path().join("done/detector.json").is_file());
    cluster(&cluster_options("clustered")).unwrap();
    let before = names(dir.path());

    defectkit_core::interrupt::request_stop();
    match detect(&options("stopped")) {
        Err(AnomalyError::Interrupted) => {}
        other => panic!("detect: expected Interrupted, got {other:?}"),
    }
    match compare(
        std::slice::from_ref(&emb),
        &[DetectorMethod::Euclidean, DetectorMethod::Mahalanobis],
        &config,
        &dir.path().join("comparison"),
    ) {
        Err(AnomalyError::Interrupted) => {}
        other => panic!("compare: expected Interrupted, got {other:?}"),
    }
    match cluster(&cluster_options("clustered")) {
        Err(ClusterError::Interrupted) => {}
        other => panic!("cluster: expected Interrupted, got {other:?}"),
    }
    // Nothing new, no temporary left, the completed outputs untouched.
    assert_eq!(names(dir.path()), before);
    assert!(dir.path().join("done/detector.json").is_file());
    assert!(dir.path().join("clustered/cluster.json").is_file());
}
