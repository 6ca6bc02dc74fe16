"""Attack saved ensembles with PGD and with the simplex attack; print both per sphere.

    python scripts/compare_attacks.py RUN_DIR [RUN_DIR ...] [--restarts 100]
        [--vertex-starts 10] [--seed 0] [--device cpu] [--threads 1] [--json out.jsonl]

For each run folder (``ensemble.npz`` and ``.hydra/config.yaml``, as the pipeline writes them)
it runs ``pgd`` with the run's resolved attack settings (step 1e-4 for SVI/MCMC, 0.01
otherwise, as the run used; the defaults of conf/attack/pgd.yaml where the run did not use
pgd) and ``simplex`` with the defaults of conf/attack/simplex.yaml, both from the same seed
(the same random starts), and prints per sphere: mean and max wrong-class probability of
each attack (for simplex also the mean over its random starts alone, without the vertex
starts), the best vertex, the certified bound, and the seconds each attack took. The numbers
in the run's own ``adversarial_points.npz`` are printed beside them as a check.

Used for docs/adversarial-error.md, "A structure-aware attack".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from bayes_spheres import metrics as M
from bayes_spheres.attack import AdversarialPoints, PGDSettings, pgd, simplex
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.progress import switch_bars

PGD_SETTINGS = ("step_size", "warmup_steps", "max_steps", "tol", "patience", "backtrack")


def pgd_settings(run_cfg: Any) -> dict[str, Any]:
    """The run's resolved pgd settings; pgd's defaults (= conf/attack/pgd.yaml) otherwise."""
    defaults = {k: v for k, v in dataclasses.asdict(PGDSettings()).items() if k in PGD_SETTINGS}
    attack = run_cfg.get("attack") if run_cfg is not None else None
    # runs saved before the attack's name was read off its target carry a `name` key, and the
    # method's attack step inside `inference` rather than beside it in `method`
    is_pgd = attack is not None and (
        attack.get("name") == "pgd"
        or str(attack.get("_target_", "")).endswith((".pgd", ".PGDSettings"))
    )
    if not is_pgd:
        method = (run_cfg.get("method") or run_cfg.get("inference") or {}) if run_cfg else {}
        step = method.get("attack_step_size")
        return defaults | ({"step_size": step} if step is not None else {})
    return defaults | {k: attack[k] for k in PGD_SETTINGS if k in attack}


def by_sphere(points: AdversarialPoints, rows: torch.Tensor | None = None) -> dict[str, Any]:
    """Mean and max wrong-class probability per sphere, over ``rows`` (a mask) if given."""
    out = {}
    for name, label in M.SPHERES.items():
        keep = points.label == label
        if rows is not None:
            keep &= rows
        p = points.wrong_prob[keep]
        out[name] = {"mean": float(p.mean()), "max": float(p.max())} if p.numel() else None
    return out


def random_start_rows(points: AdversarialPoints, restarts: int, vertex_starts: int) -> torch.Tensor:
    """Mask of the simplex attack's restarts that began at random points (not at vertices):
    per sphere the first ``restarts - vertex_starts`` rows (see ``simplex``)."""
    within = torch.arange(len(points.label)) % restarts
    return within < restarts - vertex_starts


def compare(
    run_dir: Path, restarts: int, vertex_starts: int, seed: int, device: str
) -> dict[str, Any]:
    cfg_file = run_dir / ".hydra" / "config.yaml"
    run_cfg = OmegaConf.load(cfg_file) if cfg_file.is_file() else None
    radii = (float(run_cfg.data.r_inner), float(run_cfg.data.r_outer)) if run_cfg else (1.0, 1.3)
    ensemble = Ensemble.load(run_dir / "ensemble.npz").to(device)
    settings = pgd_settings(run_cfg)
    result: dict[str, Any] = {
        "run": str(run_dir),
        "members": ensemble.size,
        "dim": ensemble.dim,
        "pgd_settings": settings,
    }
    start = time.perf_counter()
    p = pgd(ensemble, radii, restarts_per_sphere=restarts, seed=seed, **settings)
    result["pgd"] = by_sphere(p) | {"seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    s = simplex(
        ensemble,
        radii,
        restarts_per_sphere=restarts,
        vertex_starts=vertex_starts,
        seed=seed,
    )
    result["simplex"] = by_sphere(s) | {"seconds": round(time.perf_counter() - start, 1)}
    result["simplex_random_starts"] = by_sphere(s, random_start_rows(s, restarts, vertex_starts))
    result["worst_case"] = M.worst_case_by_sphere(ensemble, radii)
    saved = run_dir / "adversarial_points.npz"
    if saved.is_file():
        result["saved_points"] = by_sphere(AdversarialPoints.load(saved))
    return result


def print_table(r: dict[str, Any]) -> None:
    step = r["pgd_settings"]["step_size"]
    print(f"\n{r['run']}  (S = {r['members']}, D = {r['dim']}, pgd step {step})")
    print(
        "sphere | pgd mean / max | simplex mean / max (random starts: mean) | best vertex | "
        "certified bound | saved points (the run's own attack) mean / max"
    )
    for name in M.SPHERES:
        pg, sx, sr, wc = (
            r[k][name] for k in ("pgd", "simplex", "simplex_random_starts", "worst_case")
        )
        sr_txt = f"{sr['mean']:.4f}" if sr else "-"
        saved = r.get("saved_points", {}).get(name)
        saved_txt = f"{saved['mean']:.4f} / {saved['max']:.4f}" if saved else "-"
        print(
            f"{name} | {pg['mean']:.4f} / {pg['max']:.4f} | {sx['mean']:.4f} / {sx['max']:.4f} "
            f"({sr_txt}) | {wc['best_vertex']:.4f} | {wc['certified_bound']:.4f} | "
            f"{saved_txt}"
        )
    print(f"seconds: pgd {r['pgd']['seconds']}, simplex {r['simplex']['seconds']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--restarts", type=int, default=100, help="restarts per sphere")
    parser.add_argument(
        "--vertex-starts",
        type=int,
        default=10,  # what docs/adversarial-error.md measured; the study's simplex attack: 0
        help="simplex restarts per sphere that start at the best vertices",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    args = parser.parse_args()
    switch_bars(False)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        r = compare(run_dir, args.restarts, args.vertex_starts, args.seed, args.device)
        print_table(r)
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
