//! Multirun sweeps: the cartesian product of every sweep override, first override
//! outermost, jobs numbered from 0 (Hydra's BasicSweeper).
//!
//! Sweep parameters come from `hydra.sweeper.params` of the composed config (so that an
//! experiment preset can declare its own sweep) followed by the command line; a command-line
//! override of the same key replaces the preset's, keeping its place in the order.

use serde_norway::Value;

use super::compose::{select, Composed};
use super::error::ConfigError;
use super::overrides::{parse_override, Override, OverrideKind, OverrideValue};
use super::pyrepr::python_str;

/// The override list of every job of a sweep, in job-number order.
pub fn expand_jobs(base: &Composed, cli: &[Override]) -> Result<Vec<Vec<String>>, ConfigError> {
    let mut all: Vec<Override> = Vec::new();
    if let Some(Value::Mapping(params)) = select(&base.tree, "hydra.sweeper.params") {
        for (k, v) in params {
            let text = format!("{}={}", python_str(k), python_str(v));
            all.push(parse_override(&text)?);
        }
    }
    for o in cli {
        match all.iter_mut().find(|x| x.key_element() == o.key_element()) {
            Some(slot) => *slot = o.clone(),
            None => all.push(o.clone()),
        }
    }
    let lists: Vec<Vec<String>> = all.iter().map(job_values).collect();
    let mut jobs: Vec<Vec<String>> = vec![Vec::new()];
    for list in &lists {
        let mut next = Vec::with_capacity(jobs.len() * list.len());
        for prefix in &jobs {
            for item in list {
                let mut j = prefix.clone();
                j.push(item.clone());
                next.push(j);
            }
        }
        jobs = next;
    }
    Ok(jobs)
}

fn job_values(o: &Override) -> Vec<String> {
    match &o.value {
        Some(OverrideValue::Sweep(values)) => {
            values.iter().map(|v| o.with_value_string(v)).collect()
        }
        _ if o.kind == OverrideKind::Delete && o.value.is_none() => {
            vec![o.input.trim().to_string()]
        }
        _ => vec![o.canonical_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn composed_with_params(params: &str) -> Composed {
        let tree: Value =
            serde_norway::from_str(&format!("hydra:\n  sweeper:\n    params: {params}\n")).unwrap();
        Composed {
            tree,
            choices: vec![],
            defaults: vec![],
            overrides: vec![],
        }
    }

    #[test]
    fn cartesian_product_first_outermost() {
        let cli: Vec<Override> = ["a=1,2,3", "b=x,y", "c=5"]
            .iter()
            .map(|s| parse_override(s).unwrap())
            .collect();
        let jobs = expand_jobs(&composed_with_params("null"), &cli).unwrap();
        assert_eq!(jobs.len(), 6);
        assert_eq!(jobs[0], ["a=1", "b=x", "c=5"]);
        assert_eq!(jobs[1], ["a=1", "b=y", "c=5"]);
        assert_eq!(jobs[5], ["a=3", "b=y", "c=5"]);
    }

    #[test]
    fn preset_params_come_first_and_cli_replaces_same_key() {
        let cli: Vec<Override> = ["+experiment=s", "b=7,8"]
            .iter()
            .map(|s| parse_override(s).unwrap())
            .collect();
        let base = composed_with_params("{a: '1,2', b: '3,4'}");
        let jobs = expand_jobs(&base, &cli).unwrap();
        assert_eq!(
            jobs,
            vec![
                vec!["a=1", "b=7", "+experiment=s"],
                vec!["a=1", "b=8", "+experiment=s"],
                vec!["a=2", "b=7", "+experiment=s"],
                vec!["a=2", "b=8", "+experiment=s"],
            ]
        );
    }
}
