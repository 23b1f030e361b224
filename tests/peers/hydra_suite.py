"""hydra-core's own answers for the cases of tests/fixtures/hydra_suite/cases.json.

Usage: python tests/peers/hydra_suite.py CASES_JSON CONF_ROOT WORK_DIR > runs.json

Each case becomes one or more runs {origin, config_dir, config_name, overrides}: a value case
is `+x=<input>` on an empty primary config; an override case runs as typed on an empty
config and, when Hydra parses its key, on a config holding that key; compose cases run as
given; apply cases get their input config written to WORK_DIR. For every run this prints
what hydra-core 1.3.8 does with it, as a single run (compose: raw and resolved tree, or the
error) and as a `-m` sweep (BasicSweeper's job list, or the error). The Rust side
(crates/defectkit-core/tests/hydra_suite.rs) runs the same runs and compares.
"""
import json
import math
import sys
import warnings
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

warnings.simplefilter("ignore")


def jsonable(v):
    """JSON for a container: non-finite floats as strings, keys typed as {"k": ..} pairs."""
    if isinstance(v, float):
        if math.isnan(v):
            return {"float": "nan"}
        if math.isinf(v):
            return {"float": "inf" if v > 0 else "-inf"}
        return v
    if isinstance(v, dict):
        return {"map": [[jsonable(k), jsonable(x)] for k, x in v.items()]}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def err(e):
    return f"{type(e).__name__}: {e}"


def single(run):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=run["config_dir"]):
            cfg = compose(config_name=run["config_name"], overrides=run["overrides"])
    except BaseException as e:  # noqa: BLE001 - any failure is a result
        return {"ok": False, "error": err(e)}
    out = {"ok": True}
    try:
        out["raw"] = jsonable(OmegaConf.to_container(cfg, resolve=False))
    except BaseException as e:  # noqa: BLE001
        return {"ok": False, "error": err(e)}
    try:
        out["resolved"] = jsonable(OmegaConf.to_container(cfg, resolve=True))
    except BaseException as e:  # noqa: BLE001
        out["resolve_error"] = err(e)
    return out


def sweep(run):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=run["config_dir"]):
            loader = GlobalHydra.instance().hydra.config_loader
            parser = OverridesParser.create(config_loader=loader)
            parsed = parser.parse_overrides(run["overrides"])
            (jobs,) = BasicSweeper.split_arguments(parsed, None)
    except BaseException as e:  # noqa: BLE001
        return {"ok": False, "error": err(e)}
    return {"ok": True, "jobs": jobs}


def key_config(override, work, i):
    """A config dir whose primary config holds the override's key (a dotted path)."""
    try:
        parsed = OverridesParser.create().parse_override(override)
    except BaseException:  # noqa: BLE001
        return None
    key = parsed.key_or_group
    if parsed.package is not None or "/" in key or not key:
        return None
    cfg = OmegaConf.create()
    try:
        OmegaConf.update(cfg, key, "old", force_add=True)
    except BaseException:  # noqa: BLE001
        return None
    d = work / f"key_{i}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return str(d)


def runs_of(case, conf_root, work, i):
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    (empty / "config.yaml").write_text("{}\n")
    base = {"origin": case["origin"], "kind": case["kind"]}
    kind = case["kind"]
    if kind == "value":
        return [dict(base, config_dir=str(empty), config_name="config",
                     overrides=["+x=" + case["input"]])]
    if kind == "key":
        return [dict(base, config_dir=str(empty), config_name="config",
                     overrides=["+" + case["input"] + "=1"])]
    if kind == "override":
        out = [dict(base, config_dir=str(empty), config_name="config",
                    overrides=[case["input"]])]
        d = key_config(case["input"], work, i)
        if d is not None:
            out.append(dict(base, config_dir=d, config_name="config",
                            overrides=[case["input"]]))
        return out
    if kind == "compose":
        return [dict(base, config_dir=str(conf_root / case["config_dir"]),
                     config_name=case["config_name"], overrides=case["overrides"])]
    if kind == "apply":
        d = work / f"apply_{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(case["input_cfg"])))
        return [dict(base, config_dir=str(d), config_name="config",
                     overrides=case["overrides"])]
    raise ValueError(f"unknown case kind {kind}")


def main():
    doc = json.loads(Path(sys.argv[1]).read_text())
    conf_root = Path(sys.argv[2]).resolve()
    work = Path(sys.argv[3]).resolve()
    out = []
    for i, case in enumerate(doc["cases"]):
        for run in runs_of(case, conf_root, work, i):
            run["single"] = single(run)
            run["sweep"] = sweep(run)
            out.append(run)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
