"""The strongest attack and the certified bound for saved run folders, without refitting or
rerunning their attacks.

    python scripts/certify.py RUN_DIR [RUN_DIR ...] [--polish-steps N] [--temperatures T ...] \
        [--time-limit 60] [--max-nodes 20000] [--json out.jsonl]

For each run folder (``ensemble.npz`` and the ``adversarial_points*.npz`` the pipeline
writes) it takes, per restart, the best point of the saved attacks with the same restarts,
polishes it as the run did (``bayes_spheres/attack/strongest.py``; ``--polish-steps`` and
``--temperatures`` replace the run's steps per stage and smoothing temperatures) and bounds
the worst case on each sphere by branch and bound (``bayes_spheres/branch_bound.py``,
``--time-limit`` seconds and at most ``--max-nodes`` regions per sphere). Prints per sphere:
the best of each saved attack, the strongest attack (mean and max over restarts), the
certified bound and how it fell with seconds and nodes, the envelope's bound without
branching, the members' bound, and the seconds polishing and the certificate took. Anyone
can recheck a run's bound this way from its saved ensemble alone.

With ``--boxes``, also the bound of single regions around the strongest point (every
``u_d`` within ``rho / D`` of the point's, ``rho`` = 1, 0.1, 0.01, 0.001; no branching): how
small a region must be before the relaxation says something there.

Used for docs/adversarial-error.md, "The strongest attack and the certificate".
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bayes_spheres import metrics as M
from bayes_spheres.attack import AdversarialPoints
from bayes_spheres.attack.strongest import polish_of_run, strongest
from bayes_spheres.branch_bound import CertificateSettings, box_bound
from bayes_spheres.data import INNER, OUTER
from bayes_spheres.ensemble import Ensemble

BOX_WIDTHS = (1.0, 0.1, 0.01, 0.001)


def certify(
    run_dir: Path,
    polish_steps: int | None,
    settings: CertificateSettings,
    boxes: bool = False,
    temperatures: list[float] | None = None,
) -> dict:
    ensemble = Ensemble.load(run_dir / "ensemble.npz")
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = config.data
    polish = polish_of_run(config)
    if polish_steps is not None:
        polish = replace(polish, steps=polish_steps)
    if temperatures is not None:
        polish = replace(polish, temperatures=tuple(temperatures))
    radii = (float(data.r_inner), float(data.r_outer))
    saved = {
        p.stem: AdversarialPoints.load(p) for p in sorted(run_dir.glob("adversarial_points*.npz"))
    }
    saved.pop("adversarial_points_best", None)
    first = saved["adversarial_points"]
    same = [p for p in saved.values() if torch.equal(p.label, first.label)]
    start = time.perf_counter()
    best = strongest(ensemble, same, polish)
    polish_s = time.perf_counter() - start
    start = time.perf_counter()
    worst = M.worst_case_by_sphere(ensemble, radii, found=best, settings=settings, timed=True)
    out = {
        "run": str(run_dir),
        "members": ensemble.size,
        "dim": ensemble.dim,
        "polish": {"steps": polish.steps, "temperatures": list(polish.temperatures)},
        "polish_s": polish_s,
        "certificate_s": time.perf_counter() - start,
    }
    for name, label in (("inner", INNER), ("outer", OUTER)):
        mine = best.label == label
        bound = worst[name]
        out[name] = {
            **{k: float(p.wrong_prob[p.label == label].max()) for k, p in saved.items()},
            "strongest_mean": float(best.wrong_prob[mine].mean()),
            "strongest_max": float(best.wrong_prob[mine].max()),
            "certified_bound": bound["certified_bound"],
            "envelope_bound": bound["envelope_bound"],
            "members_bound": bound["members_bound"],
            "bound_minus_strongest": bound["certified_bound"] - float(best.wrong_prob[mine].max()),
            "certificate_seconds": bound["certificate_seconds"],
            "certificate_nodes": bound["certificate_nodes"],
            "certificate_history": bound["certificate_history"],
        }
        if boxes:
            k = int(best.wrong_prob[mine].argmax())
            u = best.x[mine][k].double().square()
            u = u / u.sum()
            out[name]["box_bounds"] = {
                rho: box_bound(
                    ensemble, radii[int(label == OUTER)], label, u - rho / len(u), u + rho / len(u)
                )
                for rho in BOX_WIDTHS
            }
    out["strongest"] = M.adversarial_error_summary(best)["mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--polish-steps", type=int, default=None, help="default: the run's")
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="*",
        default=None,
        help="smoothing temperatures (default: the run's; the flag alone: none)",
    )
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per sphere")
    parser.add_argument("--max-nodes", type=int, default=20_000, help="regions per sphere")
    parser.add_argument("--boxes", action="store_true", help="bounds of boxes around the best")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = CertificateSettings(time_limit_s=args.time_limit, max_nodes=args.max_nodes)
    for run_dir in args.run_dirs:
        result = certify(run_dir, args.polish_steps, settings, args.boxes, args.temperatures)
        print(json.dumps(result, indent=1))
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
