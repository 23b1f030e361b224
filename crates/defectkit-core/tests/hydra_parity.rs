//! defectkit's composition against hydra-core 1.3.8 itself: the same conf trees and
//! overrides must give identical trees, raw and resolved, and fail in the same cases.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use defectkit_core::config::{interpolate, Loader};
use serde_json::{json, Value as Json};

fn fixture_dir() -> PathBuf {
    common::repo_root().join("tests/fixtures/hydra_conf")
}

fn yaml_to_json(v: &serde_norway::Value) -> Json {
    serde_json::to_value(v).expect("yaml to json")
}

struct Case {
    dir: PathBuf,
    name: &'static str,
    overrides: Vec<&'static str>,
}

fn case(dir: &Path, name: &'static str, overrides: &[&'static str]) -> Case {
    Case {
        dir: dir.to_path_buf(),
        name,
        overrides: overrides.to_vec(),
    }
}

fn hydra_results(py: &Path, cases: &[Case]) -> Vec<Json> {
    let input: Vec<Json> = cases
        .iter()
        .map(|c| {
            json!({
                "config_dir": c.dir.canonicalize().unwrap().display().to_string(),
                "config_name": c.name,
                "overrides": c.overrides,
            })
        })
        .collect();
    let mut child = Command::new(py)
        .arg(common::repo_root().join("tests/peers/hydra_compose.py"))
        .env("DEFECTKIT_PARITY_VAR", "from_env")
        .env("WANDB_MODE", "offline")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hydra peer");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hydra peer failed");
    serde_json::from_slice::<Vec<Json>>(&out.stdout).unwrap()
}

fn ours(c: &Case) -> Json {
    let loader = Loader::new(&c.dir, c.name, "parity").unwrap();
    let overrides: Vec<String> = c.overrides.iter().map(|s| s.to_string()).collect();
    match loader.compose(&overrides) {
        Err(e) => json!({"ok": false, "error": e.to_string()}),
        Ok(composed) => {
            let raw = yaml_to_json(&composed.job_tree());
            let mut out = json!({"ok": true, "raw": raw});
            let full = interpolate::resolve_tree(&composed.job_tree(), &loader.ctx);
            match full {
                Ok(r) => out["resolved"] = yaml_to_json(&r),
                Err(e) => out["resolve_error"] = json!(e.to_string()),
            }
            out
        }
    }
}

#[test]
fn composition_matches_hydra_core() {
    let Some(py) = common::peer_python() else {
        return;
    };
    std::env::set_var("DEFECTKIT_PARITY_VAR", "from_env");
    std::env::set_var("WANDB_MODE", "offline");
    let f = fixture_dir();
    let conf = common::repo_root().join("conf");
    let cases = vec![
        case(&f, "config", &[]),
        case(&f, "config", &["db=postgresql"]),
        case(&f, "config", &["db.port=1234"]),
        case(&f, "config", &["+db.extra=1"]),
        case(&f, "config", &["++db.port=9"]),
        case(&f, "config", &["++new.key=v"]),
        case(&f, "config", &["~db.user"]),
        case(&f, "config", &["~db"]),
        case(&f, "config", &["~db=mysql"]),
        case(&f, "config", &["~db=postgresql"]),
        case(&f, "config", &["+experiment=exp1"]),
        case(&f, "config", &["+experiment=exp1", "db.port=7"]),
        case(&f, "config", &["+experiment=exp1", "db=mysql"]),
        case(&f, "config", &["+experiment=header_pkg"]),
        case(&f, "config", &["trainer=fast"]),
        case(
            &f,
            "config",
            &["trainer=fast", "trainer.opt.betas=[0.5,0.6]"],
        ),
        case(&f, "config", &["db.port='1234'"]),
        case(&f, "config", &["db.hosts=[a,b, 'c d']"]),
        case(&f, "config", &["+db.opts={x: 1, y: [2]}"]),
        case(&f, "config", &["db.port=null"]),
        case(
            &f,
            "config",
            &["db.flag=true", "db.rate=1e-3", "db.user=TRUE"],
        ),
        case(&f, "config", &["db.port="]),
        case(&f, "config", &["db.user=  spaced out  "]),
        case(&f, "config", &["+server=apache"]),
        case(&f, "config", &["+server=apache", "server/site=fancy"]),
        case(&f, "config", &["+db@backup=postgresql"]),
        case(&f, "config", &["misc=tools"]),
        case(&f, "config", &["++db=postgresql"]),
        case(&f, "config", &["++server=apache"]),
        case(&f, "config", &["name=${db.driver}-${db.port}"]),
        case(&f, "config", &["++bad=${oc.env:DEFECTKIT_PARITY_UNSET,5}"]),
        case(&f, "config", &["++ok=${oc.env:DEFECTKIT_PARITY_UNSET,'5'}"]),
        case(&f, "config", &["++missing_ref=${no.such.key}"]),
        case(&f, "self_first", &[]),
        case(&f, "self_first", &["db=postgresql", "top=2"]),
        // Failing cases.
        case(&f, "config", &["server=apache"]),
        case(&f, "config", &["db=nope"]),
        case(&f, "config", &["db.nope=1"]),
        case(&f, "config", &["+db.port=1"]),
        case(&f, "config", &["db.port=1,2"]),
        case(&f, "config", &["~db.nope"]),
        case(&f, "config", &["+db=postgresql"]),
        case(&f, "config", &["db.port=[1,2"]),
        case(&f, "config", &["+experiment=nope"]),
        case(&f, "nope", &[]),
        // The project's real conf tree.
        case(&conf, "config", &[]),
        case(&conf, "config", &["model=unet_ae", "trainer.lr=3e-4"]),
        case(&conf, "config", &["model=cnn_distilled", "data=mvtec"]),
        case(&conf, "config", &["+experiment=sweep_scratch"]),
        case(
            &conf,
            "config",
            &["+experiment=sweep_distilled", "trainer=fast"],
        ),
        case(&conf, "config", &["+experiment=sweep_unet"]),
        case(&conf, "config", &["trainer=fast", "logger=wandb"]),
        case(&conf, "config", &["~logger"]),
    ];
    assert!(cases.len() >= 20);
    let theirs = hydra_results(&py, &cases);
    let mut failures = Vec::new();
    for (c, want) in cases.iter().zip(&theirs) {
        let got = ours(c);
        let label = format!("{} {:?}", c.name, c.overrides);
        if got["ok"] != want["ok"] {
            failures.push(format!(
                "{label}: ok differs\n  ours:  {got}\n  hydra: {want}"
            ));
            continue;
        }
        if want["ok"] == json!(false) {
            continue;
        }
        if got["raw"] != want["raw"] {
            failures.push(format!(
                "{label}: raw differs\n  ours:  {}\n  hydra: {}",
                got["raw"], want["raw"]
            ));
        }
        match (want.get("resolved"), got.get("resolved")) {
            (Some(w), Some(g)) if w != g => failures.push(format!(
                "{label}: resolved differs\n  ours:  {g}\n  hydra: {w}"
            )),
            (Some(_), None) => failures.push(format!(
                "{label}: we failed to resolve: {}",
                got["resolve_error"]
            )),
            (None, Some(_)) => failures.push(format!(
                "{label}: hydra failed to resolve ({}) but we did",
                want["resolve_error"]
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from hydra-core:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn hydra_multirun(py: &Path, dir: &Path, overrides: &[&str]) -> Vec<(u64, Vec<String>)> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("jobs.jsonl");
    let status = Command::new(py)
        .arg(common::repo_root().join("tests/peers/hydra_app.py"))
        .arg("--config-dir")
        .arg(dir.canonicalize().unwrap())
        .arg("--config-name")
        .arg("config")
        .arg("-m")
        .args(overrides)
        .arg(format!(
            "hydra.sweep.dir={}",
            tmp.path().join("sweep").display()
        ))
        .arg("hydra/job_logging=disabled")
        .arg("hydra/hydra_logging=disabled")
        .env("PARITY_OUT", &out)
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "hydra multirun failed for {overrides:?}");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            let ov = v["overrides"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            (v["num"].as_u64().unwrap(), ov)
        })
        .collect()
}

#[test]
fn sweeps_match_hydra_core() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let f = fixture_dir();
    for overrides in [
        vec!["db.port=1,2,3", "trainer.lr=0.1,0.01"],
        vec!["db=mysql,postgresql", "name=a,b"],
        vec!["+experiment=exp1"],
        vec!["+experiment=exp1", "name=x,y"],
        vec!["trainer.epochs=range(1,4)", "db.user=choice(a,b)"],
    ] {
        let theirs = hydra_multirun(&py, &f, &overrides);
        let loader = Loader::new(&f, "config", "parity").unwrap();
        let owned: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let (_, jobs) = loader.compose_sweep(&owned).unwrap();
        let got: Vec<(u64, Vec<String>)> = jobs
            .iter()
            .map(|j| {
                let task = defectkit_core::config::compose::select(
                    &j.composed.tree,
                    "hydra.overrides.task",
                )
                .and_then(|v| v.as_sequence())
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
                (j.num as u64, task)
            })
            .collect();
        assert_eq!(got, theirs, "sweep {overrides:?}");
    }
}
