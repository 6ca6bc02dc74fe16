"""The ``bayes-spheres`` command: Hydra composes the config, :func:`pipeline.run` does the work."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bayes_spheres.config import ConfigError
from bayes_spheres.pipeline import run

# conf/ sits beside the package at the top of the repository (an editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as err:
        print(f"bayes-spheres: config error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
