"""Tables from run folders: collect ``metrics.json`` files and summarise them over seeds."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

Run = dict[str, Any]


def collect(root: str | Path) -> list[Run]:
    """Every finished run under ``root``: its metrics plus ``overrides`` (Hydra's, if saved)."""
    runs = []
    for path in sorted(Path(root).rglob("metrics.json")):
        run = json.loads(path.read_text())
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        run["overrides"] = (
            yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        )
        run["path"] = str(path.parent)
        runs.append(run)
    return runs


def group_by_setting(
    runs: Iterable[Run], ignore: tuple[str, ...] = ("seed",)
) -> dict[str, list[Run]]:
    """Runs grouped by their overrides, leaving out ``ignore`` (seeds become replicates)."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        key = " ".join(o for o in run["overrides"] if o.split("=")[0] not in ignore)
        groups[key or f"{run['model']} {run['inference']}"].append(run)
    return dict(groups)


def mean_se(values: list[float]) -> str:
    """``mean +- standard error`` (just the mean for one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    return f"{m:.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


READINGS: dict[str, Callable[[Run], float]] = {
    "mean, both spheres": lambda r: r["adversarial_error"],
    "inner sphere": lambda r: r["adversarial_error_by_sphere"]["inner"]["mean"],
    "outer sphere": lambda r: r["adversarial_error_by_sphere"]["outer"]["mean"],
    "max": lambda r: r["adversarial_error_max"],
    "exact worst, inner": lambda r: r["worst_case_by_sphere"]["inner"]["best_vertex"],
    "exact worst, outer": lambda r: r["worst_case_by_sphere"]["outer"]["best_vertex"],
}


def readings_table(runs: list[Run], paper: float | None = None, per_seed: bool = False) -> str:
    """Markdown: each candidate reading of "adversarial error", mean +- s.e. over seeds."""
    cols = ["setting", "seeds", "avg. confidence", *READINGS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, group in group_by_setting(runs, ignore=() if per_seed else ("seed",)).items():
        cells = [key, str(len(group)), mean_se([r["avg_confidence"] for r in group])]
        cells += [mean_se([f(r) for r in group]) for f in READINGS.values()]
        lines.append("| " + " | ".join(cells) + " |")
    if paper is not None:
        lines.append(f"\nPaper, Table 1: adversarial error {paper:.3f}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="a run or sweep folder")
    parser.add_argument(
        "--readings",
        action="store_true",
        help="candidate readings of adversarial error (docs/adversarial-error.md)",
    )
    parser.add_argument("--per-seed", action="store_true", help="one row per seed")
    parser.add_argument("--paper", type=float, default=None, help="the paper's value to show")
    args = parser.parse_args(argv)
    runs = collect(args.root)
    if not runs:
        raise SystemExit(f"no metrics.json under {args.root}")
    print(readings_table(runs, args.paper, args.per_seed))


if __name__ == "__main__":
    main()
