"""The candidate readings of the paper's "adversarial error" side by side, per setting
(``bayes-spheres-report DIR --readings``; docs/adversarial-error.md)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from bayes_spheres.report.markdown import markdown_table
from bayes_spheres.report.runs import Run, group_by_setting
from bayes_spheres.report.summary import mean_se

READINGS: dict[str, Callable[[Run], float]] = {
    "mean, both spheres": lambda r: r["adversarial_error"],
    "inner sphere": lambda r: r["adversarial_error_by_sphere"]["inner"]["mean"],
    "outer sphere": lambda r: r["adversarial_error_by_sphere"]["outer"]["mean"],
    "max": lambda r: r["adversarial_error_max"],
    "exact worst, inner": lambda r: r["worst_case_by_sphere"]["inner"]["best_vertex"],
    "exact worst, outer": lambda r: r["worst_case_by_sphere"]["outer"]["best_vertex"],
}
# The table's columns after setting and seeds: every run must have each one.
SUMMARISED: dict[str, Callable[[Run], float]] = {
    "avg. confidence": lambda r: r["avg_confidence"],
    **READINGS,
}


def readings_table(runs: list[Run], paper: float | None = None, per_seed: bool = False) -> str:
    """Markdown: each candidate reading of "adversarial error", mean +- s.e. over seeds."""
    groups = group_by_setting(runs, ignore=() if per_seed else ("seed",))
    lines = [
        [key, str(len(group)), *(mean_se([read(r) for r in group]) for read in SUMMARISED.values())]
        for key, group in groups.items()
    ]
    text = markdown_table(pd.DataFrame(lines, columns=["setting", "seeds", *SUMMARISED]))
    if paper is not None:
        text += f"\n\nPaper, Table 1: adversarial error {paper:.3f}."
    return text
