//! The HDF5 embedding store on its own: a hand-built store (an autoencoder's split with
//! reconstruction errors, an empty split, non-ASCII paths) comes back from
//! `EmbeddingStore::open` exactly as written and reads the same in h5py; inconsistent
//! records are refused before anything is written; a rewrite replaces the file whole;
//! missing, non-HDF5 and foreign HDF5 files are clear errors.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use defectkit_deploy::store::{
    EmbeddingStore, SplitProvenance, SplitRecords, StoreAttributes, StoreError,
};

const DIM: usize = 3;

// HDF5 stores: the tests of this file run one at a time (`common::one_at_a_time`).

fn attributes() -> StoreAttributes {
    StoreAttributes {
        model_path: "exports/c/model.onnx".into(),
        model_sha256: "ab".repeat(32),
        model_kind: "unet_ae".into(),
        precision: "fp32".into(),
        preprocess: r#"{"resize":32,"center_crop":null}"#.into(),
        classes: r#"["bottle","carpet"]"#.into(),
        embedding_dim: DIM,
        defectkit_version: "9.9.9-test".into(),
        split: Some(SplitProvenance {
            val_fraction: 0.2,
            split_seed: 3,
            model_val_fraction: Some(0.2),
            model_split_seed: Some(3),
            recon_pool: Some(8),
        }),
        maps: None,
    }
}

/// `n` rows; row i's values are distinct (i·10 + j), so a transposed or shifted read shows.
fn records(n: usize, with_recon: bool, first_path: &str) -> SplitRecords {
    let mut r = SplitRecords::new(DIM, with_recon);
    for i in 0..n {
        r.embeddings
            .extend((0..DIM).map(|j| i as f32 * 10.0 + j as f32 - 0.5));
        r.label.push(u8::from(i % 2 == 1));
        r.class.push(if i < 2 { "bottle" } else { "carpet" }.into());
        r.defect_type
            .push(if i % 2 == 1 { "broken_large" } else { "good" }.into());
        r.path.push(if i == 0 {
            first_path.to_string()
        } else {
            format!("data/x/{i:03}.png")
        });
        if let Some(e) = r.recon_error.as_mut() {
            e.push(0.125 * (i + 1) as f32);
        }
        if let Some(e) = r.recon_local.as_mut() {
            e.push(0.5 * (i + 1) as f32);
        }
    }
    r
}

fn store() -> EmbeddingStore {
    let mut splits = BTreeMap::new();
    splits.insert(
        "train".to_string(),
        records(5, true, "data/ünïcode/ß 000.png"),
    );
    splits.insert("val".to_string(), records(0, true, ""));
    splits.insert("test".to_string(), records(4, true, "data/test/000.png"));
    EmbeddingStore {
        attributes: attributes(),
        splits,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A store holding what `embed` never writes (a NaN embedding or reconstruction error, a
/// preprocessing spec the config layer would reject, a class list that is not one) is
/// refused when opened, naming the file, the field and the first offending image, instead
/// of flowing into a detector as NaN scores or a silently dropped pixel evaluation.
#[test]
fn stores_holding_what_defectkit_never_writes_are_refused_naming_the_field() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.h5");
    let refused = |s: EmbeddingStore| -> (String, String) {
        s.write(&path).unwrap();
        match EmbeddingStore::open(&path) {
            Err(e @ StoreError::Invalid { .. }) => {
                assert!(e.to_string().contains("bad.h5"), "{e}");
                let StoreError::Invalid { field, reason, .. } = e else {
                    unreachable!()
                };
                (field, reason)
            }
            other => panic!("expected StoreError::Invalid, got {other:?}"),
        }
    };
    let mut s = store();
    s.splits.get_mut("test").unwrap().embeddings[DIM + 2] = f32::NAN;
    let (field, reason) = refused(s);
    assert_eq!(field, r#"split "test" embeddings"#);
    assert!(reason.contains("row 1 (data/x/001.png)"), "{reason}");

    let mut s = store();
    s.splits
        .get_mut("train")
        .unwrap()
        .recon_local
        .as_mut()
        .unwrap()[3] = f32::INFINITY;
    let (field, reason) = refused(s);
    assert_eq!(field, r#"split "train" recon_local"#);
    assert!(reason.contains("row 3 (data/x/003.png)"), "{reason}");

    let mut s = store();
    s.attributes.preprocess = r#"{"resize":32,"std":[0.0,1.0,1.0]}"#.into();
    let (field, reason) = refused(s);
    assert_eq!(field, r#"attribute "preprocess""#);
    assert!(reason.contains("std"), "{reason}");

    let mut s = store();
    s.attributes.preprocess = "not json".into();
    assert_eq!(refused(s).0, r#"attribute "preprocess""#);

    let mut s = store();
    s.attributes.classes = r#"{"bottle": 1}"#.into();
    assert_eq!(refused(s).0, r#"attribute "classes""#);
}

#[test]
fn a_written_store_reads_back_identically_here_and_in_h5py() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("emb.h5");
    let written = store();
    written.write(&path).unwrap();
    assert_eq!(
        files(path.parent().unwrap()),
        ["emb.h5"],
        "no temporary left"
    );
    let read = EmbeddingStore::open(&path).unwrap();
    assert_eq!(read, written);
    let train = read.split("train").unwrap();
    let arr = train.embeddings_array();
    assert_eq!(arr.dim(), (5, DIM));
    assert_eq!(arr[[3, 2]], 31.5);
    assert_eq!(read.split("val").unwrap().len(), 0);
    assert!(read.split("val").unwrap().is_empty());
    let e = read.split("holdout").unwrap_err();
    assert!(e.contains("test, train, val"), "{e}");

    let Some(py) = common::peer_python() else {
        return;
    };
    let o = Command::new(py)
        .arg(common::repo_root().join("tests/peers/onnx_peer.py"))
        .arg("h5")
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["attrs"]["model_kind"], "unet_ae");
    assert_eq!(j["attrs"]["embedding_dim"], DIM as u64);
    assert_eq!(j["attrs"]["defectkit_version"], "9.9.9-test");
    assert_eq!(j["attrs"]["preprocess"], attributes().preprocess.as_str());
    for (name, r) in &written.splits {
        let s = &j["splits"][name];
        let n = r.len();
        assert_eq!(
            s["embeddings"]["shape"],
            serde_json::json!([n, DIM]),
            "{name}"
        );
        assert_eq!(s["embeddings"]["dtype"], "float32");
        let sum: f64 = r.embeddings.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(s["embeddings"]["sum"].as_f64().unwrap(), sum, "{name}");
        let first: Vec<f64> = r
            .embeddings
            .iter()
            .take(DIM)
            .map(|&v| f64::from(v))
            .collect();
        assert_eq!(s["embeddings"]["first"], serde_json::json!(first), "{name}");
        if n > 0 {
            assert_eq!(s["embeddings"]["compression"], "gzip", "{name}");
        }
        assert_eq!(s["label"]["dtype"], "uint8");
        assert_eq!(s["label"]["shape"], serde_json::json!([n]));
        assert_eq!(s["recon_error"]["dtype"], "float32");
        let recon: f64 = r
            .recon_error
            .as_ref()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        assert_eq!(s["recon_error"]["sum"].as_f64().unwrap(), recon);
        for (key, values) in [
            ("class", &r.class),
            ("defect_type", &r.defect_type),
            ("path", &r.path),
        ] {
            assert_eq!(s[key]["values"], serde_json::json!(values), "{name}/{key}");
        }
    }
}

/// One way to make a split's records inconsistent.
type Breakage = fn(&mut SplitRecords);

#[test]
fn inconsistent_records_are_refused_before_writing() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.h5");
    let broken: [(&str, Breakage); 5] = [
        ("embedding values", |r| {
            r.embeddings.pop();
        }),
        ("class has", |r| {
            r.class.pop();
        }),
        ("path has", |r| r.path.push("extra".into())),
        ("recon_error has", |r| {
            r.recon_error.as_mut().unwrap().pop();
        }),
        ("differs from the file's embedding_dim", |r| {
            r.dim = DIM + 1;
            r.embeddings.resize(r.len() * (DIM + 1), 0.0);
        }),
    ];
    for (reason, breakage) in broken {
        let mut s = store();
        breakage(s.splits.get_mut("test").unwrap());
        let e = s.write(&path).unwrap_err();
        assert!(
            matches!(&e, StoreError::Records { split, .. } if split == "test"),
            "{reason}: {e:?}"
        );
        assert!(e.to_string().contains(reason), "{reason}: {e}");
        assert!(
            files(dir.path()).is_empty(),
            "{reason}: {:?}",
            files(dir.path())
        );
    }
    let mut zero = store();
    zero.attributes.embedding_dim = 0;
    for r in zero.splits.values_mut() {
        *r = SplitRecords::new(0, false);
    }
    let e = zero.write(&path).unwrap_err();
    assert!(e.to_string().contains("dimension is 0"), "{e}");
    assert!(files(dir.path()).is_empty());
}

#[test]
fn a_rewrite_replaces_the_whole_file() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emb.h5");
    store().write(&path).unwrap();
    let mut smaller = store();
    smaller.splits.remove("train");
    smaller
        .splits
        .insert("test".into(), records(2, false, "only.png"));
    smaller.attributes.model_kind = "cnn_scratch".into();
    smaller.write(&path).unwrap();
    let read = EmbeddingStore::open(&path).unwrap();
    assert_eq!(read, smaller);
    assert!(read.split("test").unwrap().recon_error.is_none());
    assert_eq!(files(dir.path()), ["emb.h5"]);
}

#[test]
fn missing_foreign_and_garbage_files_are_clear_errors() {
    let _serial = common::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.h5");
    let e = EmbeddingStore::open(&missing).unwrap_err();
    assert!(
        matches!(&e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(e.to_string().contains("none.h5"), "{e}");

    let garbage = dir.path().join("garbage.h5");
    std::fs::write(&garbage, b"definitely not HDF5").unwrap();
    let e = EmbeddingStore::open(&garbage).unwrap_err();
    assert!(matches!(e, StoreError::Hdf5 { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.h5"), "{e}");

    // Valid HDF5 without the store's attributes.
    let foreign = dir.path().join("foreign.h5");
    {
        let f = hdf5::File::create(&foreign).unwrap();
        f.create_group("train").unwrap();
    }
    let e = EmbeddingStore::open(&foreign).unwrap_err();
    assert!(matches!(e, StoreError::Schema { .. }), "{e:?}");
    assert!(
        e.to_string().contains("not a defectkit embedding store"),
        "{e}"
    );
    assert!(e.to_string().contains("embedding_dim"), "{e}");

    // A store whose split lacks a dataset.
    let partial = dir.path().join("partial.h5");
    store().write(&partial).unwrap();
    {
        let f = hdf5::File::append(&partial).unwrap();
        f.group("test").unwrap().unlink("defect_type").unwrap();
    }
    let e = EmbeddingStore::open(&partial).unwrap_err();
    assert!(matches!(e, StoreError::Schema { .. }), "{e:?}");
    assert!(e.to_string().contains("defect_type"), "{e}");

    // A split whose rows disagree (labels shorter than embeddings).
    let uneven = dir.path().join("uneven.h5");
    store().write(&uneven).unwrap();
    {
        let f = hdf5::File::append(&uneven).unwrap();
        let g = f.group("train").unwrap();
        g.unlink("label").unwrap();
        g.new_dataset_builder()
            .with_data(&ndarray::Array1::from(vec![0u8, 1]))
            .create("label")
            .unwrap();
    }
    let e = EmbeddingStore::open(&uneven).unwrap_err();
    assert!(matches!(e, StoreError::Schema { .. }), "{e:?}");
    assert!(e.to_string().contains("for 2 rows"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// A store cut short anywhere (a copy interrupted, a full disk) is refused with an error
    /// naming it, never read half and never a panic. (Truncation only: bytes flipped inside
    /// HDF5's own structures can trip assertions in libhdf5 itself, outside our code.)
    #[test]
    fn truncated_stores_are_refused(frac in 0.0f64..1.0) {
        let _serial = common::one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.h5");
        store().write(&full).unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let cut = ((bytes.len() as f64) * frac) as usize;
        let short = dir.path().join("short.h5");
        std::fs::write(&short, &bytes[..cut]).unwrap();
        match EmbeddingStore::open(&short) {
            Err(e) => proptest::prop_assert!(e.to_string().contains("short.h5"), "{}", e),
            Ok(s) => proptest::prop_assert_eq!(s, store()),
        }
    }
}
