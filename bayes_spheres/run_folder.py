"""The run folder: what one run of the study leaves behind, and how processes share it.

The bottom of the house: the pipeline writes run folders, the sweep's progress lines and the
report read them, and this module, which imports none of those, is the one place that knows
their files and rules:

- the files (:data:`METRICS_FILE` written last, so a folder that has it holds a finished
  run; the ensemble, the posterior, the adversarial points);
- the config digest (:func:`config_digest`): a finished run is reused only by the same config
  (:func:`reusable`), and one made with another config is refused, never passed off as this
  one's;
- the claim (:func:`claim`): an OS lock on the folder while a process computes its run, so
  two processes never compute, or write, the same run;
- where a folder sits in a sweep (:func:`sweep_cell`), and the folder of Figure 1's own fits
  (:data:`FIGURE_FITS`), which are not rows of a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"  # written last: its presence marks a finished run
LOCK_FILE = ".lock"  # held while a process computes the run in its folder (see claim)
ENSEMBLE_FILE = "ensemble.npz"
POSTERIOR_FILE = "posterior.nc"  # draws, sample stats and pointwise log-likelihood (ArviZ)
POINTS_FILE = "adversarial_points.npz"  # the configured attack's; _<name> for the others
# Figure 1's own fits are run folders under this folder of its sweep's
# (conf/experiment/figure1.yaml); they are not rows of a table.
FIGURE_FITS = "figure1_fits"
# Settings that do not change a run's numbers: left out of its config digest.
NOT_IN_DIGEST = frozenset({"force", "progress", "threads", "hydra"})


class ForeignRunError(ValueError):
    """A run folder holds a finished run made with another config."""


def points_file(attack: str | None = None) -> str:
    """The file of an attack's points: the configured attack's, or the extra one ``attack``
    (``best``: the strongest attack's)."""
    return POINTS_FILE if attack is None else POINTS_FILE.replace(".npz", f"_{attack}.npz")


def finished_metrics(out_dir: Path) -> dict[str, Any] | None:
    """The metrics of a finished run in ``out_dir``, or None (metrics.json is written last)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def config_digest(cfg: DictConfig) -> str:
    """A fingerprint of everything in ``cfg`` that can change a run's numbers."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree = {k: v for k, v in tree.items() if k not in NOT_IN_DIGEST}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def reusable(out: Path, digest: str) -> dict[str, Any] | None:
    """The finished run in ``out`` if it was made with the config of ``digest``; None if the
    folder holds no finished run; :class:`ForeignRunError` if it holds one of another config."""
    done = finished_metrics(out)
    if done is not None and done.get("config_digest", digest) != digest:
        raise ForeignRunError(
            f"{out} holds a finished run made with another config (digest "
            f"{done['config_digest']}, this config {digest}); choose another folder, or "
            "force=true to replace it"
        )
    return done


@contextmanager
def claim(out: Path) -> Iterator[None]:
    """Hold the run folder ``out`` for this process: an exclusive lock on ``out/.lock``
    (``filelock``: an OS lock, so a process that dies, even by SIGKILL, releases it and leaves
    no stale claim). A second process that reaches a claimed folder waits for it, then finds
    the finished run and skips it: two sweeps on one folder never run a cell twice."""
    lock = FileLock(Path(out) / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s is being computed by another process; waiting for it", out)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def sweep_cell(out: Path) -> str | None:
    """The run folder ``out`` relative to its sweep folder (``mcmc/seed1``) when this
    process runs a sweep's cell or its callbacks (Figure 1's fits); None in a single run,
    without Hydra, or for a folder outside the sweep's."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    try:
        return str(Path(out).resolve().relative_to(Path(hydra.sweep.dir).resolve()))
    except ValueError:
        return None
