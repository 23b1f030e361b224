//! The `defectkit` command line: each verb is a thin function over the library
//! (parse → compose config → call), errors carried up to one place that prints them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use defectkit::config::schema::DataKind;
use defectkit::config::{Composed, Loader};
use defectkit::data::mvtec::IndexOptions;

const AFTER_HELP: &str = "\
Overrides (Hydra syntax), after the verb:
  key=value        change a value that exists         trainer.lr=3e-4
  group=option     pick a config group option          model=unet_ae
  +key=value       add a key or group                  +experiment=sweep_scratch
  ++key=value      add or change                       ++trainer.gradient_clip=1.0
  ~key             delete a key or group               ~logger
  a=1,2 b=x,y      with -m: sweep (cartesian product)  -m trainer.lr=1e-3,3e-4
Values: ints, floats, true/false, null, 'quoted', [lists], {dicts}, ${interpolations}.";

#[derive(Debug, Parser)]
#[command(
    name = "defectkit",
    version,
    about = "Industrial visual anomaly detection: train small models, export to ONNX, quantize, deploy.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Run a sweep: one job per combination of comma-separated override values and of the
    /// preset's `hydra.sweeper.params`.
    #[arg(short = 'm', long, global = true)]
    multirun: bool,
    /// Directory holding config.yaml and the groups (default: ./conf, else the project's).
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Primary config name inside the config directory.
    #[arg(long, global = true, default_value = "config", value_name = "NAME")]
    config_name: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the composed configuration as YAML (interpolations as written, like Hydra's
    /// `--cfg job`).
    #[command(after_help = "\
Examples:
  defectkit config
  defectkit config model=unet_ae trainer.lr=3e-4 --resolve
  defectkit config +experiment=sweep_scratch --hydra
  defectkit config -m model=cnn_scratch,unet_ae")]
    Config(ConfigArgs),
    /// Data sets: generate the synthetic set, check a data set root.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a model (A: model=cnn_scratch, B: model=cnn_distilled, C: model=unet_ae) into a
    /// run dir: checkpoints, metrics.jsonl/csv, loss curve, summary.json.
    #[cfg(feature = "train")]
    #[command(after_help = "\
Examples:
  defectkit train                                        # model A on the synthetic set
  defectkit train model=unet_ae trainer=fast             # model C, a short run
  defectkit train model=cnn_distilled model.teacher.weights=resnet18.pth
  defectkit train trainer.resume=last                    # continue the newest run
  defectkit train -m +experiment=sweep_scratch           # a sweep: table in multirun/<date>/<time>/sweep.md")]
    Train(TrainArgs),
    /// Export a trained run to ONNX: model.onnx (dynamic batch, outputs `logits` or
    /// `reconstruction`, and `embedding`) and model.json (preprocessing, classes, ...).
    #[cfg(feature = "train")]
    #[command(after_help = "\
Examples:
  defectkit export outputs/main/a                      # -> exports/a/model.onnx, model.json
  defectkit export outputs/main/b --out exports/b
  defectkit export outputs/main/b --teacher --out exports/teacher")]
    Export(ExportArgs),
    /// Run the data set's splits through an exported model (ONNX Runtime) and store the
    /// embeddings, labels and (autoencoders) reconstruction errors in HDF5.
    #[command(after_help = "\
Examples:
  defectkit embed --model exports/a/model.onnx --out exports/a/embeddings.h5
  defectkit embed --model exports/c/model.onnx --out c.h5 --splits test --batch-size 64
  defectkit embed --model m.onnx --out m.h5 --root ~/mvtec_ad data=mvtec --ep cuda")]
    Embed(EmbedArgs),
}

#[cfg(feature = "train")]
#[derive(Debug, Args)]
struct ExportArgs {
    /// The training run dir (holds .hydra/, checkpoints/, summary.json).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// Output folder (default: exports/<run dir name>, or exports/<name>-teacher).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Export model B's ResNet-18 teacher instead of the student.
    #[arg(long)]
    teacher: bool,
    /// Skip the check that ONNX Runtime reproduces Burn's outputs.
    #[arg(long)]
    no_check: bool,
    /// The ONNX Runtime library for the check (default: ORT_DYLIB_PATH or .cache/onnxruntime).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    /// The exported model (model.onnx, or a quantized variant).
    #[arg(long, value_name = "MODEL.onnx")]
    model: PathBuf,
    /// The HDF5 file to write (replaced atomically).
    #[arg(long, value_name = "FILE.h5")]
    out: PathBuf,
    /// Data set root (default: data.root of the config).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Splits to embed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "train,val,test",
        value_name = "A,B"
    )]
    splits: Vec<String>,
    /// Images per inference batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    batch_size: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    overrides: Vec<String>,
}

/// ONNX Runtime session options shared by the deployment verbs.
#[derive(Debug, Args)]
struct RuntimeArgs {
    /// Execution provider: cpu, cuda or tensorrt (GPU providers need a build with
    /// `--features ort-gpu`; one that cannot load is an error, not a CPU fallback).
    #[arg(long, default_value = "cpu", value_name = "EP")]
    ep: defectkit::runtime::ExecutionProvider,
    /// Intra-op threads (default: ONNX Runtime's choice, all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else .cache/onnxruntime/).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
}

impl RuntimeArgs {
    fn options(&self) -> defectkit::runtime::RuntimeOptions {
        defectkit::runtime::RuntimeOptions {
            ep: self.ep,
            threads: self.threads,
            library: self.ort_lib.clone(),
        }
    }
}

#[cfg(feature = "train")]
#[derive(Debug, Args)]
struct TrainArgs {
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Resolve interpolations (${..}) before printing.
    #[arg(long)]
    resolve: bool,
    /// Print the `hydra` node (run dirs, sweeper params, chosen options) instead of the job's
    /// config.
    #[arg(long)]
    hydra: bool,
    /// Print the final defaults list (which config was merged at which package) instead.
    #[arg(long)]
    defaults: bool,
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    overrides: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
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

#[derive(Debug, Args)]
struct SynthArgs {
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
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Data set root (default: data.root of the config).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Fail on corrupt images, missing masks or ground-truth folders instead of warning.
    #[arg(long)]
    strict: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    overrides: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `./conf` when present, else `$DEFECTKIT_ROOT/conf`, else the source tree's `conf/`.
fn default_config_dir() -> PathBuf {
    let local = PathBuf::from("conf");
    if local.is_dir() {
        return local;
    }
    if let Ok(root) = std::env::var("DEFECTKIT_ROOT") {
        let p = Path::new(&root).join("conf");
        if p.is_dir() {
            return p;
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    if built.is_dir() {
        return built;
    }
    local
}

fn progress_enabled() -> bool {
    std::io::stderr().is_terminal()
}

fn run(cli: Cli) -> Result<()> {
    let config_dir = cli.config_dir.clone().unwrap_or_else(default_config_dir);
    match cli.command {
        Command::Config(args) => cmd_config(&config_dir, &cli.config_name, cli.multirun, args),
        Command::Data(DataCommand::Synth(args)) => {
            no_multirun(cli.multirun, "data synth")?;
            let loader = Loader::new(&config_dir, &cli.config_name, "data_synth")?;
            cmd_synth(&loader, args)
        }
        #[cfg(feature = "train")]
        Command::Train(args) => {
            let loader = Loader::new(&config_dir, &cli.config_name, "train")?;
            cmd_train(&loader, cli.multirun, args)
        }
        #[cfg(feature = "train")]
        Command::Export(args) => {
            no_multirun(cli.multirun, "export")?;
            cmd_export(args)
        }
        Command::Embed(args) => {
            no_multirun(cli.multirun, "embed")?;
            let loader = Loader::new(&config_dir, &cli.config_name, "embed")?;
            cmd_embed(&loader, args)
        }
        Command::Data(DataCommand::Check(args)) => {
            no_multirun(cli.multirun, "data check")?;
            let loader = Loader::new(&config_dir, &cli.config_name, "data_check")?;
            cmd_check(&loader, args)
        }
    }
}

fn no_multirun(multirun: bool, verb: &str) -> Result<()> {
    if multirun {
        bail!("--multirun is not supported by `{verb}`");
    }
    Ok(())
}

fn print_yaml(v: &impl serde::Serialize) -> Result<()> {
    print!(
        "{}",
        serde_norway::to_string(v).context("cannot render YAML")?
    );
    Ok(())
}

fn print_composed(loader: &Loader, c: &Composed, args: &ConfigArgs) -> Result<()> {
    if args.defaults {
        for d in &c.defaults {
            let choice = d
                .choice
                .as_ref()
                .map(|(g, o)| format!("  ({g}={o})"))
                .unwrap_or_default();
            let pkg = if d.package.is_empty() {
                "<root>"
            } else {
                &d.package
            };
            println!("{:<32} @ {pkg}{choice}", d.config_path);
        }
        return Ok(());
    }
    let tree = match (args.hydra, args.resolve) {
        (true, false) => c.hydra_tree(),
        (true, true) => defectkit::config::interpolate::resolve_key(&c.tree, "hydra", &loader.ctx)?,
        (false, false) => c.job_tree(),
        (false, true) => loader.resolve_job(c)?,
    };
    print_yaml(&tree)
}

fn cmd_config(
    config_dir: &Path,
    config_name: &str,
    multirun: bool,
    args: ConfigArgs,
) -> Result<()> {
    let loader = Loader::new(config_dir, config_name, "config")?;
    if multirun {
        let (_, jobs) = loader.compose_sweep(&args.overrides)?;
        for job in &jobs {
            println!("# job {}: {}", job.num, job.composed.overrides.join(" "));
            print_composed(&loader, &job.composed, &args)?;
        }
        return Ok(());
    }
    let composed = loader.compose(&args.overrides)?;
    print_composed(&loader, &composed, &args)?;
    if !args.hydra && !args.defaults {
        // Validate so that typos surface here too, after the tree was shown.
        loader
            .typed(&composed)
            .context("the composed configuration does not match defectkit's schema")?;
    }
    Ok(())
}

fn cmd_synth(loader: &Loader, args: SynthArgs) -> Result<()> {
    let composed = loader.compose(&args.overrides)?;
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
            println!(
                "{} is up to date (same seed and sizes); nothing to do",
                out.display()
            );
            return Ok(());
        }
        opts.force = true;
    }
    let summary = defectkit::data::synth::generate(&opts, &out, progress_enabled())
        .with_context(|| format!("generating the synthetic data set in {}", out.display()))?;
    println!(
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

fn cmd_check(loader: &Loader, args: CheckArgs) -> Result<()> {
    let composed = loader.compose(&args.overrides)?;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot render JSON")?
        );
    } else {
        print!("{}", report.render_table());
    }
    Ok(())
}

#[cfg(feature = "train")]
fn print_summary(s: &defectkit::train::summary::RunSummary, dir: &Path) {
    println!(
        "{}: best {} = {} at epoch {} ({} epochs{}), {} parameters, {:.1} MFLOPs/image, {:.0} s",
        s.model,
        s.monitor,
        s.best_metric
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into()),
        s.best_epoch
            .map(|e| (e + 1).to_string())
            .unwrap_or_else(|| "-".into()),
        s.epochs_run,
        if s.early_stopped {
            ", early-stopped"
        } else {
            ""
        },
        s.parameters,
        s.flops_per_image as f64 / 1e6,
        s.wall_seconds
    );
    for (k, v) in &s.metrics {
        println!("  {k:<28} {v:.4}");
    }
    println!("run dir: {}", dir.display());
}

#[cfg(feature = "train")]
fn cmd_train(loader: &Loader, multirun: bool, args: TrainArgs) -> Result<()> {
    use defectkit::train::summary::{write_sweep_table, SweepRow};
    use defectkit::train::train_job;
    if !multirun {
        let mut composed = loader.compose(&args.overrides)?;
        let cfg = loader.typed(&composed)?;
        let run = loader.create_run_dir(&mut composed)?;
        eprintln!("run dir: {}", run.path.display());
        let summary = train_job(&cfg, &composed.overrides, &run.path)
            .with_context(|| format!("training failed (run dir {})", run.path.display()))?;
        print_summary(&summary, &run.path);
        return Ok(());
    }
    let (base, mut jobs) = loader.compose_sweep(&args.overrides)?;
    // Validate every job before training any, so a typo fails in seconds, not hours.
    let mut configs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        configs.push(
            loader.typed(&job.composed).with_context(|| {
                format!("job {} ({})", job.num, job.composed.overrides.join(" "))
            })?,
        );
    }
    let sweep_dir = loader.create_sweep_dir(&base)?;
    eprintln!("sweep: {} jobs in {}", jobs.len(), sweep_dir.display());
    let mut rows = Vec::new();
    for (job, cfg) in jobs.iter_mut().zip(&configs) {
        let run = loader.create_job_dir(job, &sweep_dir)?;
        eprintln!("[job {}] {}", job.num, job.composed.overrides.join(" "));
        let outcome = train_job(cfg, &job.composed.overrides, &run.path).map_err(|e| e.to_string());
        match &outcome {
            Ok(s) => print_summary(s, &run.path),
            Err(e) => eprintln!("[job {}] failed: {e}", job.num),
        }
        rows.push(SweepRow {
            job: job.num,
            dir: run.path.clone(),
            outcome,
        });
        write_sweep_table(&sweep_dir, &rows).context("writing the sweep table")?;
    }
    println!("sweep table: {}", sweep_dir.join("sweep.md").display());
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} jobs failed (see {})",
            rows.len(),
            sweep_dir.join("sweep.md").display()
        );
    }
    Ok(())
}

#[cfg(feature = "train")]
fn cmd_export(args: ExportArgs) -> Result<()> {
    use defectkit::export::{export_run, load_run, parity_with_runtime, ExportTarget};
    let target = if args.teacher {
        ExportTarget::Teacher
    } else {
        ExportTarget::Model
    };
    let device = burn::prelude::Device::flex();
    let context = || format!("exporting {}", args.run_dir.display());
    let run = load_run(&args.run_dir, target, &device).with_context(context)?;
    let out = args.out.unwrap_or_else(|| {
        let suffix = if args.teacher { "-teacher" } else { "" };
        PathBuf::from("exports").join(format!("{}{suffix}", run.run_id))
    });
    let report = export_run(&run, &out, &device).with_context(context)?;
    let m = &report.metadata;
    println!(
        "exported {} ({} classes, input [batch, {}, {}, {}], embedding {}, opset {}): {} ({:.2} MB)",
        m.kind.as_str(),
        m.classes.len(),
        m.input_shape[0],
        m.input_shape[1],
        m.input_shape[2],
        m.embedding_dim,
        m.opset,
        report.onnx.display(),
        report.bytes as f64 / 1e6
    );
    println!("metadata: {}", report.json.display());
    if args.no_check {
        return Ok(());
    }
    let opts = defectkit::runtime::RuntimeOptions {
        library: args.ort_lib,
        ..Default::default()
    };
    match parity_with_runtime(&run.network, &report.onnx, 2, 0, &opts) {
        Ok((primary, embedding)) => {
            println!(
                "check: ONNX Runtime vs Burn on 2 random inputs: max |diff| {} {:.2e} (values up to {:.1}), embedding {:.2e} (values up to {:.1})",
                m.kind.primary_output(),
                primary.max_abs_diff,
                primary.max_abs_value,
                embedding.max_abs_diff,
                embedding.max_abs_value
            );
            if !(primary.within(1e-4) && embedding.within(1e-4)) {
                bail!(
                    "ONNX Runtime's outputs differ from Burn's by more than 1e-4 (relative to \
                     their magnitude); the export is not faithful (please report this with the \
                     run dir)"
                );
            }
        }
        Err(defectkit::runtime::RuntimeError::LibraryMissing { .. }) => eprintln!(
            "warning: skipped the ONNX Runtime check: its library is not installed (run `{}`)",
            defectkit::runtime::INSTALL_HINT
        ),
        Err(e) => return Err(e).context("checking the export with ONNX Runtime"),
    }
    Ok(())
}

fn cmd_embed(loader: &Loader, args: EmbedArgs) -> Result<()> {
    use defectkit::data::mvtec::Split;
    use defectkit::embed::{embed, EmbedOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let composed = loader.compose(&args.overrides)?;
    let cfg = loader.typed(&composed)?;
    let splits = args
        .splits
        .iter()
        .map(|s| match s.as_str() {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => bail!("unknown split {other:?} (expected train, val, test)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C while stopping kills the process the usual way.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: stopping after this batch; nothing will be written");
        });
    }
    let opts = EmbedOptions {
        model: args.model.clone(),
        root: args.root,
        out: args.out.clone(),
        runtime: args.runtime.options(),
        batch_size: args.batch_size,
        splits,
        progress: progress_enabled(),
    };
    match embed(&cfg.data, &opts, &cancel) {
        Ok(report) => {
            let counts: Vec<String> = report
                .counts
                .iter()
                .map(|(s, n)| format!("{} {n}", s.as_str()))
                .collect();
            println!(
                "embedded {} with {} in {:.1} s: {}",
                counts.join(", "),
                args.model.display(),
                report.seconds,
                report.out.display()
            );
            if !report.skipped.is_empty() {
                eprintln!(
                    "warning: {} unreadable images skipped",
                    report.skipped.len()
                );
            }
            Ok(())
        }
        Err(defectkit::embed::EmbedError::Interrupted) => {
            eprintln!("embed: interrupted; {} was not written", args.out.display());
            std::process::exit(130);
        }
        Err(e) => Err(e).with_context(|| format!("embedding with {}", args.model.display())),
    }
}
