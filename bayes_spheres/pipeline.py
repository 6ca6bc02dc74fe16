"""One run of the study: data -> model -> inference -> ensemble -> attack -> metrics.

:func:`run` is plain Python over a composed config, so tests call it directly; ``app.py``
is only the Hydra entry point around it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bayes_spheres import metrics as M
from bayes_spheres.attack.strongest import strongest
from bayes_spheres.config import ConfigError, Plan, validate
from bayes_spheres.data import SphereData
from bayes_spheres.inference import Posterior
from bayes_spheres.io import atomic_write_json
from bayes_spheres.models import pointwise_log_likelihood
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


def _run(cfg: DictConfig, plan: Plan, out: Path, digest: str) -> dict[str, Any]:
    cell = sweep_cell(out)
    timings = Timings(cell)
    start = time.perf_counter()

    with timings("data"):
        data = plan.data.load(plan.dtype, plan.device)
    # bars in a single run; in a sweep, the stage lines above and bayes_spheres/progress.py
    progress = bool(cfg.get("progress", True)) and cell is None
    with timings("inference"):
        posterior = _fit(plan, data, cfg.members, cfg.seed, progress)
        log_likelihood, observed = None, None
        if plan.log_likelihood_dtype is not None:
            log_likelihood, observed = pointwise_log_likelihood(
                plan.model, posterior.samples, data.phi_train, data.y_train
            )
        posterior.save(out, log_likelihood, observed, plan.log_likelihood_dtype or "float64")
    ensemble = posterior.ensemble
    with timings("attack"):
        points = plan.attack(
            ensemble, radii=data.radii, seed=cfg.seed, progress=progress, **plan.attack_settings
        )
        points.save(out / points_file())
    extra_attacks, same_restarts = {}, [points]
    for name, (attack, settings) in plan.extra_attacks.items():
        with timings(f"attack_{name}"):
            found = attack(ensemble, radii=data.radii, seed=cfg.seed, progress=progress, **settings)
            found.save(out / points_file(name))
            extra_attacks[name] = {
                "adversarial_error": M.adversarial_error(found),
                "adversarial_error_max": M.adversarial_error_max(found),
                "adversarial_error_by_sphere": M.adversarial_error_by_sphere(found),
            }
        if torch.equal(found.label, points.label):  # the same restarts (not e.g. vertex)
            same_restarts.append(found)
    with timings("attack_strongest"):
        best = strongest(ensemble, same_restarts, polish_steps=plan.polish_steps)
        best.save(out / points_file("best"))
    with timings("certificate"):
        worst_case = M.worst_case_by_sphere(
            ensemble, data.radii, found=best, settings=plan.certificate
        )
    resampled = None
    if plan.resample:
        with timings("resample"):
            second = _fit(plan, data, cfg.members, cfg.seed + RESAMPLE_SEED_OFFSET, progress)
            resampled = M.resampled_error(points, second.ensemble)
    with timings("metrics"):
        result = {
            "model": str(plan.model.name),
            "inference": plan.inference_name,
            "attack": plan.attack_name,
            "seed": cfg.seed,
            "dim": data.dim,
            "n_train": len(data.x_train),
            "n_val": len(data.x_val),
            "members": ensemble.size,
            "avg_confidence": M.avg_confidence(ensemble, data.x_val, data.y_val),
            "validation_error": M.validation_error(ensemble, data.x_val, data.y_val),
            "adversarial_error": M.adversarial_error(points),
            "adversarial_error_max": M.adversarial_error_max(points),
            "adversarial_error_by_sphere": M.adversarial_error_by_sphere(points),
            "adversarial_error_best": M.adversarial_error_summary(best),
            "worst_case_by_sphere": worst_case,
            "resampled_error": resampled,
            "inference_info": posterior.info,
            "extra_attacks": extra_attacks,
            "row": OmegaConf.to_container(cfg.row) if cfg.get("row") else None,
            "config_digest": digest,
        }
        # MCMC convergence (rhat_max, ess_bulk_min, ...) also at the top level.
        result.update(posterior.info.get("convergence", {}))
    result["timings"] = {**timings, "total": round(time.perf_counter() - start, 3)}
    atomic_write_json(out / METRICS_FILE, result)
    log.info("wrote %s", out / METRICS_FILE)
    return result


def _fit(plan: Plan, data: SphereData, members: int, seed: int, progress: bool) -> Posterior:
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    return plan.fit(
        plan.model, data, members=members, seed=seed, progress=progress, **plan.fit_settings
    )


def _print_outside_sweeps(metrics: dict[str, Any], out: Path) -> None:
    """A single run prints its metrics; a sweep's cells leave theirs in their folders."""
    if sweep_cell(out) is None:
        print(json.dumps(metrics, sort_keys=True), flush=True)


def _hydra_output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)
