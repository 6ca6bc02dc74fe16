"""Where a sweep's time went: seconds per stage of each row's cells, from the ``timings`` every
run writes into ``metrics.json`` (one entry per stage a run went through, and ``total``);
``bayes-spheres-report DIR --stages``."""

from __future__ import annotations

import pandas as pd

from bayes_spheres.report.markdown import markdown_table
from bayes_spheres.report.runs import Run, row_key
from bayes_spheres.report.summary import mean


def stage_names(runs: list[Run]) -> list[str]:
    """Every stage any run timed, by name, ``total`` last."""
    names = {name for run in runs for name in run.get("timings", {})} - {"total"}
    return [*sorted(names), "total"]


def stages_table(runs: list[Run]) -> str:
    """Markdown: per row, its cells and the mean seconds of each stage over them; then the
    seconds of all cells together (the sweep's work, whatever ran in parallel)."""
    names = stage_names(runs)
    rows: dict[str, list[Run]] = {}
    for run in runs:
        rows.setdefault(row_key(run)[1], []).append(run)
    lines = []
    for label, cells in rows.items():
        means = [mean([c["timings"][n] for c in cells if n in c.get("timings", {})] or [0.0])
                 for n in names]  # fmt: skip
        lines.append([label, str(len(cells)), *(f"{m:.1f}" for m in means)])
    sums = [sum(c.get("timings", {}).get(n, 0.0) for c in runs) for n in names]
    lines.append(["all cells (sum)", str(len(runs)), *(f"{s:.0f}" for s in sums)])
    return markdown_table(pd.DataFrame(lines, columns=["row", "cells", *names]))
