//! `defectkit embed`: a data set's splits through an exported model into HDF5.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::config::Loader;
use defectkit::data::mvtec::Split;
use defectkit::embed::{embed, EmbedError, EmbedOptions};

use super::{outln, progress_enabled, stop_work_on_ctrl_c, Interrupted, OverrideArgs, RuntimeArgs};

/// Arguments of `defectkit embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
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
    /// Window side (model-input pixels) of the local reconstruction error stored for
    /// autoencoders; the recon detector's `detector.pool` must match it.
    #[arg(long, default_value_t = 8, value_name = "K")]
    recon_pool: usize,
    /// Also store the model's `features` maps (N×C×h×w per split), which the patch
    /// detectors (`detector=padim`, `detector=patchcore`) and `score --maps` need.
    #[arg(long)]
    maps: bool,
    /// With --maps: keep only this many of the features' channels, chosen at random with
    /// --map-seed (PaDiM keeps 100 of ResNet-18's 448); default all.
    #[arg(long, value_name = "N", requires = "maps")]
    map_channels: Option<usize>,
    /// Seed of --map-channels' choice (recorded in the file).
    #[arg(long, default_value_t = 0, value_name = "S", requires = "map_channels")]
    map_seed: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// Embeds; Ctrl-C stops between batches and writes nothing (exit 130).
pub fn run(loader: &Loader, args: EmbedArgs) -> Result<()> {
    let composed = loader.compose(&args.overrides.overrides)?;
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
    if args.recon_pool == 0 {
        bail!("--recon-pool must be at least 1");
    }
    let cancel = stop_work_on_ctrl_c("stopping after this batch; nothing will be written");
    let opts = EmbedOptions {
        model: args.model.clone(),
        root: args.root,
        out: args.out.clone(),
        runtime: args.runtime.options(),
        batch_size: args.batch_size,
        splits,
        progress: progress_enabled(),
        recon_pool: args.recon_pool,
        maps: args.maps.then_some(defectkit::embed::MapSelection {
            channels: args.map_channels,
            seed: args.map_seed,
        }),
    };
    match embed(&cfg.data, &opts, cancel) {
        Ok(report) => {
            let counts: Vec<String> = report
                .counts
                .iter()
                .map(|(s, n)| format!("{} {n}", s.as_str()))
                .collect();
            outln!(
                "embedded {} with {} in {:.1} s: {}",
                counts.join(", "),
                args.model.display(),
                report.seconds,
                report.out.display()
            );
            if let Some(m) = &report.maps {
                let images: usize = report.counts.iter().map(|(_, n)| n).sum();
                outln!(
                    "  feature maps: {}×{}×{} per image (stride {}; {} of the model's {} channels{}), {:.1} MiB in all",
                    m.channels.len(),
                    m.height,
                    m.width,
                    m.stride,
                    m.channels.len(),
                    m.source_channels,
                    m.seed.map_or(String::new(), |s| format!(", chosen with seed {s}")),
                    (images * m.per_image() * 4) as f64 / 1048576.0
                );
            }
            if !report.skipped.is_empty() {
                eprintln!(
                    "warning: {} unreadable images skipped",
                    report.skipped.len()
                );
            }
            Ok(())
        }
        Err(EmbedError::Interrupted) => Err(Interrupted(format!(
            "embed: interrupted; {} was not written",
            args.out.display()
        ))
        .into()),
        Err(e) => Err(e).with_context(|| format!("embedding with {}", args.model.display())),
    }
}
