//! Hydra-style configuration (ARCHITECTURE.md seam 3: config is data).
//!
//! `conf/config.yaml` plus groups (`data/`, `model/`, `trainer/`, `logger/`, `experiment/`)
//! are composed with Hydra 1.3's semantics into one YAML tree ([`compose`]), command-line
//! overrides are applied ([`overrides`]), interpolations resolved ([`interpolate`]), sweeps
//! expanded ([`sweep`]) and run directories written ([`rundir`]). Only then is the tree
//! deserialized into typed structs that reject unknown keys ([`schema`]). No other module
//! reads YAML configuration itself.

pub mod cluster;
pub mod compose;
pub mod detector;
pub mod error;
mod grammar;
pub mod interpolate;
mod override_parser;
pub mod overrides;
mod pyrepr;
pub mod quantize;
pub mod rundir;
pub mod schema;
pub mod study;
pub mod sweep;

use std::path::{Path, PathBuf};

pub use compose::{Composed, ConfigRepo, RunMode};
pub use detector::DetectorConfig;
pub use error::ConfigError;
pub use interpolate::ResolveContext;
pub use quantize::QuantizeConfig;
pub use rundir::RunDir;
pub use schema::Config;

use overrides::{parse_override, Override};

/// Composes configurations for one command: a config directory, a primary config name, the
/// job name (the CLI verb) and one fixed clock for `${now:..}`.
#[derive(Debug)]
pub struct Loader {
    repo: ConfigRepo,
    config_name: String,
    job_name: String,
    /// Clock and environment for resolving interpolations.
    pub ctx: ResolveContext,
}

/// One job to run: its composed config and, once created, its run directory.
#[derive(Debug, Clone)]
pub struct Job {
    /// The composed tree for this job.
    pub composed: Composed,
    /// Job number (0 for a single run).
    pub num: usize,
}

impl Loader {
    /// A loader over `config_dir/config_name.yaml` for the verb `job_name`. An empty
    /// `config_name` composes without a primary config (Hydra's `config_name=None`).
    pub fn new(config_dir: &Path, config_name: &str, job_name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            repo: ConfigRepo::open(config_dir)?,
            config_name: config_name.trim_end_matches(".yaml").to_string(),
            job_name: job_name.to_string(),
            ctx: ResolveContext::default(),
        })
    }

    /// The config directory.
    pub fn config_dir(&self) -> &Path {
        self.repo.dir()
    }

    /// Parse override strings.
    pub fn parse(overrides: &[String]) -> Result<Vec<Override>, ConfigError> {
        overrides.iter().map(|s| parse_override(s)).collect()
    }

    /// Compose one configuration from override strings (a single run: sweeps are errors).
    pub fn compose(&self, overrides: &[String]) -> Result<Composed, ConfigError> {
        let parsed = Self::parse(overrides)?;
        let mut c = compose::compose(&self.repo, &self.config_name, &parsed, RunMode::Run)?;
        rundir::fill_runtime(&mut c, &self.job_name, RunMode::Run, 0);
        Ok(c)
    }

    /// Expand a `--multirun` command line into its jobs, each composed and numbered from 0.
    /// Returns the sweep's base composition (for `multirun.yaml`) and the jobs.
    pub fn compose_sweep(&self, overrides: &[String]) -> Result<(Composed, Vec<Job>), ConfigError> {
        let parsed = Self::parse(overrides)?;
        let mut base = compose::compose(&self.repo, &self.config_name, &parsed, RunMode::Multirun)?;
        rundir::fill_runtime(&mut base, &self.job_name, RunMode::Multirun, 0);
        let job_lists = sweep::expand_jobs(&self.repo, &base, &parsed)?;
        let mut jobs = Vec::with_capacity(job_lists.len());
        for (num, list) in job_lists.into_iter().enumerate() {
            let job_ov = Self::parse(&list)?;
            let mut c = compose::compose(&self.repo, &self.config_name, &job_ov, RunMode::Run)?;
            rundir::fill_runtime(&mut c, &self.job_name, RunMode::Multirun, num);
            jobs.push(Job { composed: c, num });
        }
        Ok((base, jobs))
    }

    /// Resolve all interpolations of the job's config (the tree without `hydra`).
    pub fn resolve_job(&self, composed: &Composed) -> Result<serde_norway::Value, ConfigError> {
        let full = interpolate::resolve_tree(&composed.tree, &self.ctx)?;
        let mut job = full;
        if let serde_norway::Value::Mapping(m) = &mut job {
            m.shift_remove(compose::HYDRA_KEY);
        }
        Ok(job)
    }

    /// Resolve and deserialize into the typed [`Config`], rejecting unknown keys.
    pub fn typed(&self, composed: &Composed) -> Result<Config, ConfigError> {
        schema::Config::from_tree(self.resolve_job(composed)?)
    }

    /// Create the run directory of a single run (`hydra.run.dir`).
    pub fn create_run_dir(&self, composed: &mut Composed) -> Result<RunDir, ConfigError> {
        let dir = rundir::job_dir(composed, RunMode::Run, None, &self.ctx)?;
        rundir::create_run_dir(composed, &dir, &self.ctx)
    }

    /// Resolve the sweep directory and write `multirun.yaml` there.
    pub fn create_sweep_dir(&self, base: &Composed) -> Result<PathBuf, ConfigError> {
        let dir = rundir::sweep_dir(base, &self.ctx)?;
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().map(|c| c.join(&dir)).unwrap_or(dir)
        };
        rundir::write_sweep_record(base, &dir)?;
        Ok(dir)
    }

    /// Create the run directory of one sweep job under `sweep_dir`.
    pub fn create_job_dir(&self, job: &mut Job, sweep_dir: &Path) -> Result<RunDir, ConfigError> {
        let dir = rundir::job_dir(&job.composed, RunMode::Multirun, Some(sweep_dir), &self.ctx)?;
        rundir::create_run_dir(&mut job.composed, &dir, &self.ctx)
    }
}
