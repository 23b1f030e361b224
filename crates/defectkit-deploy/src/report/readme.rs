//! `--model-readmes DIR`: refreshes each model's `DIR/<kind>/README.md` block between
//! [`BEGIN`] and [`END`] (appended when the markers are missing) with the study's numbers:
//! per-class AUROC (mean over seeds) for every method, parameters, FLOPs and FP32/INT8
//! latency when benched, and which study, data and date produced them.

use std::path::{Path, PathBuf};

use super::aggregate::Aggregates;
use super::load::Study;
use super::markdown::Table;
use super::sections::{f4, model_facts, thousands};
use super::ReportError;

/// The block's first line.
pub const BEGIN: &str = "<!-- study-results:begin -->";
/// The block's last line.
pub const END: &str = "<!-- study-results:end -->";

/// `text` with its study-results block replaced by `block` (appended when absent).
pub fn replace_block(text: &str, block: &str) -> String {
    let block = block.trim_end();
    if let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) {
        if b < e {
            let end = e + END.len();
            return format!("{}{}{}", &text[..b], block, &text[end..]);
        }
    }
    let mut out = text.trim_end().to_string();
    if !out.is_empty() {
        out += "\n\n";
    }
    out += block;
    out += "\n";
    out
}

/// The date of the study: the day its last manifest step started (today when none).
fn study_date(study: &Study) -> String {
    study
        .manifest
        .steps
        .iter()
        .map(|s| s.started.as_str())
        .filter(|s| s.len() >= 10)
        .max()
        .map(|s| s[..10].to_string())
        .unwrap_or_else(today)
}

/// Today's UTC date, `YYYY-MM-DD`.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// p50 latency at the smallest batch of `label`'s `variant` in the bench CSV.
fn latency(study: &Study, label: &str, variant: &str) -> Option<(f64, String)> {
    let bench = study.bench.as_ref()?;
    bench
        .rows
        .iter()
        .filter(|r| {
            r.get("model").map(String::as_str) == Some(label)
                && r.get("variant").map(String::as_str) == Some(variant)
                && r.get("status").map(String::as_str) == Some("ok")
        })
        .filter_map(|r| {
            let b: usize = r.get("batch")?.parse().ok()?;
            let p: f64 = r.get("p50_ms")?.parse().ok()?;
            Some((b, p, r.get("ep").cloned().unwrap_or_default()))
        })
        .min_by_key(|x| x.0)
        .map(|(b, p, ep)| (p, format!("batch {b}, {ep}")))
}

/// The block for `model`.
fn block(study: &Study, agg: &Aggregates, model: &str) -> String {
    let design = &study.record.study;
    let mut s = format!("{BEGIN}\n### Study results (`{}`)\n\n", design.name);
    let seeds: Vec<String> = study
        .finals()
        .iter()
        .filter(|f| f.model == model)
        .map(|f| f.seed.to_string())
        .collect();
    s +=
        &format!(
        "Produced by `defectkit report` from study `{}` (model `{model}`, seeds {}) on {} data \
         (`{}`), {}. Image AUROC on the test split, mean over seeds.\n\n",
        design.name,
        if seeds.is_empty() { "–".into() } else { seeds.join(", ") },
        if study.record.data_kind == "synthetic" {
            "**synthetic**".to_string()
        } else {
            study.record.data_kind.clone()
        },
        study.record.data_root.display(),
        study_date(study)
    );
    let mut header = vec!["method".to_string()];
    header.extend(agg.classes.iter().cloned());
    header.push("mean".into());
    let mut t = Table {
        numeric: (0..header.len()).map(|i| i > 0).collect(),
        header,
        rows: Vec::new(),
    };
    for me in &agg.methods {
        let Some(c) = agg.cell(model, me) else {
            continue;
        };
        let mut row = vec![me.clone()];
        for cl in &agg.classes {
            row.push(f4(c.per_class.get(cl).map(|x| x.mean)));
        }
        row.push(c.auroc.map_or("–".into(), |a| a.show()));
        t.row(row);
    }
    if t.rows.is_empty() {
        s += "No detection results for this model in the study.\n\n";
    } else {
        s += &t.markdown();
        s += "\n";
    }
    let f = model_facts(study, model);
    let mut facts = Vec::new();
    if let Some((p, onnx)) = f.parameters {
        facts.push(format!(
            "parameters {}{}",
            thousands(p),
            if onnx { " (incl. BN statistics)" } else { "" }
        ));
    }
    if let Some(fl) = f.flops {
        facts.push(format!("{:.1} MFLOPs/image", fl as f64 / 1e6));
    }
    if let Some(label) = study
        .finals()
        .iter()
        .find(|x| x.model == model)
        .map(|x| x.label.clone())
    {
        for (v, name) in [("fp32", "FP32"), ("int8", "INT8")] {
            if let Some((p, at)) = latency(study, &label, v) {
                facts.push(format!("{name} p50 {p:.3} ms ({at}, `{label}`)"));
            }
        }
    }
    if !facts.is_empty() {
        s += &format!("{}.\n", facts.join(" · "));
    }
    s += END;
    s += "\n";
    s
}

/// Refreshes `dir/<kind>/README.md` for every model of the study's finals; returns the files
/// written. A kind without a README folder is skipped with a warning.
pub(crate) fn update(
    study: &Study,
    agg: &Aggregates,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut models: Vec<String> = Vec::new();
    for f in study.finals() {
        if !models.contains(&f.model) {
            models.push(f.model.clone());
        }
    }
    let mut written = Vec::new();
    for model in models {
        let Some(kind) = model_facts(study, &model).kind else {
            warnings.push(format!(
                "model {model}: no model.json with its kind, README not updated"
            ));
            continue;
        };
        let folder = dir.join(&kind);
        if !folder.is_dir() {
            warnings.push(format!(
                "{}: no such folder, README of model {model} not updated",
                folder.display()
            ));
            continue;
        }
        let path = folder.join("README.md");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ReportError::Io { path, source }),
        };
        let new = replace_block(&text, &block(study, agg, &model));
        defectkit_core::fsutil::write_atomic(&path, new.as_bytes()).map_err(|source| {
            ReportError::Io {
                path: path.clone(),
                source,
            }
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_replaced_or_appended() {
        let b = format!("{BEGIN}\nnew\n{END}\n");
        let t = format!("# M\n\ntext\n\n{BEGIN}\nold\n{END}\n\ntail\n");
        let r = replace_block(&t, &b);
        assert!(r.contains("new") && !r.contains("old") && r.ends_with("tail\n"));
        assert_eq!(replace_block(&r, &b), r, "idempotent");
        let r = replace_block("# M\n", &b);
        assert_eq!(r, format!("# M\n\n{BEGIN}\nnew\n{END}\n"));
    }

    #[test]
    fn today_is_a_date() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
