"""Attack a saved ensemble again with other attack settings, without refitting it.

Prints the adversarial error (mean over both spheres), per sphere, and the vertex bounds:

    python scripts/reattack.py RUN_DIR [--step-size 0.01] [--no-backtrack] [--restarts 100]
        [--warmup 300] [--max-steps 5000] [--tol 1e-6]

Used for docs/approximate-posteriors.md: how much a row's number depends on the attack.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bayes_spheres import metrics as M
from bayes_spheres.attack import pgd
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.progress import switch_bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step-size", type=float, default=0.01)
    parser.add_argument("--no-backtrack", action="store_true")
    parser.add_argument("--restarts", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    switch_bars(False)
    torch.set_default_dtype(torch.float64)
    ensemble = Ensemble.load(args.run_dir / "ensemble.npz")
    cfg_file = args.run_dir / ".hydra" / "config.yaml"
    data = OmegaConf.load(cfg_file).data if cfg_file.is_file() else None
    radii = (data.r_inner, data.r_outer) if data is not None else (1.0, 1.3)
    start = time.perf_counter()
    points = pgd(
        ensemble,
        radii,
        restarts_per_sphere=args.restarts,
        step_size=args.step_size,
        warmup_steps=args.warmup,
        max_steps=args.max_steps,
        tol=args.tol,
        backtrack=not args.no_backtrack,
        seed=args.seed,
    )
    result = {
        "run": str(args.run_dir),
        "step_size": args.step_size,
        "backtrack": not args.no_backtrack,
        "adversarial_error": M.adversarial_error(points),
        "by_sphere": M.adversarial_error_by_sphere(points),
        "worst_case_by_sphere": M.worst_case_by_sphere(ensemble, radii),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
