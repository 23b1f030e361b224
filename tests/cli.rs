//! The binary's own conventions, whatever the verb: exit codes and output handling.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_pipe_ends_the_program_quietly() {
    // `defectkit config -m … | head -1`: the reader goes away after the first line.
    let mut child = Command::new(common::defectkit_bin())
        .args([
            "-m",
            "config",
            "model=cnn_scratch,unet_ae",
            "trainer.lr=1e-3,1e-4",
        ])
        .current_dir(common::repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn errors_print_their_cause_chain_and_exit_1() {
    let (ok, _, stderr) = common::run_cli(&common::repo_root(), &["config", "model=nope"]);
    assert!(!ok);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("model/nope"), "{stderr}");
    let status = Command::new(common::defectkit_bin())
        .args(["config", "model=nope"])
        .current_dir(common::repo_root())
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(1));
}
