//! `notebooks/experiments.ipynb` executes headless (nbclient on the venv's python3 kernel) at
//! the tiny size: every cell runs without error, stage by stage through the study, and the
//! outputs show the comparison table and the report's path.

mod common;

use std::process::Command;

const RUN_NOTEBOOK: &str = r#"
import json, sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
text = []
for c in nb.cells:
    for o in c.get("outputs", []):
        if "text" in o:
            text.append(o["text"])
        for v in o.get("data", {}).values():
            if isinstance(v, str):
                text.append(v)
json.dump({"errors": len(errors), "cells": len(nb.cells), "text": "\n".join(text)}, sys.stdout)
"#;

#[test]
fn the_notebook_runs_the_tiny_study_headless() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let _one = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = cwd.join("data");
    let dir = cwd.join("study");
    let overrides = serde_json::json!([
        format!("data.root={}", data.display()),
        "data.synth.train_good=6",
        "data.synth.test_good=2",
        "data.synth.test_defect_per_type=1",
        "data.synth.image_size=64",
    ]);
    let root = common::repo_root();
    let out = Command::new(&py)
        .arg("-c")
        .arg(RUN_NOTEBOOK)
        .arg(root.join("notebooks/experiments.ipynb"))
        .arg(cwd)
        .current_dir(cwd)
        .env("DEFECTKIT_BIN", common::defectkit_bin())
        .env("DEFECTKIT_STUDY", "tiny")
        .env("DEFECTKIT_STUDY_OVERRIDES", overrides.to_string())
        .env("DEFECTKIT_STUDY_DIR", &dir)
        .env("DEFECTKIT_ROOT", cwd)
        .output()
        .expect("run the notebook with nbclient");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the notebook failed:\n{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("runner's JSON");
    assert_eq!(result["errors"], 0, "a cell raised:\n{}", result["text"]);
    let text = result["text"].as_str().unwrap();
    assert!(
        text.contains("| model | kind | method | mean AUROC"),
        "the comparison table is shown"
    );
    assert!(
        text.contains(&format!("report: {}", dir.join("report.html").display())),
        "the report's path is shown"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "done"));
}
