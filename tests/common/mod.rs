//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the workspace root, also for the member crates' tests, which include
/// this file by path).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/setup-python.sh").is_file())
        .expect("the tests run inside the defectkit checkout")
        .to_path_buf()
}

/// The project venv's Python with the peer tools installed (scripts/setup-python.sh), or
/// `None` when Python is not available here. With `DEFECTKIT_REQUIRE_PEERS=1` (set by
/// scripts/test.sh and CI) a missing peer is a failure, not a skip.
pub fn peer_python() -> Option<PathBuf> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/setup-python.sh"))
            .status();
        let venv = std::env::var_os("DEFECTKIT_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv"));
        let py = venv.join("bin/python");
        match status {
            Ok(s) if s.success() && py.exists() => Some(py),
            other => {
                let msg = format!("peer Python unavailable ({other:?})");
                if std::env::var("DEFECTKIT_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
                    panic!("{msg}, and DEFECTKIT_REQUIRE_PEERS=1");
                }
                eprintln!("SKIPPED peer checks: {msg}");
                None
            }
        }
    })
    .clone()
}

/// The built `defectkit` binary (the root package's tests only).
pub fn defectkit_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_defectkit") {
        Some(bin) => PathBuf::from(bin),
        None => panic!("only the root package's tests can run the defectkit binary"),
    }
}

/// Run the binary in `cwd` with `args`; returns (success, stdout, stderr).
pub fn run_cli(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(defectkit_bin())
        .args(args)
        .current_dir(cwd)
        .env("DEFECTKIT_ROOT", cwd)
        .output()
        .expect("run defectkit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// HDF5 opens files without `O_CLOEXEC` and `flock`s them, so a child process spawned by
/// one test (h5py, the peer setup script) while another test's store is open for writing
/// inherits that descriptor and its lock, and opening the finished store then fails with
/// "unable to lock file" until the child exits. Tests that write stores hold this guard to
/// run one at a time within their test binary.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Press Ctrl-C on `child` (a SIGINT to it alone), wait for it, and return its exit code
/// and everything it wrote to its piped stderr.
pub fn interrupt_and_wait(mut child: std::process::Child) -> (Option<i32>, String) {
    // SAFETY: sends SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait for the interrupted child");
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
    }
    (status.code(), err)
}

/// Wait (polling) until `ready` holds, failing with `what` after `secs` seconds.
pub fn wait_for(secs: u64, what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
