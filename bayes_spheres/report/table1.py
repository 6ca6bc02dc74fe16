"""Table 1 of the paper from finished runs: ours (mean ± s.e. over seeds), the paper's value
(``row.paper`` in conf/experiment/table1/*.yaml) and the difference, written as ``table1.md``
and ``table1.csv`` into the sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bayes_spheres.io import atomic_write
from bayes_spheres.report.columns import ATTACK_COLUMNS, COLUMNS, readers
from bayes_spheres.report.markdown import markdown_table
from bayes_spheres.report.runs import Run, collect_some, row_key, runs_frame
from bayes_spheres.report.summary import column_means_and_ses, format_mean_se, mean

PAPER_COLUMNS = ("avg_confidence", "adversarial_error", "resampled_error")
# Table 1's own row order (conf/experiment/table1/); other rows follow by name.
PAPER_ORDER = ("map", "laplace", "bootstrap", "mcmc", "svi", "hier_svi", "mcmc_shared_mean")
# The candidate readings of the paper's "adversarial error", for which it gives no formula
# (docs/paper.md, "Metrics"): which one fits the paper's column across rows is measured, not
# chosen to match.
READING_KEYS = {
    "mean over both spheres (reported)": "adversarial_error",
    "inner sphere": "adv_inner",
    "outer sphere": "adv_outer",
    "max over restarts": "adv_max",
}
SUMMARISED = [key for key, _, _ in COLUMNS + ATTACK_COLUMNS]
# A row of the table: its id, label and seeds, mean and s.e. per column, the paper's values.
FIELDS = [
    "row",
    "label",
    "seeds",
    *(f"{key}{se}" for key in SUMMARISED for se in ("", "_se")),
    *(f"{kind}_{key}" for key in PAPER_COLUMNS for kind in ("paper", "diff")),
]


def _paper(run: Run) -> dict[str, float | None]:
    return (run.get("row") or {}).get("paper") or {}


def _paper_position(row_id: str) -> int:
    return PAPER_ORDER.index(row_id) if row_id in PAPER_ORDER else len(PAPER_ORDER)


def table1_frame(runs: list[Run]) -> pd.DataFrame:
    """A row per Table 1 row (the paper's order, then by id) with the columns ``FIELDS``;
    ``None`` where no seed has a value."""
    per_run = runs_frame(
        sorted(runs, key=lambda r: r["seed"]),
        {
            "row": lambda r: row_key(r)[0],
            "label": lambda r: row_key(r)[1],
            "seed": lambda r: r["seed"],
            "paper": _paper,
            **readers(COLUMNS + ATTACK_COLUMNS),
        },
    )
    records = []
    groups = per_run.groupby(["row", "label"], sort=False, dropna=False)
    for (row_id, label), group in groups:
        record: dict[str, Any] = {"row": row_id, "label": label, "seeds": group["seed"].tolist()}
        record |= column_means_and_ses(group, SUMMARISED)
        paper = group["paper"].iloc[0]
        for key in PAPER_COLUMNS:
            ours, theirs = record[key], paper.get(key)
            record[f"paper_{key}"] = theirs
            record[f"diff_{key}"] = None if ours is None or theirs is None else ours - theirs
        records.append(record)
    table = pd.DataFrame(records, columns=FIELDS, dtype=object)
    position = table["row"].map(_paper_position)
    table = table.assign(position=position).sort_values(["position", "row"], kind="stable")
    return table.drop(columns="position").reset_index(drop=True)


def table1_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per row (in the paper's order): seeds, mean and standard error of
    every column over seeds, the paper's values and each difference from them."""
    return table1_frame(runs).to_dict("records")


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
            out[name] = (mean([abs(a - b) for a, b in pairs]), len(pairs))
    return out


def _main_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    labels = {key: label for key, label, _ in COLUMNS}
    head = ["row", "seeds"]
    for key in PAPER_COLUMNS:
        head += [labels[key], "paper", "diff"]
    head += ["adv. inner / outer", "time (s)"]
    lines = []
    for r in rows:
        cells = [r["label"], str(len(r["seeds"]))]
        for key in PAPER_COLUMNS:
            paper, diff = r[f"paper_{key}"], r[f"diff_{key}"]
            cells += [
                format_mean_se(r[key], r[f"{key}_se"]),
                "-" if paper is None else f"{paper:.3f}",
                "-" if diff is None else f"{diff:+.3f}",
            ]
        inner, outer = format_mean_se(r["adv_inner"], None), format_mean_se(r["adv_outer"], None)
        cells.append(f"{inner} / {outer}")
        cells.append(format_mean_se(r["time_s"], r["time_s_se"], digits=0))
        lines.append(cells)
    return pd.DataFrame(lines, columns=head)


def _fit_table(fits: dict[str, tuple[float, int]]) -> pd.DataFrame:
    lines = [[name, f"{diff:.3f}", str(n)] for name, (diff, n) in fits.items()]
    return pd.DataFrame(lines, columns=["reading", "mean abs. difference", "rows"])


def _attack_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    head = ["row", "seeds", "PGD (the paper's attack)"] + [label for _, label, _ in ATTACK_COLUMNS]
    lines = [
        [
            r["label"],
            str(len(r["seeds"])),
            format_mean_se(r["adversarial_error"], r["adversarial_error_se"]),
        ]
        + [format_mean_se(r[key], r[f"{key}_se"]) for key, _, _ in ATTACK_COLUMNS]
        for r in rows
    ]
    return pd.DataFrame(lines, columns=head)


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown: ours (mean ± s.e. over seeds) | paper | difference, per Table 1 column."""
    sections = [markdown_table(_main_table(rows))]
    fits = readings_fit(rows)
    if fits:
        sections.append(
            "Which reading of the lost formula fits the paper's adversarial-error column: mean "
            "absolute difference over the rows that have a paper value:\n\n"
            + markdown_table(_fit_table(fits))
        )
    if any(r[key] is not None for r in rows for key, _, _ in ATTACK_COLUMNS):
        sections.append(
            "Adversarial error by attack, mean over both spheres (the attacks: mean over "
            "restarts; certified bound: no point on the spheres is worse; worst point: the "
            "strongest attack's max over restarts, the least the true worst case can be; "
            "bound - worst point: how far apart the two are):\n\n"
            + markdown_table(_attack_table(rows))
        )
    return "\n\n".join(sections) + "\n"


def _csv_text(value: Any) -> str:
    # as the csv module writes a value: None empty, NaN as "nan" (pandas would leave it empty)
    return "" if value is None else str(value)


def table1_csv(rows: list[dict[str, Any]]) -> str:
    """CSV of ``rows``: a column per key, ``seeds`` last (space-separated)."""
    table = pd.DataFrame(rows, dtype=object)
    if "seeds" in table:
        seeds = table.pop("seeds").map(lambda seeds: " ".join(map(str, seeds)))
        table = table.assign(seeds=seeds)
    return table.map(_csv_text).to_csv(index=False, lineterminator="\n")


def write_table1(sweep_dir: str | Path) -> str:
    """Build ``table1.md`` and ``table1.csv`` in ``sweep_dir`` from every finished run under it
    (atomically); returns the markdown."""
    sweep_dir = Path(sweep_dir)
    runs = collect_some(sweep_dir)
    rows = table1_rows(runs)
    text = table1_markdown(rows)
    atomic_write(sweep_dir / "table1.md", lambda f: f.write(text.encode()))
    atomic_write(sweep_dir / "table1.csv", lambda f: f.write(table1_csv(rows).encode()))
    return text
