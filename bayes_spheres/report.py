"""Tables from run folders: collect ``metrics.json`` files and summarise them over seeds.

``bayes-spheres-report SWEEP_DIR`` (or the Hydra callback :class:`Table1Callback` at the end
of ``experiment=table1``) writes ``table1.md`` and ``table1.csv`` into the sweep folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bayes_spheres.io import atomic_path, atomic_write

log = logging.getLogger(__name__)

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


# Table 1's columns: (key in the table, label, how to read it from one run's metrics).
COLUMNS: list[tuple[str, str, Callable[[Run], float | None]]] = [
    ("avg_confidence", "avg. confidence", lambda r: r["avg_confidence"]),
    ("adversarial_error", "adv. error", lambda r: r["adversarial_error"]),
    ("resampled_error", "resampled error", lambda r: r["resampled_error"]),
    ("adv_inner", "adv. inner", lambda r: r["adversarial_error_by_sphere"]["inner"]["mean"]),
    ("adv_outer", "adv. outer", lambda r: r["adversarial_error_by_sphere"]["outer"]["mean"]),
    ("adv_max", "adv. max", lambda r: r["adversarial_error_max"]),
    ("time_s", "time (s)", lambda r: r["timings"].get("total", sum(r["timings"].values()))),
]
# The candidate readings of the paper's "adversarial error", for which it gives no formula
# (docs/paper.md, "Metrics"): which one fits the paper's column across rows is measured, not
# chosen to match.
READING_KEYS = {
    "mean over both spheres (reported)": "adversarial_error",
    "inner sphere": "adv_inner",
    "outer sphere": "adv_outer",
    "max over restarts": "adv_max",
}


def _both_spheres(run: Run, key: str) -> float | None:
    worst = run.get("worst_case_by_sphere")
    return None if not worst else (worst["inner"][key] + worst["outer"][key]) / 2


# How strong is the attack? Other attacks on the same ensemble (extra_attacks) and the exact
# bounds: the best vertex is a point any attack could find; the certified bound (mean over
# members of each member's worst case, averaged over the two spheres) no attack can exceed.
ATTACK_COLUMNS: list[tuple[str, str, Callable[[Run], float | None]]] = [
    ("adv_simplex", "simplex attack", lambda r: _extra(r, "simplex")),
    ("best_vertex", "best vertex", lambda r: _both_spheres(r, "best_vertex")),
    ("certified_bound", "certified bound", lambda r: _both_spheres(r, "certified_bound")),
]


def _extra(run: Run, name: str) -> float | None:
    found = (run.get("extra_attacks") or {}).get(name)
    return None if found is None else found["adversarial_error"]


PAPER_COLUMNS = ("avg_confidence", "adversarial_error", "resampled_error")
# Table 1's own row order (conf/experiment/table1/); other rows follow by name.
PAPER_ORDER = ("map", "laplace", "bootstrap", "mcmc", "svi", "hier_svi", "mcmc_shared_mean")


def row_key(run: Run) -> tuple[str, str]:
    """``(id, label)`` of the Table 1 row a run belongs to (model/inference outside table1)."""
    row = run.get("row") or {}
    fallback = f"{run['model']}/{run['inference']}"
    return row.get("id", fallback), row.get("label", fallback)


def _stats(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def table1_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per row (in the paper's order): seeds, mean and standard error of
    every column over seeds, the paper's values and each difference from them."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r["seed"]):
        groups[row_key(run)].append(run)

    def order(key: tuple[str, str]) -> tuple[int, str]:
        known = key[0] in PAPER_ORDER
        return (PAPER_ORDER.index(key[0]) if known else len(PAPER_ORDER), key[0])

    rows = []
    for (row_id, label), group in sorted(groups.items(), key=lambda kv: order(kv[0])):
        paper = (group[0].get("row") or {}).get("paper") or {}
        out: dict[str, Any] = {"row": row_id, "label": label, "seeds": [r["seed"] for r in group]}
        for key, _, read in COLUMNS + ATTACK_COLUMNS:
            values = [v for v in map(read, group) if v is not None]
            mean, se = _stats(values) if values else (None, None)
            out[key], out[f"{key}_se"] = mean, se
        for key in PAPER_COLUMNS:
            ours, theirs = out[key], paper.get(key)
            out[f"paper_{key}"] = theirs
            out[f"diff_{key}"] = None if ours is None or theirs is None else ours - theirs
        rows.append(out)
    return rows


def _cell(mean: float | None, se: float | None, digits: int = 3) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if se is None else f"{mean:.{digits}f} ± {se:.{digits}f}"


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown: ours (mean ± s.e. over seeds) | paper | difference, per Table 1 column."""
    head = ["row", "seeds"]
    for key in PAPER_COLUMNS:
        label = dict((k, lab) for k, lab, _ in COLUMNS)[key]
        head += [label, "paper", "diff"]
    head += ["adv. inner / outer", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(len(r["seeds"]))]
        for key in PAPER_COLUMNS:
            paper, diff = r[f"paper_{key}"], r[f"diff_{key}"]
            cells += [
                _cell(r[key], r[f"{key}_se"]),
                "-" if paper is None else f"{paper:.3f}",
                "-" if diff is None else f"{diff:+.3f}",
            ]
        cells.append(f"{_cell(r['adv_inner'], None)} / {_cell(r['adv_outer'], None)}")
        cells.append(_cell(r["time_s"], r["time_s_se"], digits=0))
        lines.append("| " + " | ".join(cells) + " |")
    fits = readings_fit(rows)
    if fits:
        lines += [
            "",
            "Which reading of the lost formula fits the paper's adversarial-error column: mean "
            "absolute difference over the rows that have a paper value:",
            "",
            "| reading | mean abs. difference | rows |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {diff:.3f} | {n} |" for name, (diff, n) in fits.items()]
    if any(r[key] is not None for r in rows for key, _, _ in ATTACK_COLUMNS):
        head = ["row", "PGD (the paper's attack)"] + [label for _, label, _ in ATTACK_COLUMNS]
        lines += [
            "",
            "Adversarial error by attack, mean over both spheres (certified bound: no point on "
            "the spheres is worse):",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for r in rows:
            cells = [r["label"], _cell(r["adversarial_error"], r["adversarial_error_se"])]
            cells += [_cell(r[key], r[f"{key}_se"]) for key, _, _ in ATTACK_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readings_fit(rows: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per candidate reading: mean |ours - paper| of adversarial error over the rows."""
    out = {}
    for name, key in READING_KEYS.items():
        pairs = [
            (r[key], r["paper_adversarial_error"])
            for r in rows
            if r[key] is not None and r["paper_adversarial_error"] is not None
        ]
        if pairs:
            out[name] = (statistics.fmean(abs(a - b) for a, b in pairs), len(pairs))
    return out


def table1_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = [k for k in rows[0] if k != "seeds"] + ["seeds"] if rows else []
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "seeds": " ".join(map(str, r["seeds"]))})
    return buf.getvalue()


def write_table1(sweep_dir: str | Path) -> str:
    """Build ``table1.md`` and ``table1.csv`` in ``sweep_dir`` from every finished run under it
    (atomically); returns the markdown."""
    sweep_dir = Path(sweep_dir)
    runs = collect(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json) under {sweep_dir}")
    rows = table1_rows(runs)
    text = table1_markdown(rows)
    atomic_write(sweep_dir / "table1.md", lambda f: f.write(text.encode()))
    atomic_write(sweep_dir / "table1.csv", lambda f: f.write(table1_csv(rows).encode()))
    return text


class Table1Callback(Callback):
    """Hydra callback: at the end of a multirun, Table 1 (and Figure 1) in the sweep folder."""

    def __init__(self, figure: bool = False) -> None:
        self.figure = figure

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            text = write_table1(sweep_dir)
        except FileNotFoundError as err:
            log.warning("no table: %s", err)
            return
        log.info("wrote %s and table1.csv\n%s", sweep_dir / "table1.md", text)
        if self.figure:
            from bayes_spheres.figure import figure1

            paths = figure1(sweep_dir, seed=int(config.get("seed", 0)))
            log.info("wrote %s", ", ".join(map(str, paths)))


def scaling_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per (inference, D, N): adversarial error by attack, mean over seeds."""
    groups: dict[tuple[str, int, int], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run["inference"], run["dim"], run["n_train"])].append(run)
    rows = []
    for (inference, dim, n), group in sorted(groups.items()):
        row: dict[str, Any] = {"inference": inference, "dim": dim, "n_train": n}
        row["seeds"] = len(group)
        for key, _, read in [COLUMNS[0], COLUMNS[1], *ATTACK_COLUMNS]:
            values = [v for v in map(read, group) if v is not None]
            row[key] = statistics.fmean(values) if values else None
        rows.append(row)
    return rows


def write_scaling(sweep_dir: str | Path) -> list[Path]:
    """``scaling.md`` and ``scaling.png`` (adversarial error against N, a panel per D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    runs = collect(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json) under {sweep_dir}")
    rows = scaling_rows(runs)
    keys = ["avg_confidence", "adversarial_error", *[k for k, _, _ in ATTACK_COLUMNS]]
    head = ["inference", "D", "N", "seeds", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["inference"], str(r["dim"]), str(r["n_train"]), str(r["seeds"])]
        lines.append("| " + " | ".join(cells + [_cell(r[k], None) for k in keys]) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write(sweep_dir / "scaling.md", lambda f: f.write(text.encode()))

    dims = sorted({r["dim"] for r in rows})
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.8), squeeze=False)
    for ax, dim in zip(axes[0], dims, strict=True):
        for inference in sorted({r["inference"] for r in rows}):
            mine = [r for r in rows if r["dim"] == dim and r["inference"] == inference]
            n = [r["n_train"] for r in mine]
            (line,) = ax.plot(n, [r["adversarial_error"] for r in mine], "o-", label=inference)
            if all(r["certified_bound"] is not None for r in mine):
                bound = [r["certified_bound"] for r in mine]
                ax.plot(n, bound, ":", color=line.get_color(), lw=1)
            if all(r["adv_simplex"] is not None for r in mine):
                simplex = [r["adv_simplex"] for r in mine]
                ax.plot(n, simplex, "s--", color=line.get_color(), ms=3, lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training points N")
        ax.set_ylabel("adversarial error")
        ax.set_title(f"D = {dim} (solid: PGD, dashed: simplex, dotted: bound)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = sweep_dir / "scaling.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return [sweep_dir / "scaling.md", png]


class ScalingCallback(Callback):
    """Hydra callback: at the end of ``experiment=scaling``, its table and plot."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            paths = write_scaling(config.hydra.sweep.dir)
        except FileNotFoundError as err:
            log.warning("no scaling plot: %s", err)
            return
        log.info("wrote %s", ", ".join(map(str, paths)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bayes-spheres-report",
        description="Rebuild table1.md and table1.csv from the metrics.json files in a sweep "
        "folder (and print the table).",
    )
    parser.add_argument("root", help="a run or sweep folder")
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
    args = parser.parse_args(argv)
    if args.scaling:
        try:
            print("\n".join(map(str, write_scaling(args.root))))
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


if __name__ == "__main__":
    main()
