//! The numbers of the results: mean ± sd over seeds of each model × method, per-class
//! AUROC averaged over seeds, each model's best method, and the paired comparisons
//! (B vs teacher, B vs A) over classes and over seeds.

use std::collections::BTreeMap;

use super::load::Study;
use crate::stats::paired::{paired_difference, PairedDifference};

/// A mean over seeds with its sample standard deviation (None below 2 values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MeanSd {
    /// Values averaged.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (n − 1).
    pub sd: Option<f64>,
}

impl MeanSd {
    /// `0.8123 ± 0.0100` (or the mean alone for one value).
    pub fn show(&self) -> String {
        match self.sd {
            Some(sd) => format!("{:.4} ± {:.4}", self.mean, sd),
            None => format!("{:.4}", self.mean),
        }
    }
}

/// The mean and sd of the finite `values` (None when there are none).
pub(crate) fn mean_sd(values: &[f64]) -> Option<MeanSd> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some(MeanSd {
        n: v.len(),
        mean,
        sd,
    })
}

/// One model × method over seeds.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// Mean image AUROC (class mean), over seeds.
    pub auroc: Option<MeanSd>,
    /// Mean pixel AUROC, over seeds.
    pub pixel: Option<MeanSd>,
    /// Mean AUPRO, over seeds.
    pub aupro: Option<MeanSd>,
    /// Class-mean AUROC per seed.
    pub per_seed: BTreeMap<u64, f64>,
    /// Per class, over seeds.
    pub per_class: BTreeMap<String, MeanSd>,
}

/// A paired comparison of model `left` against `right` with one method.
#[derive(Debug, Clone)]
pub(crate) struct Paired {
    /// The model compared (B).
    pub left: String,
    /// The reference (teacher, A).
    pub right: String,
    /// The method.
    pub method: String,
    /// Over classes (seed-averaged AUROC per class, n = classes).
    pub over_classes: Result<PairedDifference, String>,
    /// Over seeds (class-mean AUROC per seed, n = seeds).
    pub over_seeds: Result<PairedDifference, String>,
}

/// Everything aggregated from the comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregates {
    /// Models in table order (the study's, then the teacher, then any other label).
    pub models: Vec<String>,
    /// Methods in table order (the study's detectors first).
    pub methods: Vec<String>,
    /// By (model, method).
    pub cells: BTreeMap<(String, String), Cell>,
    /// Each model's method with the highest mean AUROC.
    pub best_method: BTreeMap<String, String>,
    /// Each model's kind (from the comparison rows).
    pub kinds: BTreeMap<String, String>,
    /// Classes seen.
    pub classes: Vec<String>,
}

impl Aggregates {
    /// The cell of `model` × `method`.
    pub fn cell(&self, model: &str, method: &str) -> Option<&Cell> {
        self.cells.get(&(model.to_string(), method.to_string()))
    }
}

/// Aggregates `study.comparison` (empty without one).
pub(crate) fn aggregate(study: &Study) -> Aggregates {
    let Some(rows) = &study.comparison else {
        return Aggregates::default();
    };
    let mut models: Vec<String> = study
        .record
        .study
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    models.push("teacher".into());
    let mut methods: Vec<String> = study.record.study.detectors.clone();
    let mut raw: BTreeMap<(String, String), Vec<(u64, &super::load::CompRow)>> = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let mut classes: Vec<String> = Vec::new();
    for r in rows {
        let (model, seed) = study.label_of(&r.model);
        if !models.contains(&model) {
            models.push(model.clone());
        }
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
        kinds.entry(model.clone()).or_insert_with(|| r.kind.clone());
        for c in r.class_auroc.keys() {
            if !classes.contains(c) {
                classes.push(c.clone());
            }
        }
        raw.entry((model, r.method.clone()))
            .or_default()
            .push((seed.unwrap_or(0), r));
    }
    classes.sort();
    let mut cells = BTreeMap::new();
    for (key, list) in raw {
        let auroc: Vec<f64> = list.iter().filter_map(|(_, r)| r.mean.auroc).collect();
        let pixel: Vec<f64> = list.iter().filter_map(|(_, r)| r.pixel_auroc).collect();
        let aupro: Vec<f64> = list.iter().filter_map(|(_, r)| r.aupro).collect();
        let per_seed = list
            .iter()
            .filter_map(|(s, r)| r.mean.auroc.map(|a| (*s, a)))
            .collect();
        let mut class_seed: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
        for (s, r) in &list {
            for (c, v) in &r.class_auroc {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    class_seed.entry(c.clone()).or_default().insert(*s, v);
                }
            }
        }
        let per_class = class_seed
            .iter()
            .filter_map(|(c, m)| {
                mean_sd(&m.values().copied().collect::<Vec<_>>()).map(|ms| (c.clone(), ms))
            })
            .collect();
        cells.insert(
            key,
            Cell {
                auroc: mean_sd(&auroc),
                pixel: mean_sd(&pixel),
                aupro: mean_sd(&aupro),
                per_seed,
                per_class,
            },
        );
    }
    models.retain(|m| cells.keys().any(|(mm, _)| mm == m));
    methods.retain(|m| cells.keys().any(|(_, mm)| mm == m));
    let mut best_method = BTreeMap::new();
    for m in &models {
        let best = methods
            .iter()
            .filter_map(|me| {
                cells
                    .get(&(m.clone(), me.clone()))
                    .and_then(|c| c.auroc)
                    .map(|a| (me.clone(), a.mean))
            })
            .fold(None::<(String, f64)>, |acc, (me, v)| match acc {
                Some((_, best)) if best >= v => acc,
                _ => Some((me, v)),
            });
        if let Some((me, _)) = best {
            best_method.insert(m.clone(), me);
        }
    }
    Aggregates {
        models,
        methods,
        cells,
        best_method,
        kinds,
        classes,
    }
}

/// `left` vs `right` with every method both have: differences left − right.
pub(crate) fn paired(agg: &Aggregates, left: &str, right: &str) -> Vec<Paired> {
    let mut out = Vec::new();
    for method in &agg.methods {
        let (Some(l), Some(r)) = (agg.cell(left, method), agg.cell(right, method)) else {
            continue;
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (c, ms) in &l.per_class {
            if let Some(rs) = r.per_class.get(c) {
                a.push(ms.mean);
                b.push(rs.mean);
            }
        }
        let over_classes = paired_difference(&a, &b, 0.95)
            .map_err(|e| format!("{} classes with both values: {e}", a.len()));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (s, v) in &l.per_seed {
            if let Some(w) = r.per_seed.get(s) {
                a.push(*v);
                b.push(*w);
            }
        }
        let over_seeds =
            paired_difference(&a, &b, 0.95).map_err(|e| format!("{} shared seeds: {e}", a.len()));
        out.push(Paired {
            left: left.to_string(),
            right: right.to_string(),
            method: method.clone(),
            over_classes,
            over_seeds,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sd() {
        let m = mean_sd(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m.mean, 2.0);
        assert_eq!(m.sd, Some(1.0));
        assert_eq!(mean_sd(&[0.5]).unwrap().sd, None);
        assert!(mean_sd(&[f64::NAN]).is_none());
    }
}
