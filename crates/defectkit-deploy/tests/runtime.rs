//! ONNX Runtime on tiny graphs built in Rust (`defectkit_core::onnx::testing`): outputs equal
//! the hand-computed ones, the metadata comes back as written, onnx's checker and
//! onnxruntime-Python agree, and every broken input is a clear error. No Burn is compiled.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind, Parity};
use defectkit_deploy::runtime::{OnnxModel, RuntimeError, RuntimeOptions};

const SIDE: usize = 8;

fn write(dir: &Path, tiny: &TinyModel) -> PathBuf {
    let path = dir.join(format!("{}.onnx", tiny.metadata.kind.as_str()));
    onnxfile::write_model(&path, &tiny.model).unwrap();
    path
}

/// Seeded inputs in [-2, 2].
fn input(batch: usize, seed: u64) -> Vec<f32> {
    defectkit_core::onnx::parity::probe_input([3, SIDE, SIDE], batch, seed)
}

fn tiny_models() -> Vec<TinyModel> {
    vec![
        TinyModel::classifier(ModelKind::CnnScratch, SIDE, &["a", "b", "c"], 6),
        TinyModel::classifier(ModelKind::Teacher, SIDE, &["a", "b"], 16),
        TinyModel::autoencoder(SIDE, &["a", "b"], 5),
    ]
}

#[test]
fn outputs_equal_the_hand_computed_ones_at_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    for tiny in tiny_models() {
        let kind = tiny.metadata.kind;
        let mut model = OnnxModel::load(&write(dir.path(), &tiny), &RuntimeOptions::default())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(
            model.metadata, tiny.metadata,
            "{kind:?}: metadata read back"
        );
        assert_eq!(model.sample_len(), 3 * SIDE * SIDE);
        for batch in [1, 3] {
            let x = input(batch, batch as u64);
            let out = model.run(&x).unwrap();
            let (primary, embedding) = tiny.forward(&x);
            let p = Parity::of(&primary, &out.primary);
            let e = Parity::of(&embedding, &out.embedding);
            assert!(
                p.within(1e-5) && e.within(1e-5),
                "{kind:?} b{batch}: {p:?} {e:?}"
            );
            assert_eq!(out.embedding.len(), batch * tiny.metadata.embedding_dim);
            assert_eq!(out.primary_shape[0], batch);
        }
    }
}

#[test]
fn onnx_checker_and_onnxruntime_python_agree() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tiny in tiny_models() {
        let path = write(dir.path(), &tiny);
        let x = input(2, 9);
        let input_file = dir.path().join("x.f32");
        std::fs::write(
            &input_file,
            x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        let prefix = dir.path().join(tiny.metadata.kind.as_str());
        let o = Command::new(&py)
            .arg(common::repo_root().join("tests/peers/onnx_peer.py"))
            .arg("model")
            .arg(&path)
            .arg(&input_file)
            .arg(format!("2,3,{SIDE},{SIDE}"))
            .arg(&prefix)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut ours = OnnxModel::load(&path, &RuntimeOptions::default()).unwrap();
        let out = ours.run(&x).unwrap();
        let read = |name: &str| -> Vec<f32> {
            std::fs::read(format!("{}.{name}.f32", prefix.display()))
                .unwrap()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let primary = tiny.metadata.kind.primary_output();
        assert!(Parity::of(&read(primary), &out.primary).within(1e-6));
        assert!(Parity::of(&read("embedding"), &out.embedding).within(1e-6));
    }
}

#[test]
fn broken_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RuntimeOptions::default();
    let tiny = TinyModel::classifier(ModelKind::CnnDistilled, SIDE, &["a", "b"], 4);
    let good = write(dir.path(), &tiny);
    let err = |path: &Path, opts: &RuntimeOptions| match OnnxModel::load(path, opts) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    };

    let missing = dir.path().join("nope.onnx");
    assert!(err(&missing, &opts).contains("nope.onnx"));

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07 this is not protobuf \xff\xff\xff").unwrap();
    assert!(err(&garbage, &opts).contains("garbage.onnx"));

    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(err(&truncated, &opts).contains("truncated.onnx"));

    let mut bare = tiny.model.clone();
    bare.metadata_props.clear();
    let bare_path = dir.path().join("bare.onnx");
    onnxfile::write_model(&bare_path, &bare).unwrap();
    let e = err(&bare_path, &opts);
    assert!(
        e.contains("not a model exported by `defectkit export`"),
        "{e}"
    );

    let lib = RuntimeOptions {
        library: Some(dir.path().join("no-libonnxruntime.so")),
        ..Default::default()
    };
    match OnnxModel::load(&good, &lib) {
        // The process-wide environment may already be loaded by another test; then the
        // explicit path is not consulted again.
        Ok(_) => assert!(defectkit_deploy::runtime::loaded_library().is_some()),
        Err(RuntimeError::LibraryMissing { searched }) => {
            assert_eq!(searched, [dir.path().join("no-libonnxruntime.so")])
        }
        Err(e) => panic!("unexpected: {e}"),
    }

    let mut model = OnnxModel::load(&good, &opts).unwrap();
    let e = model.run(&[0.0; 10]).unwrap_err();
    assert!(matches!(e, RuntimeError::InputShape { got: 10, .. }), "{e}");
    assert!(matches!(
        model.run(&[]).unwrap_err(),
        RuntimeError::InputShape { got: 0, .. }
    ));
}
