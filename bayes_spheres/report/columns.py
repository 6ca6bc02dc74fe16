"""What the tables read from one run's metrics (the keys a run writes into ``metrics.json``:
``bayes_spheres/metrics.py``'s, its timings and its inference's diagnostics)."""

from __future__ import annotations

from collections.abc import Callable

from bayes_spheres.report.runs import Run

# (key in the table, label, how to read it from one run's metrics; None where it lacks it)
Column = tuple[str, str, Callable[[Run], float | None]]

# Table 1's columns.
COLUMNS: list[Column] = [
    ("avg_confidence", "avg. confidence", lambda r: r["avg_confidence"]),
    ("adversarial_error", "adv. error", lambda r: r["adversarial_error"]),
    ("resampled_error", "resampled error", lambda r: r["resampled_error"]),
    ("adv_inner", "adv. inner", lambda r: r["adversarial_error_by_sphere"]["inner"]["mean"]),
    ("adv_outer", "adv. outer", lambda r: r["adversarial_error_by_sphere"]["outer"]["mean"]),
    ("adv_max", "adv. max", lambda r: r["adversarial_error_max"]),
    ("time_s", "time (s)", lambda r: r["timings"].get("total", sum(r["timings"].values()))),
]


def _both_spheres(run: Run, key: str) -> float | None:
    worst = run.get("worst_case_by_sphere")
    return None if not worst else (worst["inner"][key] + worst["outer"][key]) / 2


def _strongest(run: Run) -> float | None:
    found = run.get("adversarial_error_best")
    return None if found is None else found["mean"]


def _strongest_best_point(run: Run) -> float | None:
    """The worst point any attack found, per sphere (max over restarts), mean of the two."""
    spheres = (run.get("adversarial_error_best") or {}).get("by_sphere")
    if spheres is None:
        return None
    return (spheres["inner"]["max"] + spheres["outer"]["max"]) / 2


def _bound_gap(run: Run) -> float | None:
    """How far the certified bound is above the worst point found, per sphere, mean of two:
    the width of the interval the true worst case lies in."""
    bound, found = _both_spheres(run, "certified_bound"), _strongest_best_point(run)
    return None if bound is None or found is None else bound - found


def _extra(run: Run, name: str) -> float | None:
    found = (run.get("extra_attacks") or {}).get(name)
    return None if found is None else found["adversarial_error"]


# How strong is the attack? Other attacks on the same ensemble (extra_attacks), the strongest
# attack (per restart the best point of all of them, polished) and the exact bounds: the best
# vertex is a point any attack could find; the certified bound (bayes_spheres/certificate.py,
# averaged over the two spheres) no attack can exceed.
ATTACK_COLUMNS: list[Column] = [
    ("adv_simplex", "simplex attack", lambda r: _extra(r, "simplex")),
    ("adv_best", "strongest attack", _strongest),
    ("best_vertex", "best vertex", lambda r: _both_spheres(r, "best_vertex")),
    ("certified_bound", "certified bound", lambda r: _both_spheres(r, "certified_bound")),
    ("adv_best_max", "strongest, worst point", _strongest_best_point),
    ("bound_gap", "bound - worst point", _bound_gap),
]


def readers(columns: list[Column]) -> dict[str, Callable[[Run], float | None]]:
    """``{key: how to read it}`` of ``columns``, for ``runs.runs_frame``."""
    return {key: read for key, _, read in columns}
