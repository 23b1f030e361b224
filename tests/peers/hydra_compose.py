"""Compose configs with hydra-core itself, the oracle for defectkit's Hydra semantics.

Reads a JSON list of cases {config_dir, config_name, overrides} on stdin and prints a JSON
list of results {ok, raw, resolved | resolve_error} or {ok: false, error}.
"""
import json
import sys

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf


def run(case):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=case["config_dir"]):
            cfg = compose(config_name=case["config_name"], overrides=case["overrides"])
    except Exception as e:  # noqa: BLE001 - any composition failure is a result
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out = {"ok": True, "raw": OmegaConf.to_container(cfg, resolve=False)}
    try:
        out["resolved"] = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001
        out["resolve_error"] = f"{type(e).__name__}: {e}"
    return out


def main():
    cases = json.load(sys.stdin)
    json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
