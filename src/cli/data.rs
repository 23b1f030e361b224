//! `defectkit data synth` and `defectkit data check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use defectkit::config::schema::DataKind;
use defectkit::config::Loader;
use defectkit::data::mvtec::IndexOptions;

use super::{outln, progress_enabled, OverrideArgs};

/// The `data` verbs.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate the synthetic MVTec-like data set (the embedded default).
    #[command(after_help = "\
Examples:
  defectkit data synth                           # data/synthetic, seed 0, sizes from conf/data/synthetic.yaml
  defectkit data synth --out /tmp/syn --seed 1 --size 64 --train-good 10 --force
  defectkit data synth data.synth.test_good=30   # any config key works as an override")]
    Synth(SynthArgs),
    /// Check a data set root: per-class table of splits, defect types, masks and image sizes;
    /// corrupt images are named.
    #[command(after_help = "\
Examples:
  defectkit data check                               # the configured data set (data.root)
  defectkit data check --root ~/datasets/mvtec_ad data=mvtec
  defectkit data check data=mvtec data.root=/data/mvtec --strict --json")]
    Check(CheckArgs),
}

/// Arguments of `defectkit data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output root (default: data.root of the config).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long)]
    seed: Option<u64>,
    /// Image side length in pixels.
    #[arg(long, value_name = "PX")]
    size: Option<u32>,
    /// train/good images per category.
    #[arg(long, value_name = "N")]
    train_good: Option<usize>,
    /// test/good images per category.
    #[arg(long, value_name = "N")]
    test_good: Option<usize>,
    /// Test images per defect type.
    #[arg(long, value_name = "N")]
    defects_per_type: Option<usize>,
    /// Only these categories (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    classes: Option<Vec<String>>,
    /// Replace an existing non-empty output folder.
    #[arg(long)]
    force: bool,
    /// Do nothing when the output already holds a set generated with the same settings
    /// (its synth.json matches); otherwise generate, replacing an older set.
    #[arg(long)]
    if_changed: bool,
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// Arguments of `defectkit data check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data set root (default: data.root of the config).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Fail on corrupt images, missing masks or ground-truth folders instead of warning.
    #[arg(long)]
    strict: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// `data synth`: the config's `data.synth` options, then the flags on top.
pub fn synth(loader: &Loader, args: SynthArgs) -> Result<()> {
    let composed = loader.compose(&args.overrides.overrides)?;
    let cfg = loader.typed(&composed)?;
    let mut opts = cfg.data.synth.clone().unwrap_or_default();
    if let Some(s) = args.seed {
        opts.seed = s;
    }
    if let Some(s) = args.size {
        opts.image_size = s;
    }
    if let Some(n) = args.train_good {
        opts.train_good = n;
    }
    if let Some(n) = args.test_good {
        opts.test_good = n;
    }
    if let Some(n) = args.defects_per_type {
        opts.test_defect_per_type = n;
    }
    if let Some(c) = args.classes {
        opts.classes = Some(c);
    }
    opts.force = opts.force || args.force;
    let out = args.out.unwrap_or_else(|| match cfg.data.kind {
        DataKind::Synthetic => cfg.data.root.clone(),
        DataKind::Mvtec => cfg.paths.data_dir.join("synthetic"),
    });
    if args.if_changed {
        if defectkit::data::synth::is_up_to_date(&opts, &out) {
            outln!(
                "{} is up to date (same seed and sizes); nothing to do",
                out.display()
            );
            return Ok(());
        }
        opts.force = true;
    }
    super::stop_work_on_ctrl_c("stopping; the partial data set will be removed");
    let summary = match defectkit::data::synth::generate(&opts, &out, progress_enabled()) {
        Err(defectkit::data::synth::SynthError::Interrupted) => {
            return Err(super::Interrupted(format!(
                "data synth: interrupted; the partial set was removed and {} is unchanged",
                out.display()
            ))
            .into())
        }
        other => other
            .with_context(|| format!("generating the synthetic data set in {}", out.display()))?,
    };
    outln!(
        "wrote {} images and {} masks for {} categories to {} in {:.1} s (seed {})",
        summary.images,
        summary.masks,
        summary.classes.len(),
        summary.root.display(),
        summary.seconds,
        opts.seed
    );
    Ok(())
}

/// `data check`: a per-class table (or JSON) of what the data set root holds.
pub fn check(loader: &Loader, args: CheckArgs) -> Result<()> {
    let composed = loader.compose(&args.overrides.overrides)?;
    let cfg = loader.typed(&composed)?;
    let root = args.root.unwrap_or_else(|| cfg.data.root.clone());
    let opts = IndexOptions {
        classes: cfg.data.classes.clone(),
        val_fraction: cfg.data.val_fraction,
        seed: cfg.data.split_seed,
        strict: args.strict || cfg.data.strict,
    };
    let report = defectkit::data::check::check(&root, &opts, progress_enabled())
        .with_context(|| format!("checking the data set at {}", root.display()))?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot render JSON")?
        );
    } else {
        use std::io::Write as _;
        write!(std::io::stdout().lock(), "{}", report.render_table())?;
    }
    Ok(())
}
