//! `defectkit cluster`: DBSCAN on PCA- and t-SNE-reduced embeddings; noise points as
//! candidate anomalies, next to a detector's verdicts.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::cluster::{cluster, ClusterError, ClusterOptions};
use defectkit::config::Loader;

use super::outln;

/// Arguments of `defectkit cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The split to cluster (overrides cluster.split).
    #[arg(long, value_name = "SPLIT")]
    split: Option<String>,
    /// Only these classes.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    classes: Option<Vec<String>>,
    /// A detector.json fitted on the same embeddings: its verdicts beside DBSCAN's.
    #[arg(long, value_name = "detector.json")]
    detector: Option<PathBuf>,
    /// Output folder (default: `<embeddings dir>/cluster`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Skip the PNG plots.
    #[arg(long)]
    no_plots: bool,
    /// The embeddings file (`*.h5`) followed by config overrides (`cluster.dbscan.eps=2.5`).
    #[arg(value_name = "EMBEDDINGS.h5 OVERRIDES")]
    inputs: Vec<String>,
}

/// Runs the analysis; prints the table.
pub fn run(loader: &Loader, args: ClusterArgs) -> Result<()> {
    let (overrides, files): (Vec<String>, Vec<String>) = args
        .inputs
        .iter()
        .cloned()
        .partition(|a| super::detect::is_override(a));
    let [embeddings] = files.as_slice() else {
        bail!(
            "cluster takes one embeddings file ({} given; usage: defectkit cluster EMBEDDINGS.h5 \
             [overrides…])",
            files.len()
        );
    };
    let embeddings = PathBuf::from(embeddings);
    let composed = loader.compose(&overrides)?;
    let mut cfg = loader.typed(&composed)?.cluster;
    if let Some(split) = args.split {
        cfg.split = split;
    }
    cfg.validate()
        .map_err(anyhow::Error::msg)
        .context("invalid cluster config")?;
    let out = args.out.clone().unwrap_or_else(|| {
        embeddings
            .parent()
            .unwrap_or(Path::new("."))
            .join("cluster")
    });
    super::stop_work_on_ctrl_c("stopping after this scope; nothing will be written");
    let report = match cluster(&ClusterOptions {
        embeddings: embeddings.clone(),
        out_dir: out.clone(),
        config: cfg,
        classes: args.classes,
        detector: args.detector,
        plots: !args.no_plots,
    }) {
        Err(ClusterError::Interrupted) => {
            return Err(super::Interrupted(format!(
                "cluster: interrupted; {} is unchanged",
                out.display()
            ))
            .into())
        }
        r => r.with_context(|| format!("clustering {}", embeddings.display()))?,
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    outln!("{}", report.markdown.trim_end());
    outln!(
        "PCA (all classes): {} components, {:.1} % of the variance · wrote {}",
        report.pca_components,
        100.0 * report.pca_variance,
        out.display()
    );
    Ok(())
}
