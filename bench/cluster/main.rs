//! Per-stage timing of the `cluster` verb's chain on one embedding matrix, the defectkit side
//! of the scikit-learn comparison (`bench/peers/sklearn_cluster.py`).
//!
//! Reads an N×d little-endian float32 `.npy` file (C order; `bench/cluster/run.sh` writes
//! seeded synthetic ones) and runs the stages of `defectkit cluster`
//! (`crates/defectkit-deploy/src/cluster/analysis.rs`) on all of its rows, timing each with
//! `std::time::Instant`:
//!
//! 1. `standardize`: `Standardizer::fit` + `transform` (f32 in, f64 out);
//! 2. `pca`: `Pca::fit` with min(`--max-components`, N, d) components, the fewest reaching
//!    `--variance` of the variance kept (at least 2), the rows projected onto them;
//! 3. `tsne`: `tsne_2d` of the PCA output (Barnes-Hut, `--theta`, seeded);
//! 4. `dbscan`: `k_distances` (k = `--min-samples`) + `knee` for eps, then `dbscan` on the
//!    t-SNE map (also split into `kdistance_knee` and `dbscan_only`). Where the knee is 0
//!    (points on top of each other in the map), `cluster` skips the space; here eps becomes
//!    the first positive k-distance past the knee (1e-12 if none), so DBSCAN is still timed
//!    (`eps_rule` in the output says which).
//!
//! Unlike `cluster`, which fits the standardizer and the PCA on the fit split's good images,
//! both are fitted on the clustered rows themselves here, as the peer script does.
//! Prints one JSON line: `framework, rows, dims, pca_components, pca_variance, eps,
//! clusters, noise, seconds{standardize, pca, tsne, dbscan, kdistance_knee, dbscan_only},
//! total_s, …` (+ `tsne_distinct_points` and `tsne_max_abs`, untimed checks of the map); `--labels-out FILE` writes the DBSCAN labels, one per line, −1 for noise.
//! A benchmark, not a test: nothing is asserted.
//!
//! ```text
//! cargo run --release --example bench_cluster -- --input emb_d128.npy
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use defectkit::cluster::dbscan::dbscan;
use defectkit::cluster::knee::{k_distances, knee};
use defectkit::cluster::tsne::{tsne_2d, TsneOptions};
use defectkit::stats::pca::{Pca, Standardizer};
use defectkit::store::SplitRecords;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Time standardize + PCA + t-SNE + k-distance knee + DBSCAN on an .npy matrix")]
struct Args {
    /// N×d float32 `.npy` file (little-endian, C order).
    #[arg(long, value_name = "FILE.npy")]
    input: PathBuf,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f64,
    /// t-SNE iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// Barnes-Hut angle.
    #[arg(long, default_value_t = 0.5)]
    theta: f64,
    /// DBSCAN min_samples (also the k of the k-distance curve).
    #[arg(long, default_value_t = 5)]
    min_samples: usize,
    /// Seed of the t-SNE initial embedding.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of the variance the kept PCA components explain.
    #[arg(long, default_value_t = 0.95)]
    variance: f64,
    /// Most PCA components kept.
    #[arg(long, default_value_t = 50)]
    max_components: usize,
    /// Write the DBSCAN labels here, one per line (−1 = noise).
    #[arg(long, value_name = "FILE")]
    labels_out: Option<PathBuf>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// Reads a 2-D little-endian float32 C-order `.npy` file: (rows, cols, row-major values).
fn read_npy_f32(path: &PathBuf) -> Result<(usize, usize, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: &str| format!("{}: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(&format!(
            "want little-endian float32 in C order: {header}"
        )));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(&format!("shape ({shape})"))))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(&format!("want a 2-D array, shape ({shape})")));
    };
    let data = &bytes[start + len..];
    if data.len() != rows * cols * 4 {
        return Err(bad(&format!(
            "{} data bytes for shape ({rows}, {cols})",
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((rows, cols, values))
}

fn main() {
    let args = Args::parse();
    let (n, d, values) = read_npy_f32(&args.input).unwrap_or_else(|e| fail(e));
    // The root package has no direct ndarray dependency: the store's records build the N×d
    // array (`embeddings_array`), and every later array comes out of defectkit's own calls.
    let records = SplitRecords {
        embeddings: values,
        dim: d,
        label: vec![0; n],
        ..Default::default()
    };
    let x = records.embeddings_array();

    let total = Instant::now();

    // 1. Standardize (fitted on the clustered rows themselves).
    let t = Instant::now();
    let standardizer = Standardizer::fit(x.view()).unwrap_or_else(|e| fail(e));
    let z = standardizer.transform(x.view()).unwrap_or_else(|e| fail(e));
    let standardize_s = t.elapsed().as_secs_f64();

    // 2. PCA: fit min(max_components, N, d) axes (at least 2), keep the fewest that reach
    //    the variance share, as analysis.rs does.
    let t = Instant::now();
    let k_max = args.max_components.min(n).min(d).max(2.min(d));
    let pca = Pca::fit(z.view(), k_max).unwrap_or_else(|e| fail(e));
    let mut cumulative = 0.0;
    let mut k = pca.explained_variance_ratio.len();
    for (i, r) in pca.explained_variance_ratio.iter().enumerate() {
        cumulative += r;
        if cumulative >= args.variance - 1e-12 {
            k = i + 1;
            break;
        }
    }
    let k = k.max(2.min(pca.explained_variance_ratio.len()));
    let explained: f64 = pca.explained_variance_ratio[..k].iter().sum();
    let projected = pca.transform(z.view());
    // The first k columns (analysis.rs: `projected.slice(s![.., ..k]).to_owned()`).
    let columns = projected.axes().nth(1).expect("2-D").axis;
    let pca_k = projected.select(columns, &(0..k).collect::<Vec<_>>());
    let pca_s = t.elapsed().as_secs_f64();

    // 3. t-SNE of the PCA output.
    let t = Instant::now();
    let opts = TsneOptions {
        perplexity: args.perplexity,
        iterations: args.iterations,
        theta: args.theta,
        seed: args.seed,
    };
    let map = tsne_2d(pca_k.view(), &opts).unwrap_or_else(|e| fail(e));
    let tsne_s = t.elapsed().as_secs_f64();

    // 4. eps from the k-distance knee, then DBSCAN, on the t-SNE map.
    let t = Instant::now();
    let curve = k_distances(map.view(), args.min_samples).unwrap_or_else(|e| fail(e));
    let (knee_index, knee_eps) = knee(&curve).unwrap_or_else(|| fail("no k-distance knee"));
    // A knee of 0 (more than min_samples points on the same spot of the map) is where
    // `cluster` skips the space; to still time DBSCAN, take the first positive k-distance
    // past the knee (1e-12, only the points on the same spot, when there is none), and say
    // so in the output.
    let eps = if knee_eps > 0.0 {
        knee_eps
    } else {
        curve[knee_index..]
            .iter()
            .copied()
            .find(|v| *v > 0.0)
            .unwrap_or(1e-12)
    };
    let kdistance_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let labels = dbscan(map.view(), eps, args.min_samples).unwrap_or_else(|e| fail(e));
    let dbscan_only_s = t.elapsed().as_secs_f64();

    let total_s = total.elapsed().as_secs_f64();
    // Not timed: how many distinct points the map has (t-SNE should leave none on top of
    // each other).
    let mut spots: Vec<(u64, u64)> = map
        .outer_iter()
        .map(|r| (r[0].to_bits(), r[1].to_bits()))
        .collect();
    spots.sort_unstable();
    spots.dedup();
    let extent = map.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let noise = labels.iter().filter(|l| l.is_none()).count();
    let clusters = labels.iter().flatten().max().map_or(0, |m| m + 1);

    if let Some(path) = &args.labels_out {
        let text: String = labels
            .iter()
            .map(|l| l.map_or("-1".to_string(), |c| c.to_string()) + "\n")
            .collect();
        std::fs::write(path, text).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    }

    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let line = serde_json::json!({
        "framework": "defectkit",
        "version": env!("CARGO_PKG_VERSION"),
        "input": args.input.display().to_string(),
        "rows": n,
        "dims": d,
        "pca_components": k,
        "pca_variance": explained,
        "perplexity": args.perplexity,
        "iterations": args.iterations,
        "theta": args.theta,
        "min_samples": args.min_samples,
        "knee_index": knee_index,
        "knee_eps": knee_eps,
        "eps": eps,
        "eps_rule": if knee_eps > 0.0 { "knee" } else { "knee was 0: first positive k-distance past it (1e-12 if none)" },
        "tsne_distinct_points": spots.len(),
        "tsne_max_abs": extent,
        "clusters": clusters,
        "noise": noise,
        "seconds": {
            "standardize": standardize_s,
            "pca": pca_s,
            "tsne": tsne_s,
            "dbscan": kdistance_s + dbscan_only_s,
            "kdistance_knee": kdistance_s,
            "dbscan_only": dbscan_only_s,
        },
        "total_s": total_s,
        "threads": {
            "cores": cores,
            "rayon": "global pool (all cores): t-SNE neighbour search, k-distances, DBSCAN core counts; faer SVD: faer default parallelism",
            "tsne_optimisation": 1,
        },
    });
    println!("{line}");
}
