"""``bayes-spheres-report SWEEP_DIR`` (the console script in pyproject.toml, or
``python -m bayes_spheres.report``): rebuild a sweep folder's tables."""

from __future__ import annotations

import argparse

from bayes_spheres.report.compare import compare_markdown
from bayes_spheres.report.readings import readings_table
from bayes_spheres.report.runs import collect, collect_some
from bayes_spheres.report.scaling import write_scaling
from bayes_spheres.report.stages import stages_table
from bayes_spheres.report.table1 import write_table1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bayes-spheres-report",
        description="Rebuild table1.md and table1.csv from the metrics.json files in a sweep "
        "folder (and print the table).",
    )
    parser.add_argument(
        "root", nargs="+", help="a run or sweep folder (with --compare: two or more run folders)"
    )
    parser.add_argument(
        "--readings",
        action="store_true",
        help="print candidate readings of adversarial error instead "
        "(docs/adversarial-error.md); writes nothing",
    )
    parser.add_argument("--per-seed", action="store_true", help="with --readings: a row per seed")
    parser.add_argument("--paper", type=float, default=None, help="with --readings: paper value")
    parser.add_argument(
        "--scaling", action="store_true", help="scaling.md and scaling.png (experiment=scaling)"
    )
    parser.add_argument(
        "--stages", action="store_true", help="seconds per stage and row; writes nothing"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="az.compare (PSIS-LOO) over the run folders' posterior.nc, with Pareto k",
    )
    args = parser.parse_args(argv)
    if args.compare:
        try:
            print(compare_markdown(args.root), end="")
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"bayes-spheres-report: {err}") from err
        return
    if len(args.root) != 1:
        parser.error(f"one folder expected (got {len(args.root)}); --compare takes several")
    args.root = args.root[0]
    if args.scaling:
        try:
            print("\n".join(map(str, write_scaling(args.root))))
        except FileNotFoundError as err:
            raise SystemExit(f"bayes-spheres-report: {err}") from err
        return
    if args.stages:
        try:
            print(stages_table(collect_some(args.root)))
        except FileNotFoundError as err:
            raise SystemExit(f"bayes-spheres-report: {err}") from err
        return
    if args.readings:
        runs = collect(args.root)
        if not runs:
            raise SystemExit(f"no metrics.json under {args.root}")
        print(readings_table(runs, args.paper, args.per_seed))
        return
    try:
        print(write_table1(args.root), end="")
    except FileNotFoundError as err:
        raise SystemExit(f"bayes-spheres-report: {err}") from err
