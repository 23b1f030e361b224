//! Finding and loading the ONNX Runtime library, in a process of its own: the environment is
//! created once per process (`runtime::environment`), so these checks must run before any
//! model has been loaded, which `tests/runtime.rs` (whose tests share one process) cannot
//! promise. One test, in order: an explicit library that does not exist, then one that is
//! not a shared library, then what a later load sees.

use std::path::Path;

use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind};
use defectkit_deploy::runtime::{
    library_path, loaded_library, OnnxModel, RuntimeError, RuntimeOptions, INSTALL_HINT,
};

fn explicit(path: &Path) -> RuntimeOptions {
    RuntimeOptions {
        library: Some(path.to_path_buf()),
        ..Default::default()
    }
}

#[test]
fn a_missing_or_broken_explicit_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("a.onnx");
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, 8, &["a", "b"], 3);
    onnxfile::write_model(&model, &tiny.model).unwrap();
    assert!(loaded_library().is_none(), "nothing loaded yet");

    // `--ort-lib /nonexistent/...`: named in the error with the install command, and the
    // environment is not poisoned by it.
    let missing = dir.path().join("nowhere").join("libonnxruntime.so");
    let e = OnnxModel::load(&model, &explicit(&missing)).unwrap_err();
    match &e {
        RuntimeError::LibraryMissing { searched } => {
            assert_eq!(searched, std::slice::from_ref(&missing))
        }
        other => panic!("expected LibraryMissing, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains(INSTALL_HINT), "{msg}");
    assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    assert!(
        loaded_library().is_none(),
        "a missing library loads nothing"
    );
    // A folder is not a library file either.
    assert!(matches!(
        library_path(Some(dir.path())),
        Err(RuntimeError::LibraryMissing { .. })
    ));

    // A file that is not a shared library: found, but it cannot be loaded.
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    assert_eq!(library_path(Some(&fake)).unwrap(), fake);
    let e = OnnxModel::load(&model, &explicit(&fake)).unwrap_err();
    assert!(
        matches!(&e, RuntimeError::LibraryLoad { path, .. } if path == &fake),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("cannot load the ONNX Runtime library"),
        "{msg}"
    );
    assert!(msg.contains(INSTALL_HINT), "{msg}");

    // Documented: a failure to load stays for the process (the library is loaded once), so
    // a later load reports the same library, whatever it asks for.
    let e = OnnxModel::load(&model, &RuntimeOptions::default()).unwrap_err();
    assert!(
        matches!(&e, RuntimeError::LibraryLoad { path, .. } if path == &fake),
        "{e:?}"
    );
    assert!(loaded_library().is_none());
}
