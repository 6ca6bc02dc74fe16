"""The marginal likelihood of each prior on the study's data, and the log Bayes factors.

    python scripts/evidence.py --models flat shared_mean hier_centered --seeds 0 1 2
    python scripts/evidence.py --report            # the table from what is saved

Each (model, seed) is the configured model (``conf/model/<name>.yaml``, composed with
``scale=paper`` and any ``--override``) on that seed's training set, its ``log p(y)`` by
annealed importance sampling (``bayes_spheres/evidence.py``): slice updates along
Hamiltonian trajectories of the tempered fast target, with the schedule fitted to the model
by a pilot run. A hierarchical model's scale ``s`` is integrated out by Gauss-Hermite
quadrature over evidences given ``s`` (``evidence_over_site``). Results go to
``OUT/<model>/seed<seed>.json`` (claimed with a lock, written once: a finished cell is
skipped); ``--report`` prints per seed ``log p(y)`` +- its standard error and
``log p(y | model) - log p(y | flat)``.

Used for docs/model-comparison.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from statistics import mean, stdev

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bayes_spheres import config  # noqa: F401  (registers the settings nodes conf/ composes)
from bayes_spheres.data import load_spheres
from bayes_spheres.evidence import annealed_importance_sampling, evidence_over_site
from bayes_spheres.models import Hierarchical
from bayes_spheres.run_folder import claim

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def estimate(name: str, seed: int, overrides: list[str], settings: dict, nodes: int) -> dict:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"model={name}", f"seed={seed}", "scale=paper", *overrides],
        )
    d = cfg.data
    data = load_spheres(d.dim, d.n_train, 10, d.r_inner, d.r_outer, seed=d.seed)
    model = instantiate(cfg.model)
    start = time.perf_counter()
    args = (data.phi_train, data.y_train)
    out = {"model": name, "seed": seed, "dim": d.dim, "n_train": d.n_train, **settings}
    if isinstance(model, Hierarchical):
        result = evidence_over_site(model, "s", *args, nodes=nodes, seed=seed, **settings)
        out["nodes"] = {
            "s": result.values.tolist(),
            "log_coefficient": result.log_coefficients.tolist(),
            "log_evidence": [e.log_evidence for e in result.conditional],
            "standard_error": [e.standard_error for e in result.conditional],
            "effective_particles": [e.effective_particles for e in result.conditional],
        }
        out["info"] = result.conditional[0].info
    else:
        result = annealed_importance_sampling(model, *args, seed=seed, **settings)
        out["effective_particles"] = result.effective_particles
        out["info"] = result.info
    out["log_evidence"] = result.log_evidence
    out["standard_error"] = result.standard_error
    out["seconds"] = time.perf_counter() - start
    return out


def report(out_dir: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*/seed*.json"))]
    if not rows:
        raise SystemExit(f"{out_dir}: no results (run without --report first)")
    by = {(r["model"], r["seed"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: (m != "flat", m))
    lines = [
        "| prior | seed | log p(y) | s.e. | log p(y) - log p(y, flat) | particles x temperatures "
        "| effective particles | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    gaps: dict[str, list[float]] = {}
    for model in models:
        for seed in sorted(s for m, s in by if m == model):
            r = by[(model, seed)]
            flat = by.get(("flat", seed))
            gap = "" if flat is None else r["log_evidence"] - flat["log_evidence"]
            if flat is not None and model != "flat":
                gaps.setdefault(model, []).append(gap)
                error = math.hypot(r["standard_error"], flat["standard_error"])
                gap = f"{gap:.1f} +- {error:.1f}"
            elif model == "flat":
                gap = "0"
            ess = r.get("effective_particles")
            if ess is None:  # hierarchical: the node with the largest share of p(y)
                nodes = r["nodes"]
                pairs = zip(nodes["log_coefficient"], nodes["log_evidence"], strict=True)
                terms = [c + e for c, e in pairs]
                ess = nodes["effective_particles"][terms.index(max(terms))]
            lines.append(
                f"| {model} | {seed} | {r['log_evidence']:.2f} | {r['standard_error']:.2f} "
                f"| {gap} | {r['particles']} x {r['temperatures']} | {ess:.1f} "
                f"| {r['seconds']:.0f} |"
            )
    for model, values in gaps.items():
        spread = f" +- {stdev(values):.1f} (sd over seeds)" if len(values) > 1 else ""
        lines.append(f"\nlog Bayes factor {model} vs flat: {mean(values):.1f}{spread}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["flat", "shared_mean", "hier_centered"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--override", nargs="*", default=[], help="config overrides")
    parser.add_argument("--particles", type=int, default=32)
    parser.add_argument("--temperatures", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=5, help="hierarchical: quadrature nodes")
    parser.add_argument("--out", type=Path, default=Path("outputs/evidence"))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report(args.out))
        return
    torch.set_num_threads(1)
    settings = {"particles": args.particles, "temperatures": args.temperatures}
    for name in args.models:
        for seed in args.seeds:
            cell = args.out / name / f"seed{seed}"
            cell.mkdir(parents=True, exist_ok=True)
            result_file = cell.with_suffix(".json")
            with claim(cell):
                if result_file.exists():
                    print(f"{result_file} exists; skipping")
                    continue
                result = estimate(name, seed, args.override, settings, args.nodes)
                partial = result_file.with_suffix(f".{os.getpid()}.tmp")
                partial.write_text(json.dumps(result, indent=1))
                partial.replace(result_file)  # whole or not at all
            print(json.dumps({k: result[k] for k in ("model", "seed", "log_evidence",
                                                      "standard_error", "seconds")}))  # fmt: skip


if __name__ == "__main__":
    main()
