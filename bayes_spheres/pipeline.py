"""One run of the study: data -> model -> inference -> ensemble -> attack -> metrics.

:func:`run` is plain Python over a composed config, so tests call it directly; ``app.py``
is only the Hydra entry point around it. A run is a table of stages (:func:`stages`), each a
function of the :class:`Cell` that carries what earlier stages made, timed under its name;
the run folder's files and rules are :mod:`bayes_spheres.run_folder`'s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bayes_spheres import metrics as M
from bayes_spheres.attack import AdversarialPoints
from bayes_spheres.attack.strongest import strongest
from bayes_spheres.config import ConfigError, Plan, validate
from bayes_spheres.data import SphereData
from bayes_spheres.inference import Posterior
from bayes_spheres.io import atomic_write_json
from bayes_spheres.progress import switch_bars
from bayes_spheres.run_folder import (
    METRICS_FILE,
    ForeignRunError,
    claim,
    config_digest,
    points_file,
    reusable,
    sweep_cell,
)
from bayes_spheres.torch_context import torch_settings

log = logging.getLogger(__name__)

# The resampled ensemble (paper, Table 1) is a second fit by the same method with this seed
# offset; the first ensemble's adversarial points are scored by it.
RESAMPLE_SEED_OFFSET = 1_000_003


class Timings(dict):
    """Seconds per stage, with one log line per stage (led by the sweep cell's name in a
    sweep, where many cells share one terminal)."""

    def __init__(self, cell: str | None = None) -> None:
        super().__init__()
        self.lead = "" if cell is None else f"{cell}: "

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        log.info("%s%s ...", self.lead, stage)
        start = time.perf_counter()
        yield
        self[stage] = round(time.perf_counter() - start, 3)
        log.info("%s%s done in %.2f s", self.lead, stage, self[stage])


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one cell of the study and write its artifacts to ``out_dir``; return the metrics.

    Writes ``ensemble.npz``, ``adversarial_points.npz`` and, last, ``metrics.json``, each
    atomically. A folder that already holds a finished ``metrics.json`` made with the same
    config is left alone (a resumed sweep skips it) unless ``cfg.force`` is true; one made
    with another config is an error, so a stale result is never passed off as this run's.
    The folder is claimed while the run computes (:func:`claim`), so a second process on the
    same folder waits for this one and then skips the finished run.
    """
    plan = validate(cfg)
    digest = config_digest(cfg)
    out = Path(out_dir) if out_dir is not None else _hydra_output_dir()
    force = bool(cfg.get("force", False))
    done = None if force else _reusable(out, digest)
    if done is None:
        out.mkdir(parents=True, exist_ok=True)
        with claim(out):
            # another process may have finished this cell while this one waited for it
            done = None if force else _reusable(out, digest)
            if done is None:
                return _run_claimed(cfg, plan, out, digest)
    log.info("%s already holds a finished run; skipping (force=true reruns it)", out)
    _print_outside_sweeps(done, out)
    return done


def _reusable(out: Path, digest: str) -> dict[str, Any] | None:
    try:
        return reusable(out, digest)
    except ForeignRunError as err:
        raise ConfigError(str(err)) from err


def _run_claimed(cfg: DictConfig, plan: Plan, out: Path, digest: str) -> dict[str, Any]:
    # the dtype for tensors Pyro creates without a template
    with torch_settings(cfg.get("threads") or None, plan.dtype):
        result = _run(cfg, plan, out, digest)
    _print_outside_sweeps(result, out)
    return result


@dataclass
class Cell:
    """One run in progress: what its stages read and write, in the order they run."""

    cfg: DictConfig
    plan: Plan
    out: Path
    digest: str
    data: SphereData | None = None
    posterior: Posterior | None = None
    points: AdversarialPoints | None = None  # the configured attack's
    extra_attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    same_restarts: list[AdversarialPoints] = field(default_factory=list)
    best: AdversarialPoints | None = None  # the strongest attack's
    worst_case: dict[str, Any] | None = None
    resampled: float | None = None
    result: dict[str, Any] = field(default_factory=dict)


def load_data(c: Cell) -> None:
    c.data = c.plan.data.load(c.plan.dtype, c.plan.device)


def infer(c: Cell) -> None:
    """The fit, and its files: the ensemble, posterior.nc (with the pointwise log-likelihood
    unless ``log_likelihood=none``) and the method's own (``Posterior.save``)."""
    c.posterior = _fit(c.plan, c.data, c.cfg.members, c.cfg.seed)
    log_likelihood, observed = None, None
    if c.plan.log_likelihood_dtype is not None:
        log_likelihood, observed = c.plan.model.pointwise_log_likelihood(
            c.posterior.samples, c.data.phi_train, c.data.y_train
        )
    c.posterior.save(c.out, log_likelihood, observed, c.plan.log_likelihood_dtype or "float64")


def attack(c: Cell) -> None:
    c.points = c.plan.attack(
        c.posterior.ensemble, radii=c.data.radii, seed=c.cfg.seed, **c.plan.attack_settings
    )
    c.points.save(c.out / points_file())
    c.same_restarts.append(c.points)


def extra_attack(c: Cell, name: str) -> None:
    """One of ``extra_attacks`` on the same ensemble, reported beside the main attack."""
    run_attack, settings = c.plan.extra_attacks[name]
    found = run_attack(c.posterior.ensemble, radii=c.data.radii, seed=c.cfg.seed, **settings)
    found.save(c.out / points_file(name))
    c.extra_attacks[name] = {
        "adversarial_error": M.adversarial_error(found),
        "adversarial_error_max": M.adversarial_error_max(found),
        "adversarial_error_by_sphere": M.adversarial_error_by_sphere(found),
    }
    if torch.equal(found.label, c.points.label):  # the same restarts (not e.g. vertex)
        c.same_restarts.append(found)


def attack_strongest(c: Cell) -> None:
    c.best = strongest(c.posterior.ensemble, c.same_restarts, c.plan.polish)
    c.best.save(c.out / points_file("best"))


def certificate(c: Cell) -> None:
    c.worst_case = M.worst_case_by_sphere(
        c.posterior.ensemble, c.data.radii, found=c.best, settings=c.plan.certificate
    )


def resample(c: Cell) -> None:
    """The resampled error (paper, Table 1): a second fit by the same method, another seed,
    scores the first ensemble's adversarial points."""
    second = _fit(c.plan, c.data, c.cfg.members, c.cfg.seed + RESAMPLE_SEED_OFFSET)
    c.resampled = M.resampled_error(c.points, second.ensemble)


def metrics(c: Cell) -> None:
    ensemble, data, posterior = c.posterior.ensemble, c.data, c.posterior
    c.result = {
        "model": str(c.plan.model.name),
        "inference": c.plan.inference_name,
        "attack": c.plan.attack_name,
        "seed": c.cfg.seed,
        "dim": data.dim,
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "members": ensemble.size,
        "avg_confidence": M.avg_confidence(ensemble, data.x_val, data.y_val),
        "validation_error": M.validation_error(ensemble, data.x_val, data.y_val),
        "adversarial_error": M.adversarial_error(c.points),
        "adversarial_error_max": M.adversarial_error_max(c.points),
        "adversarial_error_by_sphere": M.adversarial_error_by_sphere(c.points),
        "adversarial_error_best": M.adversarial_error_summary(c.best),
        "worst_case_by_sphere": c.worst_case,
        "resampled_error": c.resampled,
        "inference_info": posterior.info,
        "extra_attacks": c.extra_attacks,
        "row": OmegaConf.to_container(c.cfg.row) if c.cfg.get("row") else None,
        "config_digest": c.digest,
    }
    # MCMC convergence (rhat_max, ess_bulk_min, ...) also at the top level.
    c.result.update(posterior.info.get("convergence", {}))


Stage = Callable[[Cell], None]


def stages(plan: Plan) -> list[tuple[str, Stage]]:
    """The run's stages in order, each timed under its name in ``metrics.json``."""
    extra = [(f"attack_{name}", partial(extra_attack, name=name)) for name in plan.extra_attacks]
    return [
        ("data", load_data),
        ("inference", infer),
        ("attack", attack),
        *extra,
        ("attack_strongest", attack_strongest),
        ("certificate", certificate),
        *([("resample", resample)] if plan.resample else []),
        ("metrics", metrics),
    ]


def _run(cfg: DictConfig, plan: Plan, out: Path, digest: str) -> dict[str, Any]:
    sweep = sweep_cell(out)
    timings = Timings(sweep)
    start = time.perf_counter()
    # bars in a single run; in a sweep, the stage lines and bayes_spheres/progress.py. Switched
    # once for the process: every bar reads it as it is drawn (a sweep's cells run bars-off)
    switch_bars(bool(cfg.get("progress", True)) and sweep is None)
    cell = Cell(cfg, plan, out, digest)
    for name, stage in stages(plan):
        with timings(name):
            stage(cell)
    result = {**cell.result, "timings": {**timings, "total": round(time.perf_counter() - start, 3)}}
    atomic_write_json(out / METRICS_FILE, result)
    log.info("wrote %s", out / METRICS_FILE)
    return result


def _fit(plan: Plan, data: SphereData, members: int, seed: int) -> Posterior:
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    return plan.fit(plan.model, data, members=members, seed=seed, **plan.fit_settings)


def _print_outside_sweeps(metrics: dict[str, Any], out: Path) -> None:
    """A single run prints its metrics; a sweep's cells leave theirs in their folders."""
    if sweep_cell(out) is None:
        print(json.dumps(metrics, sort_keys=True), flush=True)


def _hydra_output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)
