"""A minimal @hydra.main app: each job appends {num, overrides, cfg} as a JSON line to
$PARITY_OUT, so that defectkit's multirun expansion can be compared with Hydra's."""
import json
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    hc = HydraConfig.get()
    line = {
        "num": hc.job.num,
        "overrides": list(hc.overrides.task),
        "cfg": OmegaConf.to_container(cfg, resolve=False),
    }
    with open(os.environ["PARITY_OUT"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
