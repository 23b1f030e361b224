//! The `study=` config group (`conf/study.yaml` is its primary config, `conf/study/<name>.yaml`
//! the designs): the whole experiment as data — which models, the sweep of each, the selection
//! rule, the seeds, the detectors, the top-N rule for quantization and what to cluster.
//! `defectkit study` reads it; `defectkit report` reads it back from the study dir.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// Whether a smaller or a larger selection metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectMode {
    /// Smaller is better (losses).
    Min,
    /// Larger is better (accuracies).
    Max,
}

/// How one model's sweep is decided: a validation metric of the training run's
/// `summary.json` (`metrics`, the best checkpoint's values). Test metrics are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectRule {
    /// A `val/…` key of `summary.json`'s `metrics` (e.g. `val/loss`, `val/ce`, `val/mse`).
    pub metric: String,
    /// Which way is better.
    pub mode: SelectMode,
}

/// One model of the study and its sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyModel {
    /// Short name used in folder names and tables (`a`, `b`, `c`).
    pub name: String,
    /// What it is, for the report ("A: ResNet-18 prefix from scratch").
    pub title: String,
    /// Overrides that make this model (`model=cnn_distilled`, …), after the study's own.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The sweep: override key → values; the settings are their cartesian product, the
    /// first key outermost (Hydra's order). Values are written as override values.
    pub sweep: serde_norway::Mapping,
    /// How the best setting is chosen.
    pub select: SelectRule,
}

/// What `embed` stores for the detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyEmbed {
    /// Also store the patch-level feature maps (needed by padim / patchcore).
    pub maps: bool,
    /// Keep this many of the map channels (seeded random subset); null = all.
    #[serde(default)]
    pub map_channels: Option<usize>,
}

/// The quantize + bench stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyBench {
    /// Quantize and benchmark this many models, ranked on validation-side evidence only
    /// (`bench --top`).
    pub top: usize,
    /// Timed runs per batch size.
    pub iterations: usize,
    /// Batch sizes.
    pub batch: Vec<usize>,
    /// Intra-op threads (null = ONNX Runtime's choice).
    #[serde(default)]
    pub threads: Option<usize>,
}

/// The cluster stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyCluster {
    /// Model names (of `models`, or `teacher`) whose first-seed embeddings are clustered.
    pub models: Vec<String>,
}

/// The study design (`conf/study/<name>.yaml`, package `study`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// The study's name (its folder's default name).
    pub name: String,
    /// One paragraph for the report: what the study asks and on what data.
    pub description: String,
    /// Where the study dir goes.
    pub dir: PathBuf,
    /// Run `data synth --if-changed` first (the synthetic set); false for a real data root.
    pub synthesize: bool,
    /// Overrides passed to every verb that composes a config (data, trainer, preprocessing),
    /// before the model's and the command line's.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The models and their sweeps.
    pub models: Vec<StudyModel>,
    /// Also study model B's ResNet-18 teacher: the `name` of the distilled model whose runs
    /// hold it (exported with `export --teacher`, as model `teacher`); null = no teacher.
    #[serde(default)]
    pub teacher_of: Option<String>,
    /// The selected setting of each model is trained once per seed (`trainer.seed`); the
    /// sweep itself runs with the first.
    pub seeds: Vec<u64>,
    /// Detector methods compared on every model × seed (`detect --compare --methods`).
    pub detectors: Vec<String>,
    /// What `embed` stores.
    pub embed: StudyEmbed,
    /// Quantization and benchmarks.
    pub bench: StudyBench,
    /// Outlier analysis.
    pub cluster: StudyCluster,
}

impl StudyConfig {
    /// Deserializes a resolved `study` node, rejecting unknown keys and checking the design.
    pub fn from_tree(tree: serde_norway::Value) -> Result<Self, ConfigError> {
        let study: StudyConfig =
            serde_path_to_error::deserialize(tree).map_err(|e| ConfigError::Schema {
                path: format!("study.{}", e.path()),
                reason: e.inner().to_string(),
            })?;
        study.validate()?;
        Ok(study)
    }

    /// The checks a design must pass before anything runs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |path: &str, reason: String| ConfigError::Schema {
            path: format!("study.{path}"),
            reason,
        };
        if self.name.is_empty() || !self.name.chars().all(is_name_char) {
            return Err(bad(
                "name",
                format!("`{}`: use letters, digits, `_` and `-`", self.name),
            ));
        }
        if self.models.is_empty() {
            return Err(bad("models", "at least one model".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if m.name.is_empty() || !m.name.chars().all(is_name_char) || m.name == "teacher" {
                return Err(bad(
                    &format!("models.{i}.name"),
                    format!(
                        "`{}`: use letters, digits, `_` and `-` (and not `teacher`)",
                        m.name
                    ),
                ));
            }
            if !names.insert(m.name.clone()) {
                return Err(bad(
                    &format!("models.{i}.name"),
                    format!("`{}` twice", m.name),
                ));
            }
            if !m.select.metric.starts_with("val/") {
                return Err(bad(
                    &format!("models.{i}.select.metric"),
                    format!(
                        "`{}`: select on a validation metric (`val/…`), never on test",
                        m.select.metric
                    ),
                ));
            }
            for (k, v) in &m.sweep {
                let key = k.as_str().unwrap_or("");
                let ok = matches!(v, serde_norway::Value::Sequence(s) if !s.is_empty());
                if key.is_empty() || !ok {
                    return Err(bad(
                        &format!("models.{i}.sweep"),
                        format!("`{k:?}`: each key needs a non-empty list of values"),
                    ));
                }
            }
        }
        if let Some(t) = &self.teacher_of {
            if !names.contains(t) {
                return Err(bad("teacher_of", format!("`{t}` is not one of the models")));
            }
        }
        if self.seeds.is_empty() {
            return Err(bad("seeds", "at least one seed".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(s) = self.seeds.iter().find(|s| !seen.insert(**s)) {
            return Err(bad("seeds", format!("{s} twice")));
        }
        if self.detectors.is_empty() {
            return Err(bad("detectors", "at least one detector method".into()));
        }
        if self.bench.iterations == 0
            || self.bench.batch.contains(&0)
            || self.bench.batch.is_empty()
        {
            return Err(bad(
                "bench",
                "iterations and every batch size must be ≥ 1".into(),
            ));
        }
        if self.embed.map_channels == Some(0) {
            return Err(bad("embed.map_channels", "must be ≥ 1 or null".into()));
        }
        for m in &self.cluster.models {
            let known = names.contains(m) || (m == "teacher" && self.teacher_of.is_some());
            if !known {
                return Err(bad(
                    "cluster.models",
                    format!("`{m}` is not one of the models"),
                ));
            }
        }
        Ok(())
    }

    /// Each model's settings: the cartesian product of its sweep, as override lists.
    pub fn settings(model: &StudyModel) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = vec![Vec::new()];
        for (k, v) in &model.sweep {
            let key = k.as_str().unwrap_or_default();
            let values = match v {
                serde_norway::Value::Sequence(s) => s.clone(),
                other => vec![other.clone()],
            };
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |value| {
                        let mut next = prefix.clone();
                        next.push(format!("{key}={}", override_value(value)));
                        next
                    })
                })
                .collect();
        }
        out
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A YAML value written as an override value (`0.001`, `true`, `'text'`, `[1, 2]`).
pub fn override_value(value: &serde_norway::Value) -> String {
    use serde_norway::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
                && !s.is_empty()
            {
                s.clone()
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Sequence(s) => format!(
            "[{}]",
            s.iter().map(override_value).collect::<Vec<_>>().join(",")
        ),
        Value::Mapping(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}:{}", override_value(k), override_value(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Tagged(t) => override_value(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(sweep: &str) -> StudyModel {
        StudyModel {
            name: "a".into(),
            title: "A".into(),
            overrides: vec![],
            sweep: serde_norway::from_str(sweep).unwrap(),
            select: SelectRule {
                metric: "val/loss".into(),
                mode: SelectMode::Min,
            },
        }
    }

    #[test]
    fn settings_are_the_cartesian_product_first_key_outermost() {
        let s = StudyConfig::settings(&model(
            "{trainer.lr: [0.001, 0.0003], model.width: [32, 64]}",
        ));
        assert_eq!(
            s,
            vec![
                vec!["trainer.lr=0.001", "model.width=32"],
                vec!["trainer.lr=0.001", "model.width=64"],
                vec!["trainer.lr=0.0003", "model.width=32"],
                vec!["trainer.lr=0.0003", "model.width=64"],
            ]
        );
    }

    #[test]
    fn values_are_written_as_overrides() {
        let v: serde_norway::Value =
            serde_norway::from_str("[true, null, 'a b', x.y, [1, 2]]").unwrap();
        let s: Vec<String> = v
            .as_sequence()
            .unwrap()
            .iter()
            .map(override_value)
            .collect();
        assert_eq!(s, vec!["true", "null", "'a b'", "x.y", "[1,2]"]);
    }
}
