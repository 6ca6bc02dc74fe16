"""Adversarial error as the training set grows (``experiment=scaling``,
conf/experiment/scaling.yaml): ``scaling.md`` and ``scaling.png`` in the sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bayes_spheres.io import atomic_path, atomic_write
from bayes_spheres.report.columns import ATTACK_COLUMNS, COLUMNS, readers
from bayes_spheres.report.markdown import markdown_table
from bayes_spheres.report.runs import Run, collect_some, runs_frame
from bayes_spheres.report.summary import column_means_and_ses, format_mean_se

SETTING = ["inference", "dim", "n_train"]
SUMMARISED = [COLUMNS[0], COLUMNS[1], *ATTACK_COLUMNS]
KEYS = [key for key, _, _ in SUMMARISED]


def scaling_frame(runs: list[Run]) -> pd.DataFrame:
    """A row per (inference, D, N), sorted: seeds, and the mean over seeds of confidence and
    adversarial error by attack with its standard error (``<key>_se``; ``None`` where no
    seed has the reading, or only one has)."""
    per_run = runs_frame(runs, {key: lambda r, key=key: r[key] for key in SETTING})
    per_run = per_run.join(runs_frame(runs, readers(SUMMARISED)))
    records = [
        {**dict(zip(SETTING, setting, strict=True)), "seeds": len(group)}
        | column_means_and_ses(group, KEYS)
        for setting, group in per_run.groupby(SETTING, sort=True, dropna=False)
    ]
    columns = [*SETTING, "seeds", *(name for key in KEYS for name in (key, f"{key}_se"))]
    return pd.DataFrame(records, columns=columns, dtype=object)


def scaling_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One dict per (inference, D, N): adversarial error by attack, mean and standard error
    over seeds."""
    return scaling_frame(runs).to_dict("records")


def scaling_markdown(table: pd.DataFrame) -> str:
    """``scaling.md``: a line per (inference, D, N) of :func:`scaling_frame`, each reading
    as mean ± standard error over its seeds."""
    cells = pd.DataFrame(
        {
            "inference": table["inference"],
            "D": table["dim"].map(str),
            "N": table["n_train"].map(str),
            "seeds": table["seeds"].map(str),
            **{
                key: [
                    format_mean_se(m, se)
                    for m, se in zip(table[key], table[f"{key}_se"], strict=True)
                ]
                for key in KEYS
            },
        },
        columns=["inference", "D", "N", "seeds", *KEYS],
    )
    return markdown_table(cells) + "\n"


def plot_scaling(table: pd.DataFrame, png: Path) -> None:
    """Adversarial error against N, a panel per D, a line per inference (solid: PGD, dashed:
    simplex attack, dotted: certified bound, each drawn where every point has it); error
    bars of one standard error over seeds where a point has two or more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"adversarial_error": "o-", "adv_simplex": "s--", "certified_bound": ":"}
    widths = {"adversarial_error": 1.5, "adv_simplex": 1.0, "certified_bound": 1.0}
    dims = sorted(set(table["dim"]))
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.8), squeeze=False)
    for ax, dim in zip(axes[0], dims, strict=True):
        for inference in sorted(set(table["inference"])):
            mine = table[(table["dim"] == dim) & (table["inference"] == inference)]
            color = None
            for key, style in styles.items():
                if any(v is None for v in mine[key]):
                    continue
                errors = [0.0 if se is None else se for se in mine[f"{key}_se"]]
                drawn = ax.errorbar(
                    mine["n_train"].tolist(),
                    mine[key].tolist(),
                    yerr=errors,
                    fmt=style,
                    color=color,
                    ms=4 if key == "adversarial_error" else 3,
                    lw=widths[key],
                    capsize=2,
                    label=inference if key == "adversarial_error" else None,
                )
                color = drawn.lines[0].get_color()
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training points N")
        ax.set_ylabel("adversarial error")
        ax.set_title(f"D = {dim} (solid: PGD, dashed: simplex, dotted: bound)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_scaling(sweep_dir: str | Path) -> list[Path]:
    """``scaling.md`` and ``scaling.png`` (adversarial error against N, a panel per D)."""
    sweep_dir = Path(sweep_dir)
    runs = collect_some(sweep_dir)
    table = scaling_frame(runs)
    text = scaling_markdown(table)
    atomic_write(sweep_dir / "scaling.md", lambda f: f.write(text.encode()))
    png = sweep_dir / "scaling.png"
    plot_scaling(table, png)
    return [sweep_dir / "scaling.md", png]
