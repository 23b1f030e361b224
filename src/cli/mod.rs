//! The verbs: the clap definitions shared by all of them ([`Cli`], [`OverrideArgs`],
//! [`RuntimeArgs`]) and one module per verb, each parse → compose → call → print.

mod bench;
mod cluster;
mod config;
mod data;
mod detect;
mod embed;
#[cfg(feature = "train")]
mod export;
mod quantize;
mod report;
mod score;
#[cfg(feature = "train")]
mod study;
#[cfg(feature = "train")]
mod train;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use defectkit::config::Loader;
use defectkit::runtime::{ExecutionProvider, RuntimeOptions};

/// `println!` that returns the write error instead of panicking (a closed pipe ends the
/// program quietly in `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

const AFTER_HELP: &str = "\
Overrides (Hydra syntax), after the verb:
  key=value        change a value that exists         trainer.lr=3e-4
  group=option     pick a config group option          model=unet_ae
  +key=value       add a key or group                  +experiment=sweep_scratch
  ++key=value      add or change                       ++trainer.gradient_clip=1.0
  ~key             delete a key or group               ~logger
  a=1,2 b=x,y      with -m: sweep (cartesian product)  -m trainer.lr=1e-3,3e-4
Values: ints, floats, true/false, null, 'quoted', [lists], {dicts}, ${interpolations}.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "defectkit",
    version,
    about = "Industrial visual anomaly detection: train small models, export to ONNX, quantize, deploy.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Run a sweep: one job per combination of comma-separated override values and of the
    /// preset's `hydra.sweeper.params`.
    #[arg(short = 'm', long, global = true)]
    multirun: bool,
    /// Directory holding config.yaml and the groups (default: the first `conf/` under
    /// $DEFECTKIT_ROOT, the current dir, the source tree).
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
    Config(config::ConfigArgs),
    /// Data sets: generate the synthetic set, check a data set root.
    #[command(subcommand)]
    Data(data::DataCommand),
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
    Train(train::TrainArgs),
    /// Export a trained run to ONNX: model.onnx (dynamic batch, outputs `logits` or
    /// `reconstruction`, `embedding`, and the patch-level `features` map) and model.json
    /// (preprocessing, classes, the features' shape, ...).
    #[cfg(feature = "train")]
    #[command(after_help = "\
Examples:
  defectkit export outputs/main/a                      # -> exports/a/model.onnx, model.json
  defectkit export outputs/main/b --out exports/b
  defectkit export outputs/main/b --teacher --out exports/teacher")]
    Export(export::ExportArgs),
    /// Run the data set's splits through an exported model (ONNX Runtime) and store the
    /// embeddings, labels and (autoencoders) reconstruction errors in HDF5.
    #[command(after_help = "\
Examples:
  defectkit embed --model exports/a/model.onnx --out exports/a/embeddings.h5
  defectkit embed --model exports/c/model.onnx --out c.h5 --splits test --batch-size 64
  defectkit embed --model m.onnx --out m.h5 --root ~/mvtec_ad data=mvtec --ep cuda")]
    Embed(embed::EmbedArgs),
    /// Fit an anomaly detector (detector=mahalanobis|euclidean|knn|recon) on an embeddings
    /// file's good images, threshold it on held-out good images, evaluate it on the test
    /// split: detector.json, metrics.json/.md, ROC curves and score histograms.
    #[command(after_help = "\
Examples:
  defectkit detect exports/main/a/embeddings.h5                   # Mahalanobis, Ledoit-Wolf
  defectkit detect exports/main/c/embeddings.h5 detector=recon detector.score=local
  defectkit detect exports/main/b/embeddings.h5 detector=knn detector.k=1 detector.percentile=99
  defectkit detect --compare exports/main/{a,b,c,teacher}/embeddings.h5 --methods mahalanobis,knn")]
    Detect(detect::DetectArgs),
    /// Score folders of images with a model and its detector: one row per file (path,
    /// class, score, threshold, anomalous, error) as CSV or JSON Lines.
    #[command(after_help = "\
Examples:
  defectkit score line/2026-12-01 --model exports/main/b/model.onnx \\
      --detector exports/main/b/detect/mahalanobis/detector.json --out scores.csv
  defectkit score img.png --model m.onnx --detector detector.json --class bottle
  defectkit score /data/line --model m.onnx --detector d.json --shard 2/8 --out part2.csv")]
    Score(score::ScoreArgs),
    /// Outlier analysis: standardize + PCA (fitted on train good), t-SNE, DBSCAN in each
    /// space with eps from the k-distance knee; noise points as candidate anomalies, scored
    /// against the labels (and a detector's verdicts with --detector); tables and scatter plots.
    #[command(after_help = "\
Examples:
  defectkit cluster exports/main/teacher/embeddings.h5
  defectkit cluster exports/main/b/embeddings.h5 --detector exports/main/b/detect/mahalanobis/detector.json
  defectkit cluster b.h5 cluster.dbscan.min_samples=8 cluster.dbscan.eps=3.0 --classes bottle,screw")]
    Cluster(cluster::ClusterArgs),
    /// Quantize an exported FP32 model to static int8 (QDQ, weights per channel), calibrated
    /// on good training images; checks that ONNX Runtime fuses it into int8 kernels.
    #[command(after_help = "\
Examples:
  defectkit quantize exports/main/a/model.onnx                 # -> exports/main/a/model.int8.onnx
  defectkit quantize exports/main/b/model.onnx quantize=percentile quantize.percentile=99.99
  defectkit quantize m.onnx --out m.trt.int8.onnx quantize.symmetric_activations=true")]
    Quantize(quantize::QuantizeArgs),
    /// Benchmark exported models: size, load time, latency percentiles, throughput, peak
    /// RSS and detection quality; with --quantized FP32 and INT8 side by side.
    #[command(after_help = "\
Examples:
  defectkit bench --quantized --models exports/main/a exports/main/b
  defectkit bench --quantized --top 3 --batch 1,16 --threads 1
  defectkit bench --models exports/main/b --ep cpu,cuda,tensorrt")]
    Bench(bench::BenchArgs),
    /// Run the whole experiment as one resumable study (study=synthetic_quick|mvtec10|…):
    /// sweeps → selection → seed repeats → export → embed → compare → quantize + bench →
    /// cluster → report, into one study dir with a manifest of every step.
    #[cfg(feature = "train")]
    #[command(after_help = "\
Examples:
  defectkit study                                          # study=synthetic_quick
  defectkit study study=mvtec10 data.root=~/mvtec_ad
  defectkit study --until select                           # stop after the sweeps' selection
  defectkit study study.seeds=[1,2,3] --dir studies/seeds123")]
    Study(study::StudyArgs),
    /// Write the scientific report of a study dir: report.md and a self-contained
    /// report.html (figures embedded), every number read from the study's files.
    #[command(after_help = "\
Examples:
  defectkit report studies/synthetic_quick
  defectkit report studies/mvtec10 --model-readmes crates/defectkit-train/src/models")]
    Report(report::ReportArgs),
}

/// Config overrides in Hydra syntax, after the verb (flattened into every verb that
/// composes a config).
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Overrides (see `defectkit --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    pub overrides: Vec<String>,
}

/// ONNX Runtime session options shared by the deployment verbs.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Execution provider: cpu, cuda or tensorrt (GPU providers need a build with
    /// `--features ort-gpu`; one that cannot load is an error, not a CPU fallback).
    #[arg(long, default_value = "cpu", value_name = "EP")]
    ep: ExecutionProvider,
    /// Intra-op threads (default: ONNX Runtime's choice, all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else .cache/onnxruntime/).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
}

impl RuntimeArgs {
    /// The library's session options.
    pub fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            ep: self.ep,
            threads: self.threads,
            library: self.ort_lib.clone(),
        }
    }
}

/// A verb stopped by Ctrl-C; `main` prints it and exits with 130.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let config_dir = cli
        .config_dir
        .clone()
        .unwrap_or_else(defectkit::paths::config_dir);
    let loader = |job: &str| Loader::new(&config_dir, &cli.config_name, job);
    let single = |verb: &str| no_multirun(cli.multirun, verb);
    match cli.command {
        Command::Config(args) => config::run(&loader("config")?, cli.multirun, args),
        Command::Data(data::DataCommand::Synth(args)) => {
            single("data synth")?;
            data::synth(&loader("data_synth")?, args)
        }
        Command::Data(data::DataCommand::Check(args)) => {
            single("data check")?;
            data::check(&loader("data_check")?, args)
        }
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(&loader("train")?, cli.multirun, args),
        #[cfg(feature = "train")]
        Command::Export(args) => {
            single("export")?;
            export::run(args)
        }
        Command::Embed(args) => {
            single("embed")?;
            embed::run(&loader("embed")?, args)
        }
        Command::Detect(args) => {
            single("detect")?;
            detect::run(&loader("detect")?, args)
        }
        Command::Score(args) => {
            single("score")?;
            score::run(args)
        }
        Command::Cluster(args) => {
            single("cluster")?;
            cluster::run(&loader("cluster")?, args)
        }
        Command::Quantize(args) => {
            single("quantize")?;
            quantize::run(&loader("quantize")?, args)
        }
        Command::Bench(args) => {
            single("bench")?;
            bench::run(&loader("bench")?, args)
        }
        #[cfg(feature = "train")]
        Command::Study(args) => {
            single("study")?;
            study::run(&config_dir, args)
        }
        Command::Report(args) => {
            single("report")?;
            report::run(args)
        }
    }
}

fn no_multirun(multirun: bool, verb: &str) -> Result<()> {
    if multirun {
        bail!("--multirun is not supported by `{verb}`");
    }
    Ok(())
}

/// Progress bars only when a person watches stderr.
pub fn progress_enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// The one Ctrl-C policy of every long verb ([`defectkit::interrupt`]): the first Ctrl-C
/// asks the work to stop at its next safe point, announcing `what_happens`; a second one
/// while stopping removes this process's temporary files and ends it at once (130).
/// Returns the process-wide flag, for library calls that take a `cancel` flag.
pub(crate) fn stop_work_on_ctrl_c(what_happens: &'static str) -> &'static AtomicBool {
    let _ = ctrlc::set_handler(move || {
        if defectkit::interrupt::stop_requested() {
            defectkit::interrupt::exit_interrupted();
        }
        defectkit::interrupt::request_stop();
        eprintln!("\ninterrupt: {what_happens}");
    });
    defectkit::interrupt::flag()
}
