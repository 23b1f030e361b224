//! Run directories: `hydra.run.dir` for one job, `hydra.sweep.dir/hydra.sweep.subdir` for
//! each job of a sweep, each holding `.hydra/{config,overrides,hydra}.yaml` so that a run can
//! be reproduced from its folder alone.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::compose::{select, Composed, RunMode, HYDRA_KEY};
use super::error::ConfigError;
use super::interpolate::{resolve_key, resolve_tree, ResolveContext};
use super::pyrepr::python_str;
use crate::fsutil::write_atomic;

/// A created run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The job's output directory (absolute).
    pub path: PathBuf,
    /// Job number within a sweep (0 for a single run).
    pub job_num: usize,
}

fn set(tree: &mut Value, key: &str, value: Value) {
    let mut cur = tree;
    let segs: Vec<&str> = key.split('.').collect();
    for seg in &segs[..segs.len() - 1] {
        let Value::Mapping(m) = cur else { return };
        if !m.get(*seg).is_some_and(Value::is_mapping) {
            m.insert(
                Value::String(seg.to_string()),
                Value::Mapping(Mapping::new()),
            );
        }
        cur = match m.get_mut(*seg) {
            Some(v) => v,
            None => return,
        };
    }
    if let Value::Mapping(m) = cur {
        m.insert(Value::String(segs[segs.len() - 1].to_string()), value);
    }
}

/// Fill the `hydra` node with what Hydra records at run time: job name and number, mode,
/// chosen options, the task and hydra overrides, and `override_dirname`.
pub fn fill_runtime(composed: &mut Composed, job_name: &str, mode: RunMode, job_num: usize) {
    let (hydra_ov, task_ov): (Vec<String>, Vec<String>) =
        composed.overrides.iter().cloned().partition(|o| {
            let k = o.trim_start_matches(['+', '~']);
            k.starts_with("hydra.") || k.starts_with("hydra/")
        });
    let mut dirname: Vec<String> = task_ov.clone();
    dirname.sort();
    let mut choices = Mapping::new();
    for (k, v) in &composed.choices {
        choices.insert(Value::String(k.clone()), Value::String(v.clone()));
    }
    let t = &mut composed.tree;
    set(t, "hydra.job.name", Value::String(job_name.to_string()));
    set(t, "hydra.job.num", Value::Number(job_num.into()));
    set(
        t,
        "hydra.job.override_dirname",
        Value::String(dirname.join(",")),
    );
    set(
        t,
        "hydra.mode",
        Value::String(
            match mode {
                RunMode::Run => "RUN",
                RunMode::Multirun => "MULTIRUN",
            }
            .to_string(),
        ),
    );
    set(t, "hydra.runtime.choices", Value::Mapping(choices));
    set(
        t,
        "hydra.runtime.version",
        Value::String(env!("CARGO_PKG_VERSION").to_string()),
    );
    set(
        t,
        "hydra.overrides.task",
        Value::Sequence(task_ov.into_iter().map(Value::String).collect()),
    );
    set(
        t,
        "hydra.overrides.hydra",
        Value::Sequence(hydra_ov.into_iter().map(Value::String).collect()),
    );
}

fn resolve_path(
    composed: &Composed,
    key: &str,
    ctx: &ResolveContext,
) -> Result<PathBuf, ConfigError> {
    let v = resolve_key(&composed.tree, key, ctx)?;
    let s = python_str(&v);
    if s.trim().is_empty() {
        return Err(ConfigError::Composition(format!("'{key}' is empty")));
    }
    Ok(PathBuf::from(s))
}

/// The sweep's base directory (`hydra.sweep.dir`), resolved once for all jobs.
pub fn sweep_dir(composed: &Composed, ctx: &ResolveContext) -> Result<PathBuf, ConfigError> {
    resolve_path(composed, "hydra.sweep.dir", ctx)
}

/// Pick the directory for a job: in [`RunMode::Run`] `hydra.run.dir`, otherwise
/// `sweep_dir/hydra.sweep.subdir`. A single run never reuses a folder that already holds a
/// run (`.hydra/`): it takes `<dir>_1`, `<dir>_2`, … instead, so nothing is overwritten.
pub fn job_dir(
    composed: &Composed,
    mode: RunMode,
    sweep_base: Option<&Path>,
    ctx: &ResolveContext,
) -> Result<PathBuf, ConfigError> {
    let dir = match (mode, sweep_base) {
        (RunMode::Multirun, Some(base)) => {
            base.join(resolve_path(composed, "hydra.sweep.subdir", ctx)?)
        }
        (RunMode::Multirun, None) => {
            sweep_dir(composed, ctx)?.join(resolve_path(composed, "hydra.sweep.subdir", ctx)?)
        }
        (RunMode::Run, _) => resolve_path(composed, "hydra.run.dir", ctx)?,
    };
    let dir = crate::fsutil::absolute(&dir);
    if mode == RunMode::Run && dir.join(".hydra").exists() {
        for i in 1.. {
            let mut name = dir.as_os_str().to_os_string();
            name.push(format!("_{i}"));
            let candidate = PathBuf::from(name);
            if !candidate.join(".hydra").exists() {
                return Ok(candidate);
            }
        }
    }
    Ok(dir)
}

fn yaml(v: &impl serde::Serialize, path: &Path) -> Result<String, ConfigError> {
    serde_norway::to_string(v).map_err(|e| ConfigError::RunDir {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Create the job's directory and write `.hydra/config.yaml` (the job config as composed,
/// interpolations kept, like Hydra), `.hydra/overrides.yaml` and `.hydra/hydra.yaml` (the
/// resolved `hydra` node, with `runtime.choices` and `runtime.output_dir`).
pub fn create_run_dir(
    composed: &mut Composed,
    dir: &Path,
    ctx: &ResolveContext,
) -> Result<RunDir, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::RunDir { path, source }
    };
    std::fs::create_dir_all(dir.join(".hydra")).map_err(io(dir))?;
    set(
        &mut composed.tree,
        "hydra.runtime.output_dir",
        Value::String(dir.display().to_string()),
    );
    let cwd = std::env::current_dir()
        .map(|c| c.display().to_string())
        .unwrap_or_default();
    set(&mut composed.tree, "hydra.runtime.cwd", Value::String(cwd));

    let job = composed.job_tree();
    let config_path = dir.join(".hydra/config.yaml");
    write_atomic(&config_path, yaml(&job, &config_path)?.as_bytes()).map_err(io(&config_path))?;

    let task: Vec<String> = match select(&composed.tree, "hydra.overrides.task") {
        Some(Value::Sequence(s)) => s.iter().map(python_str).collect(),
        _ => composed.overrides.clone(),
    };
    let ov_path = dir.join(".hydra/overrides.yaml");
    write_atomic(&ov_path, yaml(&task, &ov_path)?.as_bytes()).map_err(io(&ov_path))?;

    let resolved = resolve_tree(&composed.tree, ctx)?;
    let mut hydra = Mapping::new();
    hydra.insert(
        Value::String(HYDRA_KEY.into()),
        resolved.get(HYDRA_KEY).cloned().unwrap_or(Value::Null),
    );
    let hydra_path = dir.join(".hydra/hydra.yaml");
    write_atomic(&hydra_path, yaml(&hydra, &hydra_path)?.as_bytes()).map_err(io(&hydra_path))?;

    let job_num = select(&composed.tree, "hydra.job.num")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    Ok(RunDir {
        path: dir.to_path_buf(),
        job_num,
    })
}

/// Write `multirun.yaml` (the sweep's base config) into the sweep directory.
pub fn write_sweep_record(composed: &Composed, sweep_dir: &Path) -> Result<(), ConfigError> {
    let path = sweep_dir.join("multirun.yaml");
    write_atomic(&path, yaml(&composed.tree, &path)?.as_bytes()).map_err(|source| {
        ConfigError::RunDir {
            path: path.clone(),
            source,
        }
    })
}
