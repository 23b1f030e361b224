//! The Weights & Biases sidecar: `scripts/wandb_bridge.py` (embedded in the binary) run by the official W&B Python
//! SDK as a child process, fed JSON lines on its stdin (see the script's docstring for the
//! protocol).
//!
//! Nothing here blocks training: lines go through a channel to a writer thread, the
//! sidecar's stdout and stderr are read by their own threads, and every failure comes back
//! as a reason string that [`super::RunLogger`] turns into one warning.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where the W&B SDK put a run, as reported by the sidecar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WandbRunInfo {
    /// The mode the run really used (`online`, `offline`, `disabled`): `online` without
    /// `WANDB_API_KEY` is forced to `offline`.
    pub mode: String,
    /// W&B run id.
    pub run_id: Option<String>,
    /// The run's files dir (`run.dir`, `<run_dir>/wandb/<offline-run-…>/files`).
    pub files_dir: Option<PathBuf>,
    /// The local run dir (`<run_dir>/wandb/offline-run-<time>-<id>`): what
    /// `wandb sync` takes for an offline run.
    pub sync_dir: Option<PathBuf>,
    /// The run's transaction log (`run-<id>.wandb`) inside `sync_dir`.
    pub sync_file: Option<PathBuf>,
    /// The run's web page (online runs only).
    pub url: Option<String>,
    /// True when the sidecar lost its input before a `finish` (the run is marked failed).
    pub aborted: bool,
}

impl WandbRunInfo {
    fn from_json(v: &Value) -> Self {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let p = |k: &str| s(k).map(PathBuf::from);
        WandbRunInfo {
            mode: s("mode").unwrap_or_default(),
            run_id: s("run_id"),
            files_dir: p("run_dir"),
            sync_dir: p("sync_dir"),
            sync_file: p("sync_file"),
            url: s("url"),
            aborted: v.get("aborted").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// The Python interpreter for the sidecar: `$DEFECTKIT_PYTHON`, else the project venv's
/// `.venv/bin/python` under the first of [`crate::paths::search_roots`] that has one, else
/// `python3`. Returns the interpreter and where it came from (for messages).
pub fn find_python() -> (PathBuf, &'static str) {
    if let Some(py) = std::env::var_os("DEFECTKIT_PYTHON").filter(|p| !p.is_empty()) {
        return (PathBuf::from(py), "$DEFECTKIT_PYTHON");
    }
    match crate::paths::find(".venv/bin/python") {
        Some(py) => (py, "the project venv"),
        None => (PathBuf::from("python3"), "PATH"),
    }
}

/// The sidecar's source, embedded in the binary so that a copied binary keeps W&B logging.
pub const BRIDGE_SOURCE: &str = include_str!("../../../../scripts/wandb_bridge.py");

/// Writes the embedded sidecar ([`BRIDGE_SOURCE`]) to a file Python can run and returns its
/// path: `<temp dir>/defectkit-wandb-bridge-<hash>.py`, named by its content so concurrent
/// runs share one file and a newer binary never runs an older script. Written atomically.
pub fn bridge_script() -> std::io::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let hash = format!("{:x}", Sha256::digest(BRIDGE_SOURCE.as_bytes()));
    let path = std::env::temp_dir().join(format!("defectkit-wandb-bridge-{}.py", &hash[..16]));
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() != Some(BRIDGE_SOURCE) {
        crate::fsutil::write_atomic(&path, BRIDGE_SOURCE.as_bytes())?;
    }
    Ok(path)
}

/// What the sidecar told us.
enum Event {
    Ready(WandbRunInfo),
    Finished(WandbRunInfo),
    Warning(String),
    Error(String),
    WriteFailed(String),
}

/// Arguments of the sidecar's command line.
pub(crate) struct BridgeArgs<'a> {
    pub project: &'a str,
    pub entity: Option<&'a str>,
    pub mode: &'a str,
    pub tags: &'a [String],
    pub group: Option<&'a str>,
    pub name: &'a str,
    pub dir: &'a Path,
}

/// A running sidecar.
pub(crate) struct WandbBridge {
    child: Child,
    /// Lines for the writer thread; dropping it closes the sidecar's stdin.
    lines: Option<Sender<String>>,
    writer: Option<JoinHandle<()>>,
    events: Receiver<Event>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Receiver<()>,
    python: PathBuf,
    timeout: Duration,
    ready: Option<WandbRunInfo>,
    finished: Option<WandbRunInfo>,
    warnings: Vec<String>,
    exited: bool,
}

const STDERR_TAIL_LINES: usize = 20;

impl WandbBridge {
    /// Start the sidecar. `Err` is a human-readable reason (the caller warns).
    pub(crate) fn spawn(
        python: &Path,
        script: &Path,
        args: &BridgeArgs<'_>,
        env: &[(OsString, OsString)],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg("--project")
            .arg(args.project)
            .arg("--mode")
            .arg(args.mode)
            .arg("--dir")
            .arg(args.dir)
            .arg("--name")
            .arg(args.name);
        if let Some(entity) = args.entity {
            cmd.arg("--entity").arg(entity);
        }
        if let Some(group) = args.group {
            cmd.arg("--group").arg(group);
        }
        for tag in args.tags {
            cmd.arg(format!("--tags={tag}"));
        }
        // W&B's system metrics (CPU, memory, GPU) follow the trainer, not the sidecar.
        cmd.arg(format!("--stats-pid={}", std::process::id()));
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            // Its own process group: Ctrl-C is for the trainer; the sidecar finishes the
            // W&B run when its stdin closes.
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start the W&B sidecar with Python `{}`: {e} (set DEFECTKIT_PYTHON, \
                 or run scripts/setup-python.sh)",
                python.display()
            )
        })?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("cannot open pipes to the W&B sidecar".into());
                }
            };
        let (event_tx, events) = mpsc::channel();
        let (lines_tx, lines_rx) = mpsc::channel::<String>();

        let writer = {
            let event_tx = event_tx.clone();
            thread::Builder::new()
                .name("wandb-bridge-stdin".into())
                .spawn(move || write_lines(stdin, lines_rx, event_tx))
                .map_err(|e| format!("cannot start a thread for the W&B sidecar: {e}"))?
        };
        thread::Builder::new()
            .name("wandb-bridge-stdout".into())
            .spawn(move || read_events(stdout, event_tx))
            .map_err(|e| format!("cannot start a thread for the W&B sidecar: {e}"))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        {
            let tail = Arc::clone(&stderr_tail);
            thread::Builder::new()
                .name("wandb-bridge-stderr".into())
                .spawn(move || {
                    forward_stderr(stderr, &tail);
                    let _ = done_tx.send(());
                })
                .map_err(|e| format!("cannot start a thread for the W&B sidecar: {e}"))?;
        }
        Ok(WandbBridge {
            child,
            lines: Some(lines_tx),
            writer: Some(writer),
            events,
            stderr_tail,
            stderr_done,
            python: python.to_path_buf(),
            timeout,
            ready: None,
            finished: None,
            warnings: Vec::new(),
            exited: false,
        })
    }

    /// Queue one protocol message. `Err` = the sidecar is gone (reason for the warning).
    pub(crate) fn send(&mut self, msg: &Value) -> Result<(), String> {
        self.check()?;
        let tx = self
            .lines
            .as_ref()
            .ok_or_else(|| "the W&B sidecar's input is already closed".to_string())?;
        tx.send(msg.to_string())
            .map_err(|_| self.failure("the W&B sidecar stopped reading its input"))
    }

    /// Warnings the sidecar reported since the last call (messages it could not log).
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Collect events; `Err` when the sidecar failed or exited early.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        while let Ok(ev) = self.events.try_recv() {
            self.handle(ev)?;
        }
        if !self.exited {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = true;
                    // Its last words (an error line) may still be in the pipe.
                    self.drain_events(Duration::from_secs(2))?;
                    return Err(self.failure(&format!("the W&B sidecar exited early ({status})")));
                }
                Ok(None) => {}
                Err(e) => return Err(self.failure(&format!("cannot watch the W&B sidecar: {e}"))),
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Ready(info) => self.ready = Some(info),
            Event::Finished(info) => self.finished = Some(info),
            Event::Warning(msg) => self.warnings.push(msg),
            Event::Error(msg) => {
                // The sidecar exits after an error: let its stderr (a traceback) arrive.
                self.wait_exit(Duration::from_secs(2));
                return Err(self.failure(&msg));
            }
            Event::WriteFailed(msg) => {
                // The sidecar is going away: prefer its own last words to the broken pipe.
                self.wait_exit(Duration::from_secs(2));
                self.drain_events(Duration::from_secs(2))?;
                return Err(self.failure(&format!("cannot write to the W&B sidecar: {msg}")));
            }
        }
        Ok(())
    }

    /// Wait up to `limit` for the process to exit (without killing it).
    fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.exited {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => self.exited = true,
                Ok(None) if Instant::now() >= deadline => return,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Wait up to `limit` for the stdout reader to end, handling its events.
    fn drain_events(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => self.handle(ev)?,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return Ok(())
                }
            }
        }
    }

    /// A failure reason with the end of the sidecar's stderr.
    fn failure(&mut self, what: &str) -> String {
        if self.exited {
            // The stderr reader ends shortly after the process (bounded wait).
            let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        }
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().rev().take(6).rev().cloned().collect())
            .unwrap_or_default();
        let mut msg = format!("{what} [python: {}]", self.python.display());
        if !tail.is_empty() {
            msg.push_str(&format!("; its last output: {}", tail.join(" | ")));
        }
        msg
    }

    /// Send `summary` and `finish`, close the input, and wait (at most the timeout) for the
    /// sidecar to finish the W&B run. Returns what it reported (or a reason), and the
    /// sidecar's last warnings.
    pub(crate) fn finish(
        mut self,
        summary: Option<&Value>,
    ) -> (Result<WandbRunInfo, String>, Vec<String>) {
        let result = self.finish_inner(summary);
        (result, self.take_warnings())
    }

    fn finish_inner(&mut self, summary: Option<&Value>) -> Result<WandbRunInfo, String> {
        if let Some(summary) = summary {
            self.send(&json!({"type": "summary", "data": summary}))?;
        }
        self.send(&json!({"type": "finish"}))?;
        self.close_and_wait()?;
        self.finished
            .take()
            .ok_or_else(|| "the W&B sidecar ended without reporting its run".to_string())
    }

    /// Close stdin, wait for exit (bounded); kill on timeout.
    fn close_and_wait(&mut self) -> Result<(), String> {
        self.lines = None;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            while let Ok(ev) = self.events.try_recv() {
                self.handle(ev)?;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.exited = true;
                    return Err(self.failure(&format!(
                        "the W&B sidecar did not finish within {} s and was stopped",
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    return Err(self.failure(&format!("cannot wait for the W&B sidecar: {e}")))
                }
            }
        };
        self.exited = true;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join(); // the pipe is closed: it has returned or will at once
        }
        self.drain_events(Duration::from_secs(2))?;
        if !status.success() {
            return Err(self.failure(&format!("the W&B sidecar failed ({status})")));
        }
        Ok(())
    }
}

impl Drop for WandbBridge {
    /// Dropped without `finish` (training failed): close the input so the sidecar marks the
    /// run failed and exits; wait for it a bounded time.
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.close_and_wait();
        }
    }
}

fn write_lines(mut stdin: ChildStdin, lines: Receiver<String>, events: Sender<Event>) {
    for mut line in lines {
        line.push('\n');
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
            let _ = events.send(Event::WriteFailed(e.to_string()));
            return;
        }
    }
    // All senders gone: dropping stdin closes the pipe.
}

fn read_events(stdout: impl std::io::Read, events: Sender<Event>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue; // not a protocol line
        };
        let message = || {
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string()
        };
        let ev = match v.get("type").and_then(Value::as_str) {
            Some("ready") => Event::Ready(WandbRunInfo::from_json(&v)),
            Some("finished") => Event::Finished(WandbRunInfo::from_json(&v)),
            Some("warning") => Event::Warning(message()),
            Some("error") => Event::Error(message()),
            _ => continue,
        };
        if events.send(ev).is_err() {
            return;
        }
    }
}

/// Forward the sidecar's stderr (W&B's own notes) to ours, keeping the last lines.
fn forward_stderr(stderr: impl std::io::Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        eprintln!("wandb-bridge: {line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sidecar_is_written_once_and_runs_from_anywhere() {
        assert!(BRIDGE_SOURCE.contains("def main"), "not the bridge script");
        let path = bridge_script().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BRIDGE_SOURCE);
        // The same content gives the same file; a tampered file is rewritten.
        std::fs::write(&path, "tampered").unwrap();
        assert_eq!(bridge_script().unwrap(), path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), BRIDGE_SOURCE);
    }
}
