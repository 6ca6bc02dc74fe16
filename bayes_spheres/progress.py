"""One progress display per sweep.

A single run draws tqdm bars for its long loops. In a sweep (Hydra's multirun) many cells run
at once in processes or on other machines that share one terminal or log, where bars
interleave into noise; there each cell logs one line per stage, named by its folder (see
``bayes_spheres/pipeline.py``), and :class:`SweepProgress` logs one line as each cell ends::

    mcmc/seed1: inference done in 131.40 s
    sweep: 5/21 cells finished (3 in this sweep), 0:04:10 elapsed, about 0:13:20 left;
        mcmc/seed1 took 142.1 s

``progress=false`` silences the bars and these lines alike. The bars are switched once, in
the environment: every bar in the package is drawn unless :func:`bars_disabled` (tqdm's own
``TQDM_DISABLE``, read at call time), and the pipeline calls :func:`switch_bars` as a run
starts, so no function takes a ``progress`` argument.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from bayes_spheres.run_folder import METRICS_FILE, finished_metrics, sweep_cell

log = logging.getLogger(__name__)

SWEEP_CONFIG = "multirun.yaml"  # Hydra's sweeper saves the sweep's config here as it starts
BARS_OFF = "TQDM_DISABLE"  # tqdm's own variable, so a bar made outside the package obeys it too


def bars_disabled() -> bool:
    """Whether progress bars are off: ``TQDM_DISABLE`` is set to anything but empty, ``0`` or
    ``false`` (any case). Read at call time, so pass it to every bar as it is made (tqdm
    itself reads the variable only when it is imported)."""
    return os.environ.get(BARS_OFF, "").strip().lower() not in {"", "0", "false"}


def switch_bars(on: bool) -> None:
    """Turn progress bars off for the rest of this process when ``on`` is false; when true,
    leave the environment as it is, so a user's own ``TQDM_DISABLE=1`` still wins."""
    if not on:
        os.environ[BARS_OFF] = "1"


def sweep_size(sweep_dir: Path) -> int | None:
    """How many cells the sweep started in ``sweep_dir`` has: its sweeper's ``params`` and
    the command line's overrides, expanded by the configured sweeper as it expands them
    (Hydra's basic sweeper or a subclass, e.g. Table 1's seeds by cost; None if the sweep
    config is missing or another sweeper's)."""
    try:
        config = OmegaConf.load(sweep_dir / SWEEP_CONFIG)
        settings = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
        sweeper_class = get_class(settings.pop("_target_"))
        # by its method, not issubclass: Hydra's plugin scan re-executes plugin modules
        if not callable(getattr(sweeper_class, "split_arguments", None)):
            return None
        sweeper = sweeper_class(**settings)
        arguments = [f"{key}={value}" for key, value in (settings.get("params") or {}).items()]
        arguments += list(OmegaConf.select(config, "hydra.overrides.task") or [])
        overrides = OverridesParser.create().parse_overrides(arguments)
        return len(sweeper.split_arguments(overrides, None)[0])
    except Exception:  # a display must never fail a cell
        return None


@dataclass(frozen=True)
class SweepStatus:
    total: int | None  # cells in the sweep
    finished: int  # cells with a finished run, from this sweep or an earlier one
    finished_here: int  # of which finished since this sweep started
    started: float  # when this sweep started (seconds since the epoch)
    elapsed: float  # seconds since then

    @property
    def seconds_left(self) -> float | None:
        """Time left at this sweep's pace so far (None until a cell of it has finished)."""
        if self.total is None or not self.finished_here:
            return None
        return self.elapsed / self.finished_here * max(self.total - self.finished, 0)

    def line(self) -> str:
        total = "?" if self.total is None else str(self.total)
        text = (
            f"{self.finished}/{total} cells finished ({self.finished_here} in this sweep), "
            f"{_clock(self.elapsed)} elapsed"
        )
        left = self.seconds_left
        return text if left is None else f"{text}, about {_clock(left)} left"


def sweep_status(sweep_dir: Path, now: float) -> SweepStatus:
    """The state of the sweep in ``sweep_dir`` at time ``now`` (seconds since the epoch),
    read off its folder: its start is when Hydra saved its config, its finished cells are
    the ``metrics.json`` under it."""
    started = (sweep_dir / SWEEP_CONFIG).stat().st_mtime
    finished = list(sweep_dir.rglob(METRICS_FILE))
    return SweepStatus(
        total=sweep_size(sweep_dir),
        finished=len(finished),
        finished_here=sum(path.stat().st_mtime >= started for path in finished),
        started=started,
        elapsed=now - started,
    )


class SweepProgress(Callback):
    """Hydra callback (``hydra.callbacks.progress`` in conf/config.yaml): one line per cell
    of a sweep as it ends, in the process that ran the cell."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = HydraConfig.get()
        out = Path(hydra.runtime.output_dir)
        cell = sweep_cell(out)
        if cell is None or not config.get("progress", True):
            return
        status = sweep_status(Path(hydra.sweep.dir), datetime.datetime.now().timestamp())
        log.info("sweep: %s; %s", status.line(), _cell_outcome(cell, out, job_return, status))


def _cell_outcome(cell: str, out: Path, job_return: JobReturn, status: SweepStatus) -> str:
    if job_return.status == JobStatus.FAILED:
        return f"{cell} failed"
    metrics = finished_metrics(out)
    if metrics is None:
        return f"{cell} wrote no result"
    if (out / METRICS_FILE).stat().st_mtime < status.started:
        return f"{cell} was already finished"
    return f"{cell} took {metrics['timings']['total']:.1f} s"


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
