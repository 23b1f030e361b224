//! Running one step: hashing its inputs, skipping it when done, running its verb as a child
//! process with a log, recording it in the manifest; and the study dir's lock.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use defectkit_core::config::study::StudyModel;
use defectkit_core::study::{Manifest, StepRecord, StepStatus};

use super::{done_record, rel, StudyError, StudyOptions, StudyReport};

/// Files at most this large are hashed by content; larger ones (embeddings with feature
/// maps) by size and modification time.
const CONTENT_HASH_LIMIT: u64 = 64 << 20;

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Ran now.
    Ran,
    /// Done earlier with the same inputs.
    Skipped,
}

/// Runs and records the steps of one study run.
pub struct Runner<'a> {
    opts: &'a StudyOptions,
    dir: PathBuf,
    manifest: Manifest,
    conf_hash: String,
    ran: Vec<String>,
    skipped: Vec<String>,
    count: usize,
}

impl<'a> Runner<'a> {
    /// Reads the manifest (empty for a new study) and hashes the config dir.
    pub fn new(opts: &'a StudyOptions, dir: &Path) -> Result<Self, StudyError> {
        let mut manifest = Manifest::read(dir)?;
        manifest.study = opts.study.name.clone();
        Ok(Self {
            opts,
            dir: dir.to_path_buf(),
            manifest,
            conf_hash: conf_hash(&opts.config_dir),
            ran: vec![],
            skipped: vec![],
            count: 0,
        })
    }

    /// The study's overrides, then the forwarded ones (every composing verb gets these).
    pub fn common_overrides(&self) -> Vec<String> {
        let mut v = self.opts.study.overrides.clone();
        v.extend(self.opts.forwarded.iter().cloned());
        v
    }

    /// `train` of one model setting at one seed into `run_dir`.
    pub fn train_argv(
        &self,
        model: &StudyModel,
        setting: &[String],
        seed: u64,
        run_dir: &Path,
    ) -> Vec<String> {
        let mut argv = vec!["train".to_string()];
        argv.extend(self.opts.study.overrides.iter().cloned());
        argv.extend(model.overrides.iter().cloned());
        argv.extend(setting.iter().cloned());
        argv.push(format!("trainer.seed={seed}"));
        argv.extend(self.opts.forwarded.iter().cloned());
        argv.push(format!("hydra.run.dir={}", run_dir.display()));
        argv
    }

    /// Runs a step whose verb must exit 0.
    pub fn step(
        &mut self,
        id: &str,
        stage: &str,
        argv: Vec<String>,
        inputs: Vec<PathBuf>,
        outputs: Vec<PathBuf>,
        clear: bool,
    ) -> Result<StepOutcome, StudyError> {
        self.step_with(id, stage, argv, inputs, outputs, clear, &[])
    }

    /// Runs a step: skipped when its record is `done` with the same inputs' hash and every
    /// output exists; otherwise its outputs are deleted (with `clear`), it is recorded as
    /// `running`, its verb runs with `--config-dir` and a log in `logs/`, and it is recorded
    /// as `done` (exit 0), `failed` or `interrupted`. `clear_also` are deleted with the outputs
    /// but not required to exist for a skip (files a verb may or may not write).
    #[allow(clippy::too_many_arguments)]
    pub fn step_with(
        &mut self,
        id: &str,
        stage: &str,
        argv: Vec<String>,
        inputs: Vec<PathBuf>,
        outputs: Vec<PathBuf>,
        clear: bool,
        clear_also: &[PathBuf],
    ) -> Result<StepOutcome, StudyError> {
        self.count += 1;
        if self.opts.cancel.load(Ordering::SeqCst) {
            return Err(StudyError::Interrupted(id.into()));
        }
        let shown: Vec<String> = argv.iter().map(|a| self.show(a)).collect();
        let hash = self.inputs_hash(&shown, &inputs);
        if self.skip_if_done(id, &hash, &outputs) {
            return Ok(StepOutcome::Skipped);
        }
        if clear {
            for p in outputs.iter().chain(clear_also) {
                remove_path(p)?;
            }
        }
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", id.replace('/', "__")));
        let mut record = StepRecord {
            id: id.into(),
            stage: stage.into(),
            command: shown,
            inputs_hash: hash,
            inputs: inputs.iter().map(|p| rel(&self.dir, p)).collect(),
            outputs: outputs.iter().map(|p| rel(&self.dir, p)).collect(),
            status: StepStatus::Running,
            started: chrono::Utc::now().to_rfc3339(),
            wall_seconds: 0.0,
            error: None,
        };
        self.manifest.upsert(record.clone());
        self.manifest.write(&self.dir)?;
        eprintln!("[{}] {id}: {}", self.count, record.command.join(" "));
        let started = Instant::now();
        let status = self.run_child(&argv, &log);
        record.wall_seconds = started.elapsed().as_secs_f64();
        let interrupted = self.opts.cancel.load(Ordering::SeqCst);
        let outcome = match status {
            Ok(0) if !interrupted => Ok(()),
            Ok(code) => Err(format!("exit status {code}")),
            Err(e) => Err(format!("could not run {}: {e}", self.opts.binary.display())),
        };
        match outcome {
            Ok(()) => {
                record.status = StepStatus::Done;
                self.manifest.upsert(record.clone());
                self.manifest.write(&self.dir)?;
                eprintln!(
                    "[{}] {id}: done in {:.0} s",
                    self.count, record.wall_seconds
                );
                self.ran.push(id.into());
                Ok(StepOutcome::Ran)
            }
            Err(status) => {
                record.status = if interrupted {
                    StepStatus::Interrupted
                } else {
                    StepStatus::Failed
                };
                record.error = Some(status.clone());
                self.manifest.upsert(record);
                self.manifest.write(&self.dir)?;
                if interrupted {
                    return Err(StudyError::Interrupted(id.into()));
                }
                Err(StudyError::StepFailed {
                    id: id.into(),
                    status,
                    tail: log_tail(&log, 25),
                    log,
                })
            }
        }
    }

    /// A step done in this process (select, report): skipped when its record is `done` with
    /// the same hash of `inputs` (files) and `extra` (text) and its outputs exist; otherwise
    /// `work` runs and returns the outputs to record.
    pub fn in_process<T>(
        &mut self,
        id: &str,
        stage: &str,
        inputs: &[PathBuf],
        extra: &str,
        expected_outputs: &[PathBuf],
        work: impl FnOnce() -> Result<(T, Vec<PathBuf>), StudyError>,
    ) -> Result<Option<T>, StudyError> {
        self.count += 1;
        if self.opts.cancel.load(Ordering::SeqCst) {
            return Err(StudyError::Interrupted(id.into()));
        }
        let hash = self.inputs_hash(&[id.to_string(), extra.to_string()], inputs);
        if self.skip_if_done(id, &hash, expected_outputs) {
            return Ok(None);
        }
        let started = Instant::now();
        let (value, outputs) = work()?;
        let mut record = done_record(
            id,
            stage,
            outputs.iter().map(|p| rel(&self.dir, p)).collect(),
            started.elapsed().as_secs_f64(),
        );
        record.inputs_hash = hash;
        record.inputs = inputs.iter().map(|p| rel(&self.dir, p)).collect();
        self.manifest.upsert(record);
        self.manifest.write(&self.dir)?;
        eprintln!("[{}] {id}: done", self.count);
        self.ran.push(id.into());
        Ok(Some(value))
    }

    /// Whether `id` is recorded `done` with this hash and every output exists (then it is
    /// counted as skipped).
    fn skip_if_done(&mut self, id: &str, hash: &str, outputs: &[PathBuf]) -> bool {
        let done = self.manifest.step(id).is_some_and(|prev| {
            prev.status == StepStatus::Done
                && prev.inputs_hash == hash
                && outputs.iter().all(|p| p.exists())
        });
        if done {
            eprintln!("[{}] {id}: done earlier, skipped", self.count);
            self.skipped.push(id.into());
        }
        done
    }

    /// The hashes of every recorded step but `except`, in order (what the report depends on).
    pub fn upstream_hashes(&self, except: &str) -> String {
        self.manifest
            .steps
            .iter()
            .filter(|s| s.id != except)
            .map(|s| format!("{}={}:{:?}", s.id, s.inputs_hash, s.status))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The report of this run.
    pub fn finish(self, report_html: Option<PathBuf>) -> StudyReport {
        StudyReport {
            dir: self.dir,
            ran: self.ran,
            skipped: self.skipped,
            report_html,
            main_table: None,
        }
    }

    /// A path argument inside the study dir as `$STUDY/…`, so the records (and the hashes)
    /// do not depend on where the study dir lives.
    fn show(&self, arg: &str) -> String {
        let prefix = self.dir.display().to_string();
        arg.replace(&prefix, "$STUDY")
    }

    /// SHA-256 of the tool version, the config dir's YAML files, the command and the inputs
    /// (files by content, or by size and mtime when large; folders by their listing).
    fn inputs_hash(&self, argv: &[String], inputs: &[PathBuf]) -> String {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update([0]);
        h.update(self.conf_hash.as_bytes());
        for a in argv {
            h.update(a.as_bytes());
            h.update([0]);
        }
        for p in inputs {
            h.update(self.show(&p.display().to_string()).as_bytes());
            h.update([1]);
            hash_path(&mut h, p);
        }
        hex(&h.finalize())
    }

    /// Runs the verb with its output in `log`; the first Ctrl-C (the cancel flag) passes a
    /// SIGINT on to it, and it dies with this process.
    fn run_child(&self, argv: &[String], log: &Path) -> std::io::Result<i32> {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.opts.binary);
        cmd.arg("--config-dir")
            .arg(&self.opts.config_dir)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let mut forwarded = false;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(exit_code(status));
            }
            if !forwarded && self.opts.cancel.load(Ordering::SeqCst) {
                // SAFETY: a plain kill(2) of our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGINT);
                }
                forwarded = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Deletes a file or folder if it exists.
fn remove_path(p: &Path) -> Result<(), StudyError> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else if p.exists() {
        std::fs::remove_file(p)
    } else {
        Ok(())
    };
    r.map_err(|source| StudyError::Io {
        path: p.to_path_buf(),
        source,
    })
}

fn hash_path(h: &mut Sha256, p: &Path) {
    let Ok(meta) = std::fs::metadata(p) else {
        h.update(b"missing");
        return;
    };
    if meta.is_dir() {
        let mut entries = Vec::new();
        list_files(p, p, &mut entries);
        entries.sort();
        for (rel, size, mtime) in entries {
            h.update(rel.as_bytes());
            h.update(size.to_le_bytes());
            h.update(mtime.to_le_bytes());
        }
    } else if meta.len() <= CONTENT_HASH_LIMIT {
        if let Ok(mut f) = std::fs::File::open(p) {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
    } else {
        h.update(meta.len().to_le_bytes());
        h.update(mtime_of(&meta).to_le_bytes());
    }
}

fn mtime_of(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn list_files(base: &Path, dir: &Path, out: &mut Vec<(String, u64, u128)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => list_files(base, &p, out),
            Ok(m) => {
                let rel = p
                    .strip_prefix(base)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, m.len(), mtime_of(&m)));
            }
            Err(_) => {}
        }
    }
}

/// The config dir's YAML files (not the study designs: their effect is in the commands).
fn conf_hash(config_dir: &Path) -> String {
    let mut files = Vec::new();
    list_files(config_dir, config_dir, &mut files);
    files.sort();
    let mut h = Sha256::new();
    for (rel, _, _) in files {
        if !rel.ends_with(".yaml") || rel.starts_with("study") {
            continue;
        }
        h.update(rel.as_bytes());
        h.update([0]);
        if let Ok(bytes) = std::fs::read(config_dir.join(&rel)) {
            h.update(&bytes);
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The last `n` lines of a log.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `<study dir>/.lock` holding this process's pid; a lock of a process that no longer exists
/// is taken over.
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock or says who holds it.
    pub fn take(dir: &Path) -> Result<Self, StudyError> {
        let path = dir.join(".lock");
        let me = std::process::id();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write as _;
                    let _ = write!(f, "{me}");
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: Option<u32> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    match pid {
                        Some(pid) if pid != me && Path::new(&format!("/proc/{pid}")).exists() => {
                            return Err(StudyError::Locked {
                                dir: dir.to_path_buf(),
                                pid,
                            })
                        }
                        _ => {
                            // Left by a process that is gone: take it over.
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(source) => return Err(StudyError::Io { path, source }),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
