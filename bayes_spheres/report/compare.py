"""``bayes-spheres-report --compare DIR...``: ``az.compare`` (PSIS-LOO) over run folders'
``posterior.nc``, with each run's Pareto k diagnostics.

PSIS-LOO (Vehtari, Gelman and Gabry 2017) estimates each run's expected log predictive
density from its pointwise log-likelihood; its Pareto k says where the importance weights
behind it are too heavy-tailed to trust (k > 0.7). On separable data a few draws dominate
every point's weights, so k is high for most points: the table says so beside the ranking.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from bayes_spheres.run_folder import METRICS_FILE

POSTERIOR_FILE = "posterior.nc"
K_UNRELIABLE = 0.7  # Vehtari et al. (2017): above this the PSIS estimate is unreliable


def _name(run_dir: Path) -> str:
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        label = (metrics.get("row") or {}).get("label") or (
            f"{metrics.get('model')} / {metrics.get('inference')}"
        )
        return f"{label} [{run_dir.name}]"
    return str(run_dir)


def _load(run_dir: Path):
    import arviz as az

    path = run_dir / POSTERIOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no posterior file (is {run_dir} a run folder?)")
    idata = az.from_netcdf(str(path))
    if "log_likelihood" not in idata.groups():
        raise ValueError(
            f"{path} has no log_likelihood group (written with log_likelihood=none, or by an "
            "older version): rerun the run with log_likelihood=float64"
        )
    return idata


def compare_runs(run_dirs: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(az.compare's table, per run: elpd_loo, its s.e., p_loo, max k and the share of
    points with k > 0.7)`` over the runs in ``run_dirs`` (at least two)."""
    import arviz as az

    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2:
        raise ValueError(f"--compare needs at least two run folders, got {len(dirs)}")
    runs = {_name(d): _load(d) for d in dirs}
    if len(runs) < len(dirs):
        raise ValueError(f"two of the run folders have the same name: {[str(d) for d in dirs]}")
    diagnostics = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k warnings: in the table below
        warnings.simplefilter("ignore", RuntimeWarning)
        comparison = az.compare(runs, ic="loo")
        for name, idata in runs.items():
            loo = az.loo(idata, pointwise=True)
            k = loo.pareto_k.values
            diagnostics.append(
                {
                    "run": name,
                    "elpd_loo": float(loo.elpd_loo),
                    "se": float(loo.se),
                    "p_loo": float(loo.p_loo),
                    "k_max": float(k.max()),
                    f"share k > {K_UNRELIABLE}": float((k > K_UNRELIABLE).mean()),
                    "points": int(k.size),
                }
            )
    return comparison, pd.DataFrame(diagnostics)


def compare_markdown(run_dirs: list[str | Path]) -> str:
    """Both tables of :func:`compare_runs` as text, with what the k diagnostics allow."""
    comparison, diagnostics = compare_runs(run_dirs)
    unreliable = diagnostics[f"share k > {K_UNRELIABLE}"]
    verdict = (
        f"PSIS-LOO is unreliable for {int((unreliable > 0).sum())} of {len(diagnostics)} runs "
        f"(points with Pareto k > {K_UNRELIABLE}: up to {unreliable.max():.0%}); on separable "
        "data the ranking above is not evidence, the marginal likelihood is "
        "(bayes_spheres/evidence/)."
        if (unreliable > 0).any()
        else f"Every point's Pareto k is at most {K_UNRELIABLE}: PSIS-LOO is reliable here."
    )
    return (
        "az.compare (PSIS-LOO, elpd: expected log predictive density):\n\n"
        + comparison.to_string()
        + "\n\nPareto k per run:\n\n"
        + diagnostics.to_string(index=False)
        + "\n\n"
        + verdict
        + "\n"
    )
