//! Multirun sweeps: the cartesian product of every sweep override, first override
//! outermost, jobs numbered from 0 (Hydra's BasicSweeper).
//!
//! Sweep parameters come from `hydra.sweeper.params` of the composed config (so that an
//! experiment preset can declare its own sweep) followed by the command line; a command-line
//! override of the same key replaces the preset's, keeping its place in the order.

use serde_norway::Value;

use super::compose::{select, Composed, ConfigRepo};
use super::error::ConfigError;
use super::overrides::{parse_override, Override, OverrideValue};
use super::pyrepr::python_str;

/// The override list of every job of a sweep, in job-number order.
/// `repo` lists a group's options for `glob(..)` sweeps.
pub fn expand_jobs(
    repo: &ConfigRepo,
    base: &Composed,
    cli: &[Override],
) -> Result<Vec<Vec<String>>, ConfigError> {
    let mut all: Vec<Override> = Vec::new();
    if let Some(Value::Mapping(params)) = select(&base.tree, "hydra.sweeper.params") {
        for (k, v) in params {
            let text = format!("{}={}", python_str(k), python_str(v));
            all.push(parse_override(&text)?);
        }
    }
    for o in cli {
        match all
            .iter_mut()
            .find(|x| x.prefixed_key() == o.prefixed_key())
        {
            Some(slot) => *slot = o.clone(),
            None => all.push(o.clone()),
        }
    }
    let lists: Vec<Vec<String>> = all
        .iter()
        .map(|o| job_values(repo, o))
        .collect::<Result<_, _>>()?;
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

/// One job entry per value of a sweep; a single entry otherwise (Hydra's `split_arguments`).
fn job_values(repo: &ConfigRepo, o: &Override) -> Result<Vec<String>, ConfigError> {
    match &o.value {
        Some(OverrideValue::Sweep(sweep)) => {
            let group = o.key.clone();
            let values = sweep.values(&|| repo.options(&group)).map_err(|reason| {
                ConfigError::OverrideParse {
                    input: o.input.clone(),
                    reason,
                }
            })?;
            Ok(values.iter().map(|v| o.with_value_string(v)).collect())
        }
        _ => Ok(vec![o.canonical_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> ConfigRepo {
        ConfigRepo::open(&std::env::temp_dir()).unwrap()
    }

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
        let jobs = expand_jobs(&repo(), &composed_with_params("null"), &cli).unwrap();
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
        let jobs = expand_jobs(&repo(), &base, &cli).unwrap();
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
