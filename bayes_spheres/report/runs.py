"""Finished runs: the ``metrics.json`` files under a run or sweep folder
(``bayes_spheres/run_folder.py``), with the Hydra overrides each run was made with."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bayes_spheres.run_folder import FIGURE_FITS, METRICS_FILE

Run = dict[str, Any]


def collect(root: str | Path) -> list[Run]:
    """Every finished run under ``root`` (Figure 1's fits aside): its metrics plus
    ``overrides`` (Hydra's, if saved)."""
    runs = []
    root = Path(root)
    for path in sorted(root.rglob(METRICS_FILE)):
        if FIGURE_FITS in path.relative_to(root).parts:
            continue
        run = json.loads(path.read_text())
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        run["overrides"] = (
            yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        )
        run["path"] = str(path.parent)
        runs.append(run)
    return runs


def collect_some(root: str | Path) -> list[Run]:
    """:func:`collect`, and a FileNotFoundError naming ``root`` where it finds no run."""
    runs = collect(root)
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json) under {root}")
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


def row_key(run: Run) -> tuple[str, str]:
    """``(id, label)`` of the Table 1 row a run belongs to (model/inference outside table1)."""
    row = run.get("row") or {}
    fallback = f"{run['model']}/{run['inference']}"
    return row.get("id", fallback), row.get("label", fallback)


def runs_frame(runs: Iterable[Run], readers: Mapping[str, Callable[[Run], Any]]) -> pd.DataFrame:
    """A row per run and a column per reader. The columns hold Python objects (dtype
    ``object``), so that a reading a run lacks stays ``None`` and a NaN it holds stays NaN."""
    records = [{name: read(run) for name, read in readers.items()} for run in runs]
    return pd.DataFrame(records, columns=list(readers), dtype=object)
