"""Mean and standard error over seeds: the one place every table of the package
(``table1.py``, ``readings.py``, ``scaling.py``) computes them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

import pandas as pd


def mean(values: Sequence[float]) -> float:
    """The mean (exactly rounded: ``statistics.fmean``)."""
    return statistics.fmean(values)


def standard_error(values: Sequence[float]) -> float | None:
    """Sample standard deviation over sqrt(n); ``None`` for one value."""
    if len(values) < 2:
        return None
    return statistics.stdev(values) / math.sqrt(len(values))


def mean_and_se(values: Sequence[float]) -> tuple[float, float | None]:
    return mean(values), standard_error(values)


def format_mean_se(mean: float | None, se: float | None, digits: int = 3) -> str:
    """``mean ± se``, the mean alone without a standard error, ``-`` without a mean."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if se is None else f"{mean:.{digits}f} ± {se:.{digits}f}"


def mean_se(values: list[float]) -> str:
    """``mean +- standard error`` (just the mean for one value)."""
    return format_mean_se(*mean_and_se(values))


def present(values: Iterable[float | None]) -> list[float]:
    """The values that are not ``None`` (a run without the reading); NaN is kept."""
    return [v for v in values if v is not None]


def column_means_and_ses(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, float | None]:
    """Per column: ``column`` (its mean over the rows that have it) and ``column_se`` (its
    standard error); both ``None`` where no row has it."""
    out: dict[str, float | None] = {}
    for column in columns:
        values = present(frame[column])
        out[column], out[f"{column}_se"] = mean_and_se(values) if values else (None, None)
    return out


def column_means(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, float | None]:
    """Per column: its mean over the rows that have it (``None`` where none has)."""
    out: dict[str, float | None] = {}
    for column in columns:
        values = present(frame[column])
        out[column] = mean(values) if values else None
    return out
