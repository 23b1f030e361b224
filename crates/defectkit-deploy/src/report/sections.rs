//! The report's sections, in order: Abstract, Hypothesis, Data, Methods, Experimental design,
//! Results, Discussion, Threats to validity, Conclusion, Reproduce. Every number comes from
//! the loaded [`Study`] and its [`Aggregates`]; missing parts and steps that did not finish
//! are said in the section they affect.

use std::collections::BTreeMap;
use std::path::PathBuf;

use defectkit_core::config::schema::ModelConfig;
use defectkit_core::config::Config;
use defectkit_core::study::StepStatus;

use super::aggregate::{paired, Aggregates, Paired};
use super::load::{RunInfo, Study};
use super::markdown::{Block, Doc, Table};
use crate::stats::paired::PairedDifference;

/// The section headings, in order (tests check them).
pub const SECTIONS: [&str; 10] = [
    "Abstract",
    "Hypothesis",
    "Data",
    "Methods",
    "Experimental design",
    "Results",
    "Discussion",
    "Threats to validity",
    "Conclusion",
    "Reproduce",
];

/// Figures the report drew itself.
#[derive(Debug, Default)]
pub(crate) struct Drawn {
    /// `curves_<model>.png` by model.
    pub curves: BTreeMap<String, PathBuf>,
    /// The teacher's curves.
    pub teacher_curves: Option<PathBuf>,
    /// The AUROC bars.
    pub auroc: Option<PathBuf>,
}

/// What the sections produce besides the document.
#[derive(Debug, Default)]
pub(crate) struct Built {
    /// The document.
    pub doc: Doc,
    /// The main table (Markdown).
    pub main_table: String,
    /// The findings (the discussion's sentences).
    pub findings: Vec<String>,
}

/// Formats an optional number with 4 decimals, `–` when absent.
pub(crate) fn f4(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.4}"))
}

fn signed(v: f64) -> String {
    format!("{v:+.4}")
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(s: f64) -> String {
    let t = s.max(0.0).round() as u64;
    let (h, m, sec) = (t / 3600, (t % 3600) / 60, t % 60);
    if h > 0 {
        format!("{h} h {m} min {sec} s")
    } else if m > 0 {
        format!("{m} min {sec} s")
    } else {
        format!("{s:.1} s")
    }
}

fn status_str(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Running => "running (did not finish)",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
        StepStatus::Interrupted => "interrupted",
    }
}

/// Facts of one model used by the Methods table and the model READMEs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelFacts {
    /// Its kind (`cnn_scratch`, …).
    pub kind: Option<String>,
    /// Parameters, and whether they were counted from the ONNX initializers.
    pub parameters: Option<(u64, bool)>,
    /// FLOPs per image.
    pub flops: Option<u64>,
    /// Input shape `[c, h, w]`.
    pub input: Option<[usize; 3]>,
    /// Embedding dimension.
    pub embedding_dim: Option<usize>,
}

/// The selected run of `model` at the first seed (for the teacher: B's).
pub(crate) fn selected_run<'s>(study: &'s Study, model: &str) -> Option<&'s RunInfo> {
    let seed0 = *study.record.study.seeds.first()?;
    let runs_of = if model == "teacher" {
        study.record.study.teacher_of.as_deref()?
    } else {
        model
    };
    if let Some(f) = study
        .finals()
        .iter()
        .find(|f| f.model == model && f.seed == seed0)
    {
        if let Some(r) = study.run(&f.run_dir) {
            return Some(r);
        }
    }
    let sel = study
        .selection
        .as_ref()?
        .models
        .iter()
        .find(|m| m.model == runs_of)?;
    study
        .runs
        .get(runs_of)?
        .iter()
        .find(|r| r.setting == sel.selected && r.seed == seed0)
}

/// The facts of `model` (its first final's export and selected run).
pub(crate) fn model_facts(study: &Study, model: &str) -> ModelFacts {
    let mut facts = ModelFacts::default();
    for f in study.finals().iter().filter(|f| f.model == model) {
        if let Some(e) = study.exports.get(&f.label) {
            if let Some(m) = &e.metadata {
                facts
                    .kind
                    .get_or_insert_with(|| m.kind.as_str().to_string());
                facts.input.get_or_insert(m.input_shape);
                facts.embedding_dim.get_or_insert(m.embedding_dim);
            }
            if let Some(p) = e.onnx_parameters {
                facts.parameters.get_or_insert((p, true));
            }
        }
    }
    if model != "teacher" {
        if let Some(s) = selected_run(study, model).and_then(|r| r.summary.as_ref()) {
            facts.parameters = Some((s.parameters as u64, false));
            facts.flops = Some(s.flops_per_image);
            facts.kind.get_or_insert_with(|| s.model.clone());
        }
    }
    facts
}

/// The model's title from the design.
fn title(study: &Study, model: &str) -> String {
    if model == "teacher" {
        return match &study.record.study.teacher_of {
            Some(b) => format!("Teacher: the ResNet-18 teacher of model {b}"),
            None => "Teacher".into(),
        };
    }
    study
        .record
        .study
        .models
        .iter()
        .find(|m| m.name == model)
        .map(|m| m.title.clone())
        .unwrap_or_else(|| model.to_string())
}

/// The steps of `stages` whose status is not done, as sentences.
fn not_done(study: &Study, stages: &[&str]) -> Vec<String> {
    study
        .manifest
        .steps
        .iter()
        .filter(|s| stages.contains(&s.stage.as_str()) && s.status != StepStatus::Done)
        .map(|s| {
            format!(
                "Step `{}` is **{}**{}: its outputs are missing or incomplete here.",
                s.id,
                status_str(s.status),
                s.error
                    .as_ref()
                    .map(|e| format!(" ({})", e.lines().next().unwrap_or("").trim()))
                    .unwrap_or_default()
            )
        })
        .collect()
}

fn say_not_done(doc: &mut Doc, study: &Study, stages: &[&str]) {
    let nd = not_done(study, stages);
    if !nd.is_empty() {
        doc.list(nd);
    }
}

/// The distilled model (B) and the scratch model (A) of the design.
fn roles(study: &Study, agg: &Aggregates) -> (Option<String>, Option<String>) {
    let kind_of = |m: &str| {
        model_facts(study, m)
            .kind
            .or_else(|| agg.kinds.get(m).cloned())
    };
    let names: Vec<String> = study
        .record
        .study
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    let b = study.record.study.teacher_of.clone().or_else(|| {
        names
            .iter()
            .find(|m| kind_of(m).as_deref() == Some("cnn_distilled"))
            .cloned()
    });
    let a = names
        .iter()
        .find(|m| kind_of(m).as_deref() == Some("cnn_scratch"))
        .cloned();
    (b, a)
}

fn config_of<'s>(study: &'s Study, model: &str) -> Option<(&'s Config, &'s RunInfo)> {
    let r = selected_run(study, model)?;
    r.config.as_ref().map(|c| (c, r))
}

/// The verdict of a paired difference's CI against 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The CI lies above 0.
    Better,
    /// The CI lies below 0.
    Worse,
    /// The CI includes 0.
    NotDistinguishable,
}

pub(crate) fn verdict(d: &PairedDifference) -> Verdict {
    if d.ci.0 > 0.0 {
        Verdict::Better
    } else if d.ci.1 < 0.0 {
        Verdict::Worse
    } else {
        Verdict::NotDistinguishable
    }
}

fn ci_str(d: &PairedDifference) -> String {
    format!(
        "{} (95 % CI [{}, {}], n = {}, p = {})",
        signed(d.mean),
        signed(d.ci.0),
        signed(d.ci.1),
        d.n,
        if d.p_value.is_finite() {
            format!("{:.3}", d.p_value)
        } else {
            "n/a".into()
        }
    )
}

/// Builds the whole report.
pub(crate) fn build(study: &Study, agg: &Aggregates, drawn: &Drawn) -> Built {
    let mut doc = Doc::default();
    let rec = &study.record;
    let design = &rec.study;
    let synthetic = rec.data_kind == "synthetic";
    let syn = if synthetic { " (synthetic data)" } else { "" };
    let (b, a) = roles(study, agg);
    let has_teacher = agg.models.iter().any(|m| m == "teacher");
    let pairs_teacher: Vec<Paired> = match &b {
        Some(b) if has_teacher => paired(agg, b, "teacher"),
        _ => Vec::new(),
    };
    let pairs_a: Vec<Paired> = match (&b, &a) {
        (Some(b), Some(a)) => paired(agg, b, a),
        _ => Vec::new(),
    };
    let b_best = b.as_ref().and_then(|b| agg.best_method.get(b)).cloned();
    let pick = |pairs: &[Paired]| -> Option<Paired> {
        let m = b_best.as_ref()?;
        pairs.iter().find(|p| &p.method == m).cloned()
    };
    let key_teacher = pick(&pairs_teacher);
    let key_a = pick(&pairs_a);
    let best_overall = agg
        .models
        .iter()
        .flat_map(|m| {
            agg.methods.iter().filter_map(move |me| {
                agg.cell(m, me)
                    .and_then(|c| c.auroc)
                    .map(|a| (m.clone(), me.clone(), a))
            })
        })
        .fold(
            None::<(String, String, super::aggregate::MeanSd)>,
            |acc, x| match &acc {
                Some(best) if best.2.mean >= x.2.mean => acc,
                _ => Some(x),
            },
        );
    let data_words = if synthetic {
        format!(
            "the **synthetic** MVTec-like image set generated by `defectkit data synth` (not real \
             industrial images), {} classes",
            rec.classes.len()
        )
    } else {
        format!(
            "real images in the MVTec AD layout (`data.kind = {}`, root `{}`), {} classes",
            rec.data_kind,
            rec.data_root.display(),
            rec.classes.len()
        )
    };

    doc.h(1, format!("Study `{}`: report", design.name));
    doc.p(format!(
        "Written by `defectkit report` from the study dir `{}` ({}). Every number below is read \
         from the study's files.",
        study.dir.display(),
        rec.tool_version
    ));

    // ---- Abstract
    let mut findings = Vec::new();
    doc.h(2, "Abstract");
    doc.p(design.description.trim().to_string());
    let mut abs = vec![format!(
        "Data: {data_words}. Models: {}. Seeds: {}. Detectors: {}.",
        agg_models_or_design(study, agg),
        join_u64(&design.seeds),
        design.detectors.join(", ")
    )];
    if let Some((m, me, ms)) = &best_overall {
        abs.push(format!(
            "The highest mean image AUROC is model {m} with `{me}`: {} over {} seed(s){syn}.",
            ms.show(),
            ms.n
        ));
    } else {
        abs.push("No detection results were found (compare/comparison.json is missing).".into());
    }
    if let (Some(b), Some(p)) = (&b, &key_teacher) {
        if let Ok(d) = &p.over_classes {
            abs.push(format!(
                "{b} − teacher with `{}` (paired over classes): {}{syn}.",
                p.method,
                ci_str(d)
            ));
        }
    }
    if let (Some(b), Some(a), Some(p)) = (&b, &a, &key_a) {
        if let Ok(d) = &p.over_classes {
            abs.push(format!(
                "{b} − {a} with `{}` (paired over classes): {}{syn}.",
                p.method,
                ci_str(d)
            ));
        }
    }
    doc.p(abs.join(" "));

    // ---- Hypothesis
    doc.h(2, "Hypothesis");
    let mut hyp = Vec::new();
    match (&b, has_teacher || design.teacher_of.is_some()) {
        (Some(b), true) => hyp.push(format!(
            "**H1**: model {b} (distilled) detects anomalies as well as its teacher: the 95 % \
             confidence interval of the paired difference {b} − teacher in image AUROC includes \
             0 or lies above it."
        )),
        _ => hyp
            .push("The study has no teacher, so H1 (as good as the teacher) is not tested.".into()),
    }
    match (&b, &a) {
        (Some(b), Some(a)) => hyp.push(format!(
            "**H2**: model {b} detects anomalies better than model {a}, the same network trained \
             from scratch: the 95 % CI of {b} − {a} lies above 0."
        )),
        _ => hyp.push("The study lacks a distilled/scratch pair, so H2 is not tested.".into()),
    }
    for m in &design.models {
        if Some(&m.name) != b.as_ref() && Some(&m.name) != a.as_ref() {
            hyp.push(format!(
                "Model {} ({}) is compared descriptively.",
                m.name, m.title
            ));
        }
    }
    doc.list(hyp);

    // ---- Data
    doc.h(2, "Data");
    doc.p(format!(
        "The study ran on {data_words}: {}. Data root: `{}`.",
        rec.classes.join(", "),
        rec.data_root.display()
    ));
    if let Some((c, r)) = config_of(
        study,
        design.models.first().map(|m| m.name.as_str()).unwrap_or(""),
    ) {
        doc.p(format!(
            "Images are resized to {} px{}; the validation split is {:.0} % of train/good \
             (split seed {}), read from `{}`.",
            c.data.preprocess.resize,
            c.data
                .preprocess
                .center_crop
                .map(|x| format!(", centre-cropped to {x} px"))
                .unwrap_or_default(),
            c.data.val_fraction * 100.0,
            c.data.split_seed,
            r.rel.join(".hydra/config.yaml").display()
        ));
    }
    match &study.counts {
        Some((counts, file)) => {
            let mut t = Table::new(&["split", "images", "good", "defective"], &[1, 2, 3]);
            for (split, classes) in counts {
                let g: usize = classes.values().map(|c| c.0).sum();
                let d: usize = classes.values().map(|c| c.1).sum();
                t.row(vec![
                    split.clone(),
                    (g + d).to_string(),
                    g.to_string(),
                    d.to_string(),
                ]);
            }
            doc.p(format!(
                "Image counts per split, read from `{}`:",
                study.rel(file).display()
            ));
            doc.table(t);
            let splits: Vec<&String> = counts.keys().collect();
            let mut header = vec!["class".to_string()];
            for s in &splits {
                header.push(format!("{s} good"));
                header.push(format!("{s} defective"));
            }
            let mut t = Table {
                numeric: (0..header.len()).map(|i| i > 0).collect(),
                header,
                rows: Vec::new(),
            };
            let mut classes: Vec<&String> = counts.values().flat_map(|c| c.keys()).collect();
            classes.sort();
            classes.dedup();
            for c in classes {
                let mut row = vec![c.clone()];
                for s in &splits {
                    let (g, d) = counts[*s].get(c).copied().unwrap_or((0, 0));
                    row.push(g.to_string());
                    row.push(d.to_string());
                }
                t.row(row);
            }
            doc.table(t);
        }
        None => doc.p(
            "Image counts are not available: no final model's `embeddings.h5` could be read."
                .to_string(),
        ),
    }
    say_not_done(&mut doc, study, &["data", "embed"]);

    // ---- Methods
    doc.h(2, "Methods");
    doc.h(3, "Architectures");
    let mut t = Table::new(
        &[
            "model",
            "what",
            "kind",
            "parameters",
            "MFLOPs / image",
            "input",
            "embedding",
        ],
        &[3, 4, 6],
    );
    let mut method_models: Vec<String> = design.models.iter().map(|m| m.name.clone()).collect();
    if design.teacher_of.is_some() || has_teacher {
        method_models.push("teacher".into());
    }
    let mut bn_note = false;
    for m in &method_models {
        let f = model_facts(study, m);
        t.row(vec![
            m.clone(),
            title(study, m),
            f.kind.clone().unwrap_or_else(|| "–".into()),
            f.parameters.map_or("–".into(), |(p, onnx)| {
                bn_note |= onnx;
                format!("{}{}", thousands(p), if onnx { " †" } else { "" })
            }),
            f.flops
                .map_or("–".into(), |x| format!("{:.1}", x as f64 / 1e6)),
            f.input
                .map_or("–".into(), |s| format!("{}×{}×{}", s[0], s[1], s[2])),
            f.embedding_dim.map_or("–".into(), |d| d.to_string()),
        ]);
    }
    doc.table(t);
    doc.p(format!(
        "Parameters and FLOPs (multiply-accumulates × 2 per image at the training input size) \
         are the selected first-seed run's `summary.json`.{}",
        if bn_note {
            " † counted from the exported `model.onnx` initializers: parameters incl. BN \
             statistics (running means and variances), as its training summary does not hold them."
        } else {
            ""
        }
    ));
    if let Some(b) = &b {
        doc.h(3, "Distillation");
        match config_of(study, b) {
            Some((c, r)) => match &c.model {
                ModelConfig::CnnDistilled(d) => {
                    doc.p(format!(
                        "Model {b} is trained with `loss = α·T²·KL(softmax(teacher/T) ‖ \
                         softmax(student/T)) + (1 − α)·CE + β·MSE(conv3_x features)` with \
                         α = {}, T = {}, β = {} (selected setting, `{}`). Teacher: {} {}, {} \
                         epochs of teacher training.",
                        d.distill.alpha,
                        d.distill.temperature,
                        d.distill.beta,
                        r.rel.join(".hydra/config.yaml").display(),
                        d.teacher.arch,
                        match &d.teacher.weights {
                            Some(w) => format!("initialised from `{}` and fine-tuned", w.display()),
                            None => "trained here from scratch (`model.teacher.weights` is null: \
                                     not ImageNet-pretrained)"
                                .to_string(),
                        },
                        d.teacher.train_epochs
                    ));
                }
                other => doc.p(format!(
                    "Model {b}'s run config is not a distilled model ({}).",
                    other.kind().as_str()
                )),
            },
            None => doc.p(format!(
                "Model {b}'s selected run config (`.hydra/config.yaml`) is missing: the \
                 distillation loss `α·T²·KL(teacher/T ‖ student/T) + (1 − α)·CE + \
                 β·MSE(conv3_x features)` is used with unknown values."
            )),
        }
    }
    for m in &design.models {
        if let Some((c, r)) = config_of(study, &m.name) {
            if let ModelConfig::UnetAe(u) = &c.model {
                doc.h(3, format!("U-Net autoencoder (model {})", m.name));
                doc.p(format!(
                    "Encoder of depth {} (two conv3×3-BN-ReLU and a 2×2 max-pool per level, \
                     base width {}), a linear latent z of {} dimensions (the embedding), a \
                     decoder of ×2 resize + conv; skip connections {}. Loss: MSE of the \
                     reconstruction{} (`{}`).",
                    u.depth,
                    u.base_width,
                    u.latent_dim,
                    if u.skip_connections { "on" } else { "off" },
                    if u.ssim_weight > 0.0 {
                        format!(" + {}·(1 − SSIM)", u.ssim_weight)
                    } else {
                        String::new()
                    },
                    r.rel.join(".hydra/config.yaml").display()
                ));
            }
        }
    }
    if let Some((c, r)) = design
        .models
        .first()
        .and_then(|m| config_of(study, &m.name))
    {
        let t = &c.trainer;
        doc.h(3, "Training");
        doc.p(format!(
            "Optimizer {:?}, learning rate {} (swept where the design says so), weight decay {}, \
             batch {}, at most {} epochs; early stopping on `{}` ({:?}, patience {}). From `{}`.",
            t.optimizer,
            t.lr,
            t.weight_decay,
            t.batch_size,
            t.max_epochs,
            t.early_stopping.monitor,
            t.early_stopping.mode,
            t.early_stopping.patience,
            r.rel.join(".hydra/config.yaml").display()
        ));
    }
    doc.h(3, "Detectors");
    let mut dl = Vec::new();
    for d in &design.detectors {
        dl.push(format!("`{d}`: {}", detector_line(d)));
    }
    doc.list(dl);
    doc.h(3, "Thresholds");
    let detector_cfg = design.models.iter().find_map(|m| config_of(study, &m.name));
    let compare_overrides: Vec<String> = study
        .manifest
        .step("compare")
        .map(|s| {
            s.command
                .iter()
                .filter(|a| a.starts_with("detector.") || a.starts_with("detector="))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    match detector_cfg {
        Some((c, r)) => doc.p(format!(
            "Each detector is fitted per class on the `{}` split's good embeddings; its \
             deployable threshold is the {}th percentile of the `{}` split's good scores \
             (detector config of `{}`, composed with the same study overrides as the compare \
             step{}). Test labels set no threshold; the F1-max oracle is never used for a \
             decision.",
            c.detector.fit_split,
            c.detector.percentile,
            c.detector.threshold_split,
            r.rel.join(".hydra/config.yaml").display(),
            if compare_overrides.is_empty() {
                String::new()
            } else {
                format!(
                    "; the compare step also set `{}`",
                    compare_overrides.join(" ")
                )
            }
        )),
        None => doc.p(
            "No run config could be read; by the default detector config (`conf/detector/`) \
             the threshold is the 95th percentile of the val split's good scores, the detector \
             being fitted on train good."
                .to_string(),
        ),
    }

    // ---- Experimental design
    doc.h(2, "Experimental design");
    doc.p(format!(
        "Each model's sweep runs at the first seed ({}); the selection rule is **the best \
         setting by its validation metric, never a test metric**; the chosen setting is then \
         trained with every seed ({}). Settings are the cartesian product of the sweep values.",
        design.seeds.first().map_or("–".into(), |s| s.to_string()),
        join_u64(&design.seeds)
    ));
    match &study.selection {
        Some(sel) => {
            for ms in &sel.models {
                doc.h(
                    3,
                    format!("Model {}: {}", ms.model, title(study, &ms.model)),
                );
                let metric = format!("{} ({:?})", ms.metric, ms.mode).to_lowercase();
                let mut t = Table::new(
                    &[
                        "setting",
                        "overrides",
                        &metric,
                        "best epoch",
                        "epochs run",
                        "early stopped",
                        "selected",
                    ],
                    &[0, 2, 3, 4],
                );
                for s in &ms.settings {
                    t.row(vec![
                        s.index.to_string(),
                        format!("`{}`", s.overrides.join(" ")),
                        f4(s.value),
                        s.best_epoch.map_or("–".into(), |e| (e + 1).to_string()),
                        s.epochs_run.to_string(),
                        if s.early_stopped { "yes" } else { "no" }.into(),
                        if s.index == ms.selected {
                            "**★ selected**"
                        } else {
                            ""
                        }
                        .into(),
                    ]);
                }
                doc.table(t);
            }
            doc.p("Epochs are counted from 1.".to_string());
        }
        None => doc.p(
            "`selection.json` is missing: the sweep tables and the selection are not available."
                .to_string(),
        ),
    }
    say_not_done(&mut doc, study, &["sweep", "select", "seeds"]);

    // ---- Results
    doc.h(2, "Results");
    doc.h(3, "Training and validation curves");
    for m in &design.models {
        match drawn.curves.get(&m.name) {
            Some(p) => doc.figure(
                p.clone(),
                format!(
                    "Model {}: train/loss and val/loss per epoch for every setting (first seed; * = selected)",
                    m.name
                ),
            ),
            None => doc.p(format!("Model {}: no `metrics.jsonl` was found.", m.name)),
        }
    }
    if design.teacher_of.is_some() {
        match &drawn.teacher_curves {
            Some(p) => doc.figure(
                p.clone(),
                "The teacher's own train/loss and val/loss per epoch (trained inside the selected run)",
            ),
            None => doc.p(
                "The teacher's own curves are not in the run dir: it was reused from the teacher \
                 cache (trained by an earlier run), so its metrics.jsonl is absent."
                    .to_string(),
            ),
        }
    }
    doc.h(3, "Overfitting analysis");
    let mut t = Table::new(
        &[
            "run",
            "best epoch",
            "epochs run",
            "early stopped",
            "train loss @best",
            "val loss @best",
            "gap @best",
            "train loss @last",
            "val loss @last",
            "gap @last",
            "val last − best",
        ],
        &[1, 2, 4, 5, 6, 7, 8, 9, 10],
    );
    let (mut n_runs, mut n_early, mut n_worse) = (0, 0, 0);
    for runs in study.runs.values() {
        for r in runs {
            let train = super::figures::per_epoch(&r.epochs, "train/loss");
            let val = super::figures::per_epoch(&r.epochs, "val/loss");
            let best = r.summary.as_ref().and_then(|s| s.best_epoch);
            let at =
                |v: &[(f64, f64)], e: usize| v.iter().find(|p| p.0 as usize == e + 1).map(|p| p.1);
            let last = val.last().map(|p| p.0 as usize - 1);
            let (tb, vb) = best.map_or((None, None), |e| (at(&train, e), at(&val, e)));
            let (tl, vl) = last.map_or((None, None), |e| (at(&train, e), at(&val, e)));
            let gap = |t: Option<f64>, v: Option<f64>| t.zip(v).map(|(t, v)| v - t);
            n_runs += 1;
            if r.summary.as_ref().is_some_and(|s| s.early_stopped) {
                n_early += 1;
            }
            if let (Some(vl), Some(vb)) = (vl, vb) {
                if vl > vb {
                    n_worse += 1;
                }
            }
            t.row(vec![
                format!("`{}`", r.rel.display()),
                best.map_or("–".into(), |e| (e + 1).to_string()),
                r.summary
                    .as_ref()
                    .map_or("–".into(), |s| s.epochs_run.to_string()),
                r.summary.as_ref().map_or("–".into(), |s| {
                    if s.early_stopped { "yes" } else { "no" }.into()
                }),
                f4(tb),
                f4(vb),
                f4(gap(tb, vb)),
                f4(tl),
                f4(vl),
                f4(gap(tl, vl)),
                f4(vl.zip(vb).map(|(l, b)| l - b)),
            ]);
        }
    }
    if n_runs > 0 {
        doc.table(t);
        doc.p(format!(
            "Gap = val loss − train loss at that epoch (positive: the model fits training data \
             better than held-out data). {n_early} of {n_runs} runs stopped early; in {n_worse} \
             the validation loss at the last epoch is above its best (the best checkpoint is the \
             one exported)."
        ));
    } else {
        doc.p("No training runs were found under `runs/`.".to_string());
    }
    let unets: Vec<&RunInfo> = study
        .finals()
        .iter()
        .filter(|f| model_facts(study, &f.model).kind.as_deref() == Some("unet_ae"))
        .filter_map(|f| study.run(&f.run_dir))
        .collect();
    if !unets.is_empty()
        || design
            .models
            .iter()
            .any(|m| model_facts(study, &m.name).kind.as_deref() == Some("unet_ae"))
    {
        doc.h(3, "Reconstruction grids");
        let mut any = false;
        for r in &unets {
            if let Some(p) = &r.recon_grid {
                any = true;
                doc.figure(
                    p.clone(),
                    format!(
                        "`{}`: input, reconstruction and squared error of a good and a defective image per class",
                        r.rel.display()
                    ),
                );
            }
        }
        if !any {
            doc.p("No `reconstructions.png` was found in the U-Net runs.".to_string());
        }
    }

    doc.h(3, "Detection comparison");
    let mut main_table = String::new();
    if agg.cells.is_empty() {
        doc.p("`compare/comparison.json` is missing: there are no detection results.".to_string());
    } else {
        let mut t = Table::new(
            &[
                "model",
                "method",
                "seeds",
                "mean image AUROC",
                "pixel AUROC",
                "AUPRO",
            ],
            &[2, 3, 4, 5],
        );
        for m in &agg.models {
            for me in &agg.methods {
                let Some(c) = agg.cell(m, me) else { continue };
                let best = agg.best_method.get(m) == Some(me);
                t.row(vec![
                    m.clone(),
                    if best {
                        format!("**{me}**")
                    } else {
                        me.clone()
                    },
                    c.auroc.map_or("0".into(), |a| a.n.to_string()),
                    c.auroc.map_or("–".into(), |a| a.show()),
                    c.pixel.map_or("–".into(), |a| a.show()),
                    c.aupro.map_or("–".into(), |a| a.show()),
                ]);
            }
        }
        main_table = t.markdown();
        doc.p(format!(
            "Test split{syn}. Mean ± sample sd over seeds of the class-mean image AUROC; pixel \
             AUROC and AUPRO for the patch methods (PaDiM, PatchCore). Each model's best method \
             is in bold."
        ));
        doc.table(t);
        if let Some(p) = &drawn.auroc {
            doc.figure(
                p.clone(),
                "Mean image AUROC, mean over seeds, per model and method",
            );
        }
        if let Some(p) = &study.comparison_png {
            doc.figure(
                p.clone(),
                "compare/comparison.png: every model × seed × method",
            );
        }
        doc.h(3, "Per-class AUROC (best method of each model)");
        let cols: Vec<(String, String)> = agg
            .models
            .iter()
            .filter_map(|m| agg.best_method.get(m).map(|me| (m.clone(), me.clone())))
            .collect();
        let mut header = vec!["class".to_string()];
        header.extend(cols.iter().map(|(m, me)| format!("{m} ({me})")));
        let mut t = Table {
            numeric: (0..header.len()).map(|i| i > 0).collect(),
            header,
            rows: Vec::new(),
        };
        for c in &agg.classes {
            let mut row = vec![c.clone()];
            for (m, me) in &cols {
                row.push(f4(agg
                    .cell(m, me)
                    .and_then(|x| x.per_class.get(c))
                    .map(|x| x.mean)));
            }
            t.row(row);
        }
        doc.p(format!("Image AUROC per class, mean over seeds{syn}."));
        doc.table(t);
        doc.h(3, "Paired comparisons");
        if pairs_teacher.is_empty() && pairs_a.is_empty() {
            doc.p("No paired comparison is possible: the distilled model, the teacher or the scratch model has no results.".to_string());
        } else {
            doc.p(
                "Differences are left − right in image AUROC with a 95 % Student-t confidence \
                 interval and the paired t-test's two-sided p. **Over classes**: the \
                 seed-averaged AUROC of each class is one pair (n = classes). **Over seeds**: \
                 the class-mean AUROC of each seed is one pair (n = seeds)."
                    .to_string(),
            );
            let mut t = Table::new(
                &[
                    "comparison",
                    "method",
                    "paired over",
                    "n",
                    "mean difference",
                    "sd",
                    "95 % CI",
                    "p",
                ],
                &[3, 4, 5, 7],
            );
            for p in pairs_teacher.iter().chain(&pairs_a) {
                for (over, d) in [("classes", &p.over_classes), ("seeds", &p.over_seeds)] {
                    let name = format!("{} vs {}", p.left, p.right);
                    match d {
                        Ok(d) => t.row(vec![
                            name,
                            p.method.clone(),
                            over.into(),
                            d.n.to_string(),
                            signed(d.mean),
                            format!("{:.4}", d.sd),
                            format!("[{}, {}]", signed(d.ci.0), signed(d.ci.1)),
                            if d.p_value.is_finite() {
                                format!("{:.4}", d.p_value)
                            } else {
                                "n/a".into()
                            },
                        ]),
                        Err(e) => t.row(vec![
                            name,
                            p.method.clone(),
                            over.into(),
                            "–".into(),
                            format!("not computed: {e}"),
                            String::new(),
                            String::new(),
                            String::new(),
                        ]),
                    }
                }
            }
            doc.table(t);
        }
    }
    say_not_done(&mut doc, study, &["export", "embed", "compare"]);

    doc.h(3, "FP32 vs INT8");
    match &study.bench {
        None => doc.p(
            "No benchmark was run (`bench/quantized.csv` is missing): FP32 vs INT8 latency, size \
             and quality are not available."
                .to_string(),
        ),
        Some(bench) => {
            if let Some(sel) = &bench.selection_md {
                doc.p(
                    "Which models were quantized (`bench --top`), from `bench/quantized.md`:"
                        .to_string(),
                );
                for b in md_blocks(sel) {
                    doc.blocks.push(b);
                }
            }
            let mut t = Table::new(
                &[
                    "model",
                    "variant",
                    "EP",
                    "status",
                    "size MB",
                    "size ×FP32",
                    "batch",
                    "p50 ms",
                    "p95 ms",
                    "img/s",
                    "speed-up vs FP32",
                    "AUROC",
                    "F1",
                    "Spearman vs FP32",
                ],
                &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            );
            let g = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
            let num = |r: &BTreeMap<String, String>, k: &str, prec: usize| {
                r.get(k)
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or("–".into(), |v| format!("{v:.prec$}"))
            };
            for r in &bench.rows {
                t.row(vec![
                    g(r, "model"),
                    g(r, "variant"),
                    g(r, "ep"),
                    if g(r, "status") == "skipped" {
                        format!("skipped: {}", g(r, "reason"))
                    } else {
                        g(r, "status")
                    },
                    r.get("file_bytes")
                        .and_then(|v| v.parse::<f64>().ok())
                        .map_or("–".into(), |b| format!("{:.3}", b / 1e6)),
                    num(r, "size_ratio_vs_fp32", 3),
                    g(r, "batch"),
                    num(r, "p50_ms", 3),
                    num(r, "p95_ms", 3),
                    num(r, "img_per_s", 1),
                    num(r, "speedup_vs_fp32", 2),
                    num(r, "auroc", 4),
                    num(r, "f1", 4),
                    num(r, "spearman_vs_fp32", 4),
                ]);
            }
            if bench.rows.is_empty() {
                doc.p("`bench/quantized.csv` has no rows.".to_string());
            } else {
                doc.p(format!(
                    "From `bench/quantized.csv` (latency on this machine's CPU; quality: the \
                     detector refitted per variant){syn}."
                ));
                doc.table(t);
            }
            for c in &bench.charts {
                doc.figure(c.clone(), format!("bench: `{}`", study.rel(c).display()));
            }
        }
    }
    say_not_done(&mut doc, study, &["bench"]);

    doc.h(3, "DBSCAN on PCA and t-SNE");
    if study.clusters.is_empty() {
        doc.p(
            "No cluster analysis was found (`cluster/<model>/cluster.json` is missing)."
                .to_string(),
        );
    }
    for (label, c) in &study.clusters {
        doc.h(3, format!("Clusters of `{label}`"));
        doc.p(format!(
            "DBSCAN noise points read as anomalies, against the true labels. PCA keeps {} \
             components ({:.1} % of the variance) for scope `all`.",
            c.file.pca_components,
            c.file.pca_variance * 100.0
        ));
        let mut t = Table::new(
            &[
                "scope",
                "space",
                "n",
                "dims",
                "eps",
                "clusters",
                "noise",
                "precision",
                "recall",
                "F1",
                "ARI",
                "NMI",
                "vs",
            ],
            &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        );
        for r in &c.file.rows {
            t.row(vec![
                r.scope.clone(),
                r.space.clone(),
                r.n.to_string(),
                r.dims.to_string(),
                format!("{:.4}", r.eps),
                r.clusters.to_string(),
                r.noise.to_string(),
                format!("{:.4}", r.precision),
                format!("{:.4}", r.recall),
                format!("{:.4}", r.f1),
                format!("{:.4}", r.ari),
                format!("{:.4}", r.nmi),
                r.agreement_with.clone(),
            ]);
        }
        doc.table(t);
        if !c.file.detector.is_empty() {
            let mut t = Table::new(&["scope", "detector precision", "recall", "F1"], &[1, 2, 3]);
            for d in &c.file.detector {
                t.row(vec![
                    d.scope.clone(),
                    format!("{:.4}", d.precision),
                    format!("{:.4}", d.recall),
                    format!("{:.4}", d.f1),
                ]);
            }
            doc.p("The detector's verdicts on the same images:".to_string());
            doc.table(t);
        }
        let all: Vec<&PathBuf> = c
            .figures
            .iter()
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .is_some_and(|n| n.starts_with("all_") || n == "pca_variance.png")
            })
            .collect();
        let figs: Vec<&PathBuf> = if all.is_empty() {
            c.figures.iter().take(6).collect()
        } else {
            all
        };
        for f in figs {
            doc.figure(f.clone(), format!("`{}`", study.rel(f).display()));
        }
    }
    say_not_done(&mut doc, study, &["cluster"]);

    // ---- Discussion
    doc.h(2, "Discussion");
    let on_data = if synthetic {
        format!("on synthetic data ({} classes)", rec.classes.len())
    } else {
        format!("on {} ({} classes)", rec.data_kind, rec.classes.len())
    };
    if let (Some(b), Some(p)) = (&b, &key_teacher) {
        match &p.over_classes {
            Ok(d) => {
                let s =
                    match verdict(d) {
                        Verdict::Better => format!(
                        "H1 is supported: with `{}` (model {b}'s best method), {b} is better than \
                         its teacher by {:.4} AUROC {on_data}: {}.",
                        p.method, d.mean, ci_str(d)
                    ),
                        Verdict::NotDistinguishable => format!(
                        "H1 is supported: with `{}`, {b} is within the confidence interval of its \
                         teacher — the difference {b} − teacher is {} {on_data}; the interval \
                         includes 0.",
                        p.method,
                        ci_str(d)
                    ),
                        Verdict::Worse => format!(
                        "H1 is not supported: with `{}`, {b} is worse than its teacher by {:.4} \
                         AUROC {on_data}: {}; the whole interval lies below 0.",
                        p.method,
                        -d.mean,
                        ci_str(d)
                    ),
                    };
                findings.push(s);
            }
            Err(e) => findings.push(format!("H1 could not be tested with `{}`: {e}.", p.method)),
        }
    } else if design.teacher_of.is_some() {
        findings.push(
            "H1 could not be tested: the comparison lacks the distilled model or the teacher."
                .into(),
        );
    }
    if let (Some(b), Some(a), Some(p)) = (&b, &a, &key_a) {
        match &p.over_classes {
            Ok(d) => {
                let s =
                    match verdict(d) {
                        Verdict::Better => format!(
                        "H2 is supported: with `{}`, {b} beats the scratch baseline {a} by {:.4} \
                         AUROC {on_data}: {}.",
                        p.method, d.mean, ci_str(d)
                    ),
                        Verdict::NotDistinguishable => format!(
                        "H2 is not supported: with `{}`, {b} − {a} is {} {on_data}; the interval \
                         includes 0, so distillation shows no detectable gain over training \
                         from scratch.",
                        p.method,
                        ci_str(d)
                    ),
                        Verdict::Worse => format!(
                            "H2 is contradicted: with `{}`, {b} is **worse** than the scratch \
                         baseline {a} by {:.4} AUROC {on_data}: {}.",
                            p.method,
                            -d.mean,
                            ci_str(d)
                        ),
                    };
                findings.push(s);
            }
            Err(e) => findings.push(format!("H2 could not be tested with `{}`: {e}.", p.method)),
        }
    } else if b.is_some() && a.is_some() {
        findings.push(
            "H2 could not be tested: the comparison lacks the distilled or the scratch model."
                .into(),
        );
    }
    for (pairs, right) in [
        (&pairs_teacher, "teacher".to_string()),
        (&pairs_a, a.clone().unwrap_or_default()),
    ] {
        let (mut better, mut worse, mut same, mut total) = (0, 0, 0, 0);
        for p in pairs.iter() {
            if let Ok(d) = &p.over_classes {
                total += 1;
                match verdict(d) {
                    Verdict::Better => better += 1,
                    Verdict::Worse => worse += 1,
                    Verdict::NotDistinguishable => same += 1,
                }
            }
        }
        if total > 1 {
            if let Some(b) = &b {
                findings.push(format!(
                    "Across {total} methods, {b} vs {right} (paired over classes): better in \
                     {better}, worse in {worse}, not distinguishable in {same}."
                ));
            }
        }
    }
    for m in &design.models {
        if Some(&m.name) == b.as_ref() || Some(&m.name) == a.as_ref() {
            continue;
        }
        if let (Some(me), Some(bb)) = (agg.best_method.get(&m.name), &b) {
            let mine = agg.cell(&m.name, me).and_then(|c| c.auroc);
            let theirs = b_best
                .as_ref()
                .and_then(|bm| agg.cell(bb, bm))
                .and_then(|c| c.auroc);
            if let (Some(x), Some(y)) = (mine, theirs) {
                findings.push(format!(
                    "Model {} reaches {} with `{me}`, {} model {bb}'s best ({}) by {:.4} \
                     {on_data}.",
                    m.name,
                    x.show(),
                    if x.mean >= y.mean { "above" } else { "below" },
                    y.show(),
                    (x.mean - y.mean).abs()
                ));
            }
        }
    }
    if findings.is_empty() {
        findings.push("No hypothesis could be tested from the files present.".into());
    }
    doc.list(findings.clone());
    if synthetic {
        doc.p(
            "These are **synthetic-data** results: they show the pipeline works end to end, not \
             how the models perform on real industrial images."
                .to_string(),
        );
    }

    // ---- Threats to validity
    doc.h(2, "Threats to validity");
    let mut threats = Vec::new();
    if synthetic {
        threats.push(
            "**Synthetic data**: the images are generated by `defectkit data synth`; the \
             numbers say nothing about real defects."
                .to_string(),
        );
    }
    if let Some(b) = &b {
        if let Some((c, _)) = config_of(study, b) {
            if let ModelConfig::CnnDistilled(d) = &c.model {
                if d.teacher.weights.is_none() {
                    threats.push(format!(
                        "**The teacher was trained here** ({} epochs, from scratch) rather than \
                         ImageNet-pretrained (`model.teacher.weights` is null in model {b}'s run \
                         config): a weak teacher bounds what distillation can transfer.",
                        d.teacher.train_epochs
                    ));
                }
            }
        }
    }
    if let Some((counts, _)) = &study.counts {
        if let Some(val) = counts.get("val") {
            let total: usize = val.values().map(|c| c.0 + c.1).sum();
            let min = val.values().map(|c| c.0 + c.1).min().unwrap_or(0);
            threats.push(format!(
                "**Small validation sets**: {total} validation images in all, as few as {min} \
                 per class; the selection metric and the thresholds (a percentile of val good \
                 scores) are noisy at this size."
            ));
        }
    }
    threats.push(format!(
        "**Few seeds**: {} seed(s) ({}); the over-seeds intervals have {} degree(s) of freedom.",
        design.seeds.len(),
        join_u64(&design.seeds),
        design.seeds.len().saturating_sub(1)
    ));
    let test_selected: Vec<String> = study
        .selection
        .as_ref()
        .map(|s| {
            s.models
                .iter()
                .filter(|m| !m.metric.starts_with("val/"))
                .map(|m| format!("{} ({})", m.model, m.metric))
                .collect()
        })
        .unwrap_or_default();
    if test_selected.is_empty() {
        threats.push(
            "**Test labels were never used for selection**: settings are chosen on `val/` \
             metrics, thresholds on val good scores, and the quantized models (`bench --top`) on \
             validation-side evidence; the test split is read only for the reported metrics."
                .to_string(),
        );
    } else {
        threats.push(format!(
            "**Selection on a non-validation metric** for {}: those choices may have seen test data.",
            test_selected.join(", ")
        ));
    }
    threats.push(
        "The paired intervals over classes treat classes as independent samples of the task; \
         classes of one data set are not a random sample."
            .to_string(),
    );
    let failed = study
        .manifest
        .steps
        .iter()
        .filter(|s| s.status != StepStatus::Done && s.stage != "report")
        .count();
    if failed > 0 {
        threats.push(format!(
            "**Incomplete study**: {failed} step(s) did not finish (see the sections above)."
        ));
    }
    doc.list(threats);

    // ---- Conclusion
    doc.h(2, "Conclusion");
    let mut concl = Vec::new();
    if let Some((m, me, ms)) = &best_overall {
        concl.push(format!(
            "On {}, model {m} with `{me}` detects best: mean image AUROC {}{syn}.",
            if synthetic {
                "synthetic data"
            } else {
                rec.data_kind.as_str()
            },
            ms.show()
        ));
    }
    for f in findings
        .iter()
        .filter(|f| f.starts_with("H1") || f.starts_with("H2"))
    {
        let short = f.split(':').next().unwrap_or(f);
        concl.push(format!("{short}{syn}."));
    }
    if concl.is_empty() {
        concl.push("The study has no detection results to conclude from.".into());
    }
    doc.p(concl.join(" "));

    // ---- Reproduce
    doc.h(2, "Reproduce");
    let mut cmd = format!("defectkit study study={}", design.name);
    for o in &rec.forwarded_overrides {
        cmd.push(' ');
        cmd.push_str(&shell_word(o));
    }
    doc.code(cmd);
    doc.p(format!("Tool version: `{}`.", rec.tool_version));
    let total: f64 = study.manifest.steps.iter().map(|s| s.wall_seconds).sum();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &study.manifest.steps {
        *by_status.entry(status_str(s.status)).or_default() += 1;
    }
    doc.p(format!(
        "The manifest records {} steps ({}), {} of wall time in all ({:.1} s).",
        study.manifest.steps.len(),
        by_status
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        seconds(total),
        total
    ));
    let mut t = Table::new(&["run", "config hash (sha256 of .hydra/config.yaml)"], &[]);
    for runs in study.runs.values() {
        for r in runs {
            t.row(vec![
                format!("`{}`", r.rel.display()),
                r.config_hash
                    .as_ref()
                    .map_or("missing".into(), |h| format!("`{h}`")),
            ]);
        }
    }
    if !t.rows.is_empty() {
        doc.table(t);
    }
    if !study.warnings.is_empty() {
        doc.h(3, "Files that could not be read");
        doc.list(study.warnings.iter().map(|w| format!("`{w}`")).collect());
    }

    Built {
        doc,
        main_table,
        findings,
    }
}

fn agg_models_or_design(study: &Study, agg: &Aggregates) -> String {
    let mut names: Vec<String> = study
        .record
        .study
        .models
        .iter()
        .map(|m| m.title.clone())
        .collect();
    if agg.models.iter().any(|m| m == "teacher") || study.record.study.teacher_of.is_some() {
        names.push(title(study, "teacher"));
    }
    names.join("; ")
}

fn join_u64(v: &[u64]) -> String {
    v.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An override as one shell word (quoted when it holds shell specials).
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./=+,:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One line per detector method.
fn detector_line(method: &str) -> &'static str {
    match method {
        "mahalanobis" => "Mahalanobis distance of the image embedding to its class's Gaussian (Ledoit-Wolf shrunk covariance), fitted on good images.",
        "euclidean" => "Euclidean distance of the image embedding to its class's mean good embedding.",
        "knn" => "mean distance to the k nearest good embeddings of the class.",
        "recon" => "the autoencoder's reconstruction error of the image (U-Net only).",
        "padim" => "PaDiM: a Gaussian per feature-map location and class; the image score is the maximum of the smoothed Mahalanobis map (pixel AUROC and AUPRO too).",
        "patchcore" => "PatchCore: distance of each patch to the nearest patch of a coreset memory bank of good patches; the image score is the map's maximum (pixel AUROC and AUPRO too).",
        _ => "a detector of this build.",
    }
}

/// A Markdown fragment (paragraphs and pipe tables) as blocks.
fn md_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    let mut table: Vec<&str> = Vec::new();
    let flush_para = |para: &mut Vec<&str>, out: &mut Vec<Block>| {
        if !para.is_empty() {
            out.push(Block::Para(para.join(" ")));
            para.clear();
        }
    };
    let flush_table = |table: &mut Vec<&str>, out: &mut Vec<Block>| {
        if table.is_empty() {
            return;
        }
        let cells = |l: &str| -> Vec<String> {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        };
        let header = cells(table[0]);
        let numeric = table
            .get(1)
            .map(|l| cells(l).iter().map(|c| c.ends_with(':')).collect())
            .unwrap_or_else(|| vec![false; header.len()]);
        let rows = table.iter().skip(2).map(|l| cells(l)).collect();
        out.push(Block::Table(Table {
            header,
            numeric,
            rows,
        }));
        table.clear();
    };
    for line in md.lines() {
        if line.trim_start().starts_with('|') {
            flush_para(&mut para, &mut out);
            table.push(line);
        } else if line.trim().is_empty() {
            flush_para(&mut para, &mut out);
            flush_table(&mut table, &mut out);
        } else {
            flush_table(&mut table, &mut out);
            para.push(line.trim());
        }
    }
    flush_para(&mut para, &mut out);
    flush_table(&mut table, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(11_689_512), "11,689,512");
    }

    #[test]
    fn md_fragment_to_blocks() {
        let b = md_blocks("Chosen on val.\n\n| a | b |\n| --- | ---: |\n| x | 1 |\n");
        assert!(matches!(&b[0], Block::Para(p) if p == "Chosen on val."));
        match &b[1] {
            Block::Table(t) => {
                assert_eq!(t.header, vec!["a", "b"]);
                assert_eq!(t.numeric, vec![false, true]);
                assert_eq!(t.rows, vec![vec!["x".to_string(), "1".to_string()]]);
            }
            other => panic!("{other:?}"),
        }
    }
}
