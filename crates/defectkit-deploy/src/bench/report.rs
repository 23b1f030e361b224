//! The bench's outputs: `<out>.md` (machine facts, tables, ratios, the goals marked
//! met or missed with their margins), `<out>.csv` (one line per model × variant × provider ×
//! batch size) and the charts in `<out>/` (latency bars per batch size, size bars, AUROC per
//! variant). Every file is written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use defectkit_core::plot;

use crate::detect::{csv_field, fmt_opt};
use crate::runtime::ExecutionProvider;

use super::{BenchError, BenchOptions, BenchReport, BenchRow, QualityRow, Variant};

/// INT8 must be at least this many times faster than FP32 (p50, each batch size).
pub const GOAL_SPEEDUP: f64 = 2.5;
/// INT8's mean AUROC may be at most this many points (×100) below FP32's.
pub const GOAL_AUROC_DROP_PT: f64 = 0.5;
/// INT8's file at most this fraction of FP32's.
pub const GOAL_SIZE_RATIO: f64 = 0.3;
/// Our INT8 at least this many times the peer's INT8 speed (peer p50 / our p50).
pub const GOAL_VS_PEER: f64 = 1.0;

/// The machine and runtime a bench ran on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: Option<String>,
    /// `/proc/loadavg`'s 1, 5, 15 minute load when the report was made.
    pub load_average: Option<String>,
    /// The operating system and architecture.
    pub os: String,
    /// The ONNX Runtime library loaded.
    pub ort_library: Option<PathBuf>,
    /// Its version (the `VERSION` file beside it, or the versioned file name).
    pub ort_version: Option<String>,
    /// Intra-op threads asked for (None: ONNX Runtime's default).
    pub threads: Option<usize>,
    /// The execution providers asked for.
    pub eps: Vec<String>,
    /// UTC date and time of the report.
    pub date_utc: String,
    /// The command line.
    pub command: String,
    /// defectkit's version.
    pub defectkit_version: String,
}

impl MachineInfo {
    /// Reads what this machine says about itself.
    pub fn collect(opts: &BenchOptions) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        let ort_library = crate::runtime::loaded_library().map(Path::to_path_buf);
        let ort_version = ort_library.as_deref().and_then(ort_version);
        Self {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            load_average,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            ort_library,
            ort_version,
            threads: opts.threads,
            eps: opts.eps.iter().map(|e| e.to_string()).collect(),
            date_utc: utc_now(),
            command: opts.command.clone(),
            defectkit_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The version of the ONNX Runtime library at `lib`: `VERSION` beside it (what
/// `scripts/setup-ort.sh` writes), else the `libonnxruntime.so.X.Y.Z` the path resolves to.
pub fn ort_version(lib: &Path) -> Option<String> {
    if let Some(v) = lib
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("VERSION")).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        return Some(v);
    }
    let real = std::fs::canonicalize(lib).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    name.split_once(".so.").map(|(_, v)| v.to_string())
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// One of the goals for one model (and provider).
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The model.
    pub model: String,
    /// The execution provider (`-` for provider-independent goals).
    pub ep: String,
    /// What is asked, e.g. `INT8 ≥ 2.5× FP32 at batch 1`.
    pub goal: String,
    /// The measured value.
    pub value: f64,
    /// Whether it holds.
    pub met: bool,
    /// By how much it holds (positive) or misses (negative), in the goal's unit.
    pub margin: f64,
    /// The unit of `value` and `margin` (`×`, `pt`, ``).
    pub unit: String,
}

fn measured<'a>(
    rows: &'a [BenchRow],
    model: &str,
    variant: Variant,
    ep: ExecutionProvider,
) -> Option<&'a BenchRow> {
    rows.iter()
        .find(|r| r.model == model && r.variant == variant && r.ep == ep && r.skipped.is_none())
}

fn quality_of<'a>(q: &'a [QualityRow], model: &str, variant: Variant) -> Option<&'a QualityRow> {
    q.iter().find(|r| r.model == model && r.variant == variant)
}

/// FP32 p50 / `variant` p50 at `batch` (how many times faster).
pub fn speedup(
    rows: &[BenchRow],
    model: &str,
    ep: ExecutionProvider,
    base: Variant,
    variant: Variant,
    batch: usize,
) -> Option<f64> {
    let b = measured(rows, model, base, ep)?.at(batch)?.stats.p50;
    let v = measured(rows, model, variant, ep)?.at(batch)?.stats.p50;
    (v > 0.0).then(|| b / v)
}

fn models_in_order(rows: &[BenchRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.model) {
            out.push(r.model.clone());
        }
    }
    out
}

/// The goals for every model with an int8 variant: speed-up at each batch size and
/// provider, size ratio, AUROC drop, and ours vs the peer's int8.
pub fn goals(rows: &[BenchRow], quality: &[QualityRow], batches: &[usize]) -> Vec<Goal> {
    let mut out = Vec::new();
    let mut eps: Vec<ExecutionProvider> = Vec::new();
    for r in rows {
        if !eps.contains(&r.ep) {
            eps.push(r.ep);
        }
    }
    for model in models_in_order(rows) {
        let file = |v: Variant| rows.iter().find(|r| r.model == model && r.variant == v);
        let Some(int8) = file(Variant::Int8) else {
            continue;
        };
        for &ep in &eps {
            for &b in batches {
                if let Some(s) = speedup(rows, &model, ep, Variant::Fp32, Variant::Int8, b) {
                    out.push(Goal {
                        model: model.clone(),
                        ep: ep.to_string(),
                        goal: format!("INT8 ≥ {GOAL_SPEEDUP}× FP32 speed at batch {b} (p50)"),
                        value: s,
                        met: s >= GOAL_SPEEDUP,
                        margin: s - GOAL_SPEEDUP,
                        unit: "×".into(),
                    });
                }
            }
        }
        if let Some(fp32) = file(Variant::Fp32).filter(|f| f.file_bytes > 0) {
            let ratio = int8.file_bytes as f64 / fp32.file_bytes as f64;
            out.push(Goal {
                model: model.clone(),
                ep: "-".into(),
                goal: format!("INT8 size ≤ {GOAL_SIZE_RATIO}× FP32"),
                value: ratio,
                met: ratio <= GOAL_SIZE_RATIO,
                margin: GOAL_SIZE_RATIO - ratio,
                unit: "×".into(),
            });
        }
        if let (Some(f), Some(i)) = (
            quality_of(quality, &model, Variant::Fp32).and_then(|q| q.auroc),
            quality_of(quality, &model, Variant::Int8).and_then(|q| q.auroc),
        ) {
            let drop = (f - i) * 100.0;
            out.push(Goal {
                model: model.clone(),
                ep: "cpu".into(),
                goal: format!("AUROC drop ≤ {GOAL_AUROC_DROP_PT} pt"),
                value: drop,
                met: drop <= GOAL_AUROC_DROP_PT,
                margin: GOAL_AUROC_DROP_PT - drop,
                unit: "pt".into(),
            });
        }
        for &ep in &eps {
            for &b in batches {
                if let Some(s) = speedup(rows, &model, ep, Variant::Int8Ort, Variant::Int8, b) {
                    out.push(Goal {
                        model: model.clone(),
                        ep: ep.to_string(),
                        goal: format!("ours ≥ {GOAL_VS_PEER}× the peer's INT8 speed at batch {b}"),
                        value: s,
                        met: s >= GOAL_VS_PEER,
                        margin: s - GOAL_VS_PEER,
                        unit: "×".into(),
                    });
                }
            }
        }
    }
    out
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

fn opt3(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// The Markdown report.
pub fn markdown(report: &BenchReport, opts: &BenchOptions) -> String {
    let m = &report.machine;
    let mut s = String::from("# defectkit bench");
    if opts.quantized {
        s += ": FP32 vs INT8";
    }
    s += "\n\n";
    let _ = writeln!(s, "Made {} with `{}`.\n", m.date_utc, m.command);
    s += "## Machine and method\n\n";
    let _ = writeln!(
        s,
        "- CPU: {} · {} logical cores available · load average {} (1/5/15 min, at the end) · {}",
        m.cpu_model.as_deref().unwrap_or("unknown"),
        m.cores,
        m.load_average.as_deref().unwrap_or("n/a"),
        m.os
    );
    let _ = writeln!(
        s,
        "- ONNX Runtime {} from `{}`; intra-op threads: {}; execution providers asked: {}; \
         defectkit {}",
        m.ort_version.as_deref().unwrap_or("(version unknown)"),
        m.ort_library
            .as_deref()
            .map_or("(not loaded)".to_string(), |p| p.display().to_string()),
        m.threads
            .map_or("ONNX Runtime's default (all cores)".to_string(), |t| t
                .to_string()),
        m.eps.join(", "),
        m.defectkit_version
    );
    let t = &opts.timing;
    let _ = writeln!(
        s,
        "- Latency: wall time of one `OnnxModel::run` (input copy, inference, output \
         extraction) on real test images of the data set, decoded and preprocessed with the \
         model's own spec through the shared pipeline and cycled to fill a batch; {} warm-up \
         runs, then at least {} runs and at least {} s per batch size (at most {}). \
         Percentiles interpolate linearly between order statistics, as `numpy.percentile` \
         does by default. img/s = batch / p50.",
        t.warmup, t.min_iterations, t.min_seconds, t.max_iterations
    );
    s += "- Peak RSS: the high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`) \
          during session load + every timed run of that row, minus the resident set just \
          before loading: the memory that variant added. Memory ONNX Runtime kept from \
          earlier rows is not counted again.\n";
    if opts.quality {
        let _ = writeln!(
            s,
            "- Quality (CPU): each variant embeds the data set's train, val and test splits \
             itself; the `{}` detector is refitted on its own train embeddings, thresholded \
             at the {}th percentile of its val good scores (the deployable threshold) and \
             evaluated on test. AUROC and F1 are means over classes. Spearman: rank \
             correlation of the test anomaly scores with the FP32 variant's; embedding \
             max |Δ| and mean cosine against FP32 on the same test images.",
            opts.detector.method.as_str(),
            opts.detector.percentile
        );
    }
    s += "\n";

    if let Some(sel) = &opts.selection {
        s += "## Model selection (`--top`)\n\n";
        let _ = writeln!(
            s,
            "Chosen on validation-side evidence only (the test split was not read): the \
             `{}` detector fitted per class on train good embeddings (`embeddings.h5`) \
             scores every val image; a class's own val images are normal, the other \
             classes' val images stand in as anomalies. Ranked by the mean out-of-class val \
             AUROC, ties broken by the mean ratio median(own) / median(other) (lower = \
             tighter). A proxy for class novelty, not defects: the val split holds no \
             defective images, and the runs' recorded val losses differ per model kind.\n",
            sel.method
        );
        s += "| rank | model | val out-of-class AUROC | val median ratio | val images | picked |\n";
        s += "| ---: | --- | ---: | ---: | ---: | --- |\n";
        for c in &sel.ranked {
            let _ = writeln!(
                s,
                "| {} | `{}` | {:.4} | {:.4} | {} | {} |",
                c.rank,
                c.dir.display(),
                c.val_out_of_class_auroc,
                c.val_median_ratio,
                c.val_images,
                if sel.picked.contains(&c.dir) {
                    "yes"
                } else {
                    "no"
                }
            );
        }
        for (d, why) in &sel.excluded {
            let _ = writeln!(s, "| – | `{}` | excluded: {why} | | | no |", d.display());
        }
        s += "\n";
    }

    s += "## Latency, size, memory\n\n";
    s += "| model | kind | variant | EP | size MB | size ×FP32 | load ms | batch | p50 ms | p95 ms | p99 ms | img/s | speed-up vs FP32 | peak RSS added MB | runs |\n";
    s += "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    let fp32_bytes = |model: &str| {
        report
            .rows
            .iter()
            .find(|r| r.model == model && r.variant == Variant::Fp32)
            .map(|r| r.file_bytes)
    };
    for r in &report.rows {
        let size_ratio = fp32_bytes(&r.model)
            .filter(|&b| b > 0)
            .map(|b| r.file_bytes as f64 / b as f64);
        if let Some(why) = &r.skipped {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | – | – | skipped: {} | | | | | | |",
                r.model,
                r.kind,
                r.variant,
                r.ep,
                mb(r.file_bytes),
                opt3(size_ratio),
                why.replace('|', "/").replace('\n', " ")
            );
            continue;
        }
        for t in &r.timings {
            let sp = speedup(
                &report.rows,
                &r.model,
                r.ep,
                Variant::Fp32,
                r.variant,
                t.batch,
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
                r.model,
                r.kind,
                r.variant,
                r.ep,
                mb(r.file_bytes),
                opt3(size_ratio),
                r.load_ms.unwrap_or(f64::NAN),
                t.batch,
                t.stats.p50,
                t.stats.p95,
                t.stats.p99,
                t.throughput,
                if r.variant == Variant::Fp32 {
                    "1".to_string()
                } else {
                    sp.map_or("–".into(), |v| format!("{v:.2}×"))
                },
                r.peak_rss_bytes.map_or("n/a".into(), mb),
                t.iterations
            );
        }
    }
    s += "\n";

    if !report.quality.is_empty() {
        s += "## Detection quality (CPU, detector refitted per variant)\n\n";
        s += "| model | variant | AUROC | ΔAUROC vs FP32 (pt) | F1 | Spearman vs FP32 | emb max abs Δ vs FP32 | emb mean cos vs FP32 |\n";
        s += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for q in &report.quality {
            let fp = quality_of(&report.quality, &q.model, Variant::Fp32).and_then(|f| f.auroc);
            let delta = match (q.variant, fp, q.auroc) {
                (Variant::Fp32, _, _) => "0".to_string(),
                (_, Some(f), Some(a)) => format!("{:+.2}", (a - f) * 100.0),
                _ => "–".into(),
            };
            let a = q.vs_fp32;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.3} | {} | {} | {} |",
                q.model,
                q.variant,
                fmt_opt(q.auroc),
                delta,
                q.f1,
                a.and_then(|a| a.spearman)
                    .map_or("–".into(), |v| format!("{v:.4}")),
                a.map_or("–".into(), |a| format!("{:.4}", a.max_abs_diff)),
                a.map_or("–".into(), |a| format!("{:.5}", a.mean_cosine)),
            );
        }
        s += "\n";
    }

    let peers: Vec<&BenchRow> = report
        .rows
        .iter()
        .filter(|r| r.variant == Variant::Int8Ort && r.skipped.is_none())
        .collect();
    if !peers.is_empty() {
        s += "## Ours vs the peer (onnxruntime.quantization, same calibration tensors, same session options)\n\n";
        s += "| model | EP | batch | our int8 p50 ms | peer int8 p50 ms | ours / peer speed | AUROC ours | AUROC peer | emb max abs Δ ours vs peer | emb mean cos ours vs peer |\n";
        s += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for p in peers {
            let ours = measured(&report.rows, &p.model, Variant::Int8, p.ep);
            let qo = quality_of(&report.quality, &p.model, Variant::Int8);
            let qp = quality_of(&report.quality, &p.model, Variant::Int8Ort);
            for t in &p.timings {
                let o = ours.and_then(|o| o.at(t.batch)).map(|o| o.stats.p50);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |",
                    p.model,
                    p.ep,
                    t.batch,
                    opt3(o),
                    t.stats.p50,
                    o.map_or("–".into(), |o| format!("{:.2}×", t.stats.p50 / o)),
                    fmt_opt(qo.and_then(|q| q.auroc)),
                    fmt_opt(qp.and_then(|q| q.auroc)),
                    qp.and_then(|q| q.vs_int8)
                        .map_or("–".into(), |a| format!("{:.4}", a.max_abs_diff)),
                    qp.and_then(|q| q.vs_int8)
                        .map_or("–".into(), |a| format!("{:.5}", a.mean_cosine)),
                );
            }
        }
        s += "\n";
    }

    if !report.goals.is_empty() {
        s += "## Goals (issue 10)\n\n| model | EP | goal | measured | status |\n| --- | --- | --- | ---: | --- |\n";
        for g in &report.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3}{} | {} by {:.3}{} |",
                g.model,
                g.ep,
                g.goal,
                g.value,
                if g.unit == "pt" { " pt" } else { &g.unit },
                if g.met { "**met**" } else { "**missed**" },
                g.margin.abs(),
                if g.unit == "pt" { " pt" } else { &g.unit },
            );
        }
        let missed = report.goals.iter().filter(|g| !g.met).count();
        let _ = writeln!(
            s,
            "\n{} of {} goals met.",
            report.goals.len() - missed,
            report.goals.len()
        );
        s += "\n";
    } else if opts.quantized {
        s += "## Goals (issue 10)\n\nNo INT8 variant was measured: no goal could be checked.\n\n";
    }

    if !report.warnings.is_empty() {
        s += "## Warnings\n\n";
        for w in &report.warnings {
            let _ = writeln!(s, "- {w}");
        }
        s += "\n";
    }
    s
}

/// The CSV: one line per model × variant × provider × batch size (a skipped row has one line
/// with an empty batch), quality columns repeated on each line of their variant.
pub fn csv(report: &BenchReport) -> String {
    let mut s = String::from(
        "model,kind,variant,ep,status,reason,file,file_bytes,size_ratio_vs_fp32,load_ms,batch,\
         iterations,timed_seconds,p50_ms,p95_ms,p99_ms,mean_ms,min_ms,max_ms,img_per_s,\
         speedup_vs_fp32,ours_over_peer_speed,peak_rss_added_bytes,auroc,f1,spearman_vs_fp32,\
         emb_max_abs_diff_vs_fp32,emb_mean_cos_vs_fp32\n",
    );
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in &report.rows {
        let fp32 = report
            .rows
            .iter()
            .find(|x| x.model == r.model && x.variant == Variant::Fp32)
            .map(|x| x.file_bytes)
            .filter(|&b| b > 0);
        let q = quality_of(&report.quality, &r.model, r.variant);
        let head = format!(
            "{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.model),
            csv_field(&r.kind),
            r.variant,
            r.ep,
            if r.skipped.is_some() { "skipped" } else { "ok" },
            csv_field(r.skipped.as_deref().unwrap_or("")),
            csv_field(&r.file.display().to_string()),
            r.file_bytes,
            num(fp32.map(|b| r.file_bytes as f64 / b as f64)),
            num(r.load_ms),
        );
        let tail = format!(
            "{},{},{},{},{},{}",
            r.peak_rss_bytes.map_or(String::new(), |b| b.to_string()),
            num(q.and_then(|q| q.auroc)),
            num(q.map(|q| q.f1)),
            num(q.and_then(|q| q.vs_fp32).and_then(|a| a.spearman)),
            num(q.and_then(|q| q.vs_fp32).map(|a| a.max_abs_diff)),
            num(q.and_then(|q| q.vs_fp32).map(|a| a.mean_cosine)),
        );
        if r.timings.is_empty() {
            let _ = writeln!(s, "{head},,,,,,,,,,,,,{tail}");
            continue;
        }
        for t in &r.timings {
            let sp = speedup(
                &report.rows,
                &r.model,
                r.ep,
                Variant::Fp32,
                r.variant,
                t.batch,
            );
            let vs_peer = (r.variant == Variant::Int8)
                .then(|| {
                    speedup(
                        &report.rows,
                        &r.model,
                        r.ep,
                        Variant::Int8Ort,
                        Variant::Int8,
                        t.batch,
                    )
                })
                .flatten();
            let _ = writeln!(
                s,
                "{head},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3},{},{},{tail}",
                t.batch,
                t.iterations,
                t.seconds,
                t.stats.p50,
                t.stats.p95,
                t.stats.p99,
                t.stats.mean,
                t.stats.min,
                t.stats.max,
                t.throughput,
                num(sp),
                num(vs_peer),
            );
        }
    }
    s
}

/// `<out>.md` and `<out>.csv`.
pub fn report_paths(out: &Path) -> (PathBuf, PathBuf) {
    (
        PathBuf::from(format!("{}.md", out.display())),
        PathBuf::from(format!("{}.csv", out.display())),
    )
}

fn bar_label(r: &BenchRow, several_eps: bool) -> String {
    if several_eps {
        format!("{} {} {}", r.model, r.variant, r.ep)
    } else {
        format!("{} {}", r.model, r.variant)
    }
}

fn charts(report: &BenchReport, opts: &BenchOptions) -> Result<Vec<PathBuf>, BenchError> {
    let dir = &opts.out;
    let plot_err = |path: &Path, e: plot::PlotError| BenchError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut files = Vec::new();
    let several_eps = report
        .rows
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.ep.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let width = |n: usize| (220 + 95 * n as u32).clamp(640, 2400);
    for &b in &opts.batches {
        let bars: Vec<(String, f64)> = report
            .rows
            .iter()
            .filter(|r| r.skipped.is_none())
            .filter_map(|r| r.at(b).map(|t| (bar_label(r, several_eps), t.stats.p50)))
            .collect();
        let path = dir.join(format!("latency_b{b}.png"));
        plot::bar_chart(
            &path,
            &format!("Latency p50 at batch {b} (lower is better)"),
            "ms per batch",
            &bars,
            (width(bars.len()), 520),
        )
        .map_err(|e| plot_err(&path, e))?;
        files.push(path);
    }
    let mut sizes: Vec<(String, f64)> = Vec::new();
    for r in &report.rows {
        let label = format!("{} {}", r.model, r.variant);
        if !sizes.iter().any(|(l, _)| *l == label) {
            sizes.push((label, r.file_bytes as f64 / 1e6));
        }
    }
    let path = dir.join("size.png");
    plot::bar_chart(
        &path,
        "Model file size",
        "MB",
        &sizes,
        (width(sizes.len()), 520),
    )
    .map_err(|e| plot_err(&path, e))?;
    files.push(path);
    if !report.quality.is_empty() {
        let bars: Vec<(String, f64)> = report
            .quality
            .iter()
            .map(|q| {
                (
                    format!("{} {}", q.model, q.variant),
                    q.auroc.unwrap_or(f64::NAN),
                )
            })
            .collect();
        let path = dir.join("auroc.png");
        plot::bar_chart(
            &path,
            "Image AUROC (mean over classes), detector refitted per variant",
            "AUROC",
            &bars,
            (width(bars.len()), 520),
        )
        .map_err(|e| plot_err(&path, e))?;
        files.push(path);
    }
    Ok(files)
}

/// Writes `<out>.md`, `<out>.csv` and (with `plots`) the charts; fills `report.markdown`
/// and `report.files`.
pub fn write(report: &mut BenchReport, opts: &BenchOptions) -> Result<(), BenchError> {
    let (md_path, csv_path) = report_paths(&opts.out);
    let mut files = Vec::new();
    if opts.plots {
        files.extend(charts(report, opts)?);
    }
    report.markdown = markdown(report, opts);
    if opts.plots {
        let rel = opts
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        report.markdown += "## Charts\n\n";
        for f in &files {
            if let Some(name) = f.file_name() {
                let _ = writeln!(
                    report.markdown,
                    "![{}]({rel}/{})",
                    name.to_string_lossy(),
                    name.to_string_lossy()
                );
            }
        }
    }
    let write = |path: &Path, text: &str| {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| BenchError::Write {
                path: parent.to_path_buf(),
                reason: e.to_string(),
            })?;
            defectkit_core::fsutil::clear_stale_temps(parent);
        }
        defectkit_core::fsutil::write_atomic(path, text.as_bytes()).map_err(|e| BenchError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    write(&csv_path, &csv(report))?;
    write(&md_path, &report.markdown)?;
    files.push(md_path);
    files.push(csv_path);
    report.files = files;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_a_date() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-12-02 10:00 UTC".len(), "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
