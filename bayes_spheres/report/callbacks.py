"""The Hydra callbacks that build a sweep's tables and figures when it ends
(``hydra.callbacks`` in conf/experiment/table1.yaml, figure1.yaml and scaling.yaml)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bayes_spheres.report.figure1 import figure1
from bayes_spheres.report.scaling import write_scaling
from bayes_spheres.report.table1 import write_table1

log = logging.getLogger(__package__)


class Table1Callback(Callback):
    """Hydra callback: at the end of a multirun, Table 1 in the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            text = write_table1(sweep_dir)
        except FileNotFoundError as err:
            log.warning("no table: %s", err)
            return
        log.info("wrote %s and table1.csv\n%s", sweep_dir / "table1.md", text)


class Figure1Callback(Callback):
    """Hydra callback: at the end of ``experiment=figure1``, Figure 1 in the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            paths = figure1(config.hydra.sweep.dir)
        except (FileNotFoundError, ValueError) as err:
            log.warning("no figure: %s", err)
            return
        log.info("wrote %s", ", ".join(map(str, paths)))


class ScalingCallback(Callback):
    """Hydra callback: at the end of ``experiment=scaling``, its table and plot."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            paths = write_scaling(config.hydra.sweep.dir)
        except FileNotFoundError as err:
            log.warning("no scaling plot: %s", err)
            return
        log.info("wrote %s", ", ".join(map(str, paths)))
