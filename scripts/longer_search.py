"""Is a run's strongest attack near-optimal? Attack its saved ensemble again, ``--factor``
times longer, and compare the worst points per sphere.

    python scripts/longer_search.py RUN_DIR [RUN_DIR ...] [--factor 10] [--seed 1]
        [--threads 1] [--json out.jsonl]

For each run folder (``ensemble.npz``, ``metrics.json`` and ``.hydra/config.yaml``, as the
pipeline writes them) it builds the run's own attacks from its config (``attack`` and every
``extra_attacks`` node), multiplies their restarts per sphere, warm-up steps and most steps
by ``--factor``, runs them from other random starts (``--seed``; the run used its own seed),
and takes the strongest point as the pipeline does (``attack/strongest.py``: per restart the
best point any attack found, then ``factor`` times the run's polishing steps). It prints,
per sphere, the run's worst point (``adversarial_error_best.by_sphere.<sphere>.max`` of its
``metrics.json``), the longer search's, their ratio, and the seconds the search took.
``--factor 1 --seed <the run's seed>`` repeats the run's own attacks (a check: the same worst
points).

Used for docs/adversarial-error.md, "Is the strongest attack near-optimal?".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bayes_spheres.attack.strongest import polish_of_run, strongest
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.metrics import SPHERES
from bayes_spheres.progress import switch_bars

SCALED = ("restarts_per_sphere", "warmup_steps", "max_steps")


def longer(settings: Any, factor: int) -> Any:
    """``settings`` (an attack's settings object) with ``SCALED`` multiplied by ``factor``."""
    return dataclasses.replace(
        settings, **{name: getattr(settings, name) * factor for name in SCALED}
    )


def search(run_dir: Path, factor: int, seed: int) -> dict[str, Any]:
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ensemble = Ensemble.load(run_dir / "ensemble.npz")
    radii = (float(cfg.data.r_inner), float(cfg.data.r_outer))
    nodes = {"attack": cfg.attack} | {
        f"extra_attacks.{k}": v for k, v in (cfg.get("extra_attacks") or {}).items()
    }
    seconds: dict[str, float] = {}
    found = []
    for where, node in nodes.items():
        attack = longer(instantiate(node), factor)
        start = time.perf_counter()
        points = attack(ensemble, radii, seed)
        seconds[where] = round(time.perf_counter() - start, 1)
        if not found or torch.equal(points.label, found[0].label):  # the same restarts
            found.append(points)
    start = time.perf_counter()
    polish = polish_of_run(cfg)
    best = strongest(ensemble, found, dataclasses.replace(polish, steps=polish.steps * factor))
    seconds["strongest"] = round(time.perf_counter() - start, 1)
    spheres = {}
    for name, label in SPHERES.items():
        run_worst = metrics["adversarial_error_best"]["by_sphere"][name]["max"]
        worst = float(best.wrong_prob[best.label == label].max())
        spheres[name] = {
            "run": round(run_worst, 4),
            "longer": round(worst, 4),
            "run / longer": round(run_worst / worst, 4) if worst > 0 else None,
        }
    return {
        "run": str(run_dir),
        "row": cfg.get("row", {}).get("id"),
        "factor": factor,
        "seed": seed,
        "by_sphere": spheres,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.factor < 1:
        parser.error(f"--factor={args.factor}: must be an integer >= 1")
    switch_bars(False)
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    for run_dir in args.run_dirs:
        result = search(run_dir, args.factor, args.seed)
        print(json.dumps(result), flush=True)
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
