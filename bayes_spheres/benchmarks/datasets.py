"""The published targets' data, prepared as the Inference Gym 0.0.5 prepares it
(``inference_gym/internal/data.py``), as numpy arrays.

Two data sets the gym downloads at run time (through TensorFlow Datasets) are vendored here,
in ``data/``, because this project's machines reach package registries only:

- ``german.data-numeric.gz``: the UCI Statlog (German Credit Data) numeric file, 1,000 rows of
  24 integer attributes and the class (1 good, 2 bad). Source: Hofmann, H. (1994), Statlog
  (German Credit Data), UCI Machine Learning Repository (dataset 144,
  archive.ics.uci.edu/dataset/144), licence CC BY 4.0. The values were taken from public
  copies of the file (four copies on GitHub, all 25,000 values identical; whitespace
  re-normalised) and checked against the gym: the
  posterior mode of its logistic regression on them lies within 0.04 of the gym's reference
  means, and the labels' orientation is TFDS's ``2 - class`` reversed by the gym, i.e.
  ``class - 1`` (bad = 1).
- ``radon_mn.csv.gz``: the Minnesota houses of Gelman & Hill's radon survey (``srrs2.dat``,
  county uranium from ``cty.dat``, joined on FIPS code and de-duplicated on ``idnum`` as
  TFDS's ``radon`` builder does; floors above 1 dropped as the gym does): 919 houses in 85
  counties, the counts the gym asserts. Source: Gelman, A. & Hill, J. (2007), Data Analysis
  Using Regression and Multilevel/Hierarchical Models, the book's public data
  (www.stat.columbia.edu/~gelman/arm/examples/radon/), from a public GitHub copy of the two
  files.

The other targets' data ship with the gym and are read from the installed package
(:func:`bayes_spheres.benchmarks.gym.dataset`).
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayes_spheres.benchmarks.gym import dataset

DATA = Path(__file__).resolve().parent / "data"
GYM_SHUFFLE_SEED = 1337  # inference_gym/internal/data.py's default shuffle_seed


def german_credit_numeric_raw() -> np.ndarray:
    """The UCI file as it is: ``[1000, 25]`` integers, the last column the class (1, 2)."""
    with gzip.open(DATA / "german.data-numeric.gz", "rt") as f:
        raw = np.loadtxt(f, dtype=np.int64)
    if raw.shape != (1000, 25):
        raise ValueError(f"german.data-numeric: shape {raw.shape}, expected (1000, 25)")
    return raw


def german_credit_numeric() -> tuple[np.ndarray, np.ndarray]:
    """``features [1000, 24]`` (each column to mean 0 and sd 1, numpy's ``std``: the gym's
    ``_normalize_zero_mean_one_std`` with every row in the training set) and ``labels``
    ``[1000]`` in {0, 1} (1 = bad credit)."""
    raw = german_credit_numeric_raw()
    features = raw[:, :24].astype(np.float64)
    features = (features - features.mean(0, keepdims=True)) / features.std(0, keepdims=True)
    return features, (raw[:, 24] - 1).astype(np.int64)


@dataclass(frozen=True)
class Radon:
    """One state's houses, as ``inference_gym.internal.data.radon`` returns them."""

    log_uranium: np.ndarray  # [N] log of the county's soil uranium (ppm)
    floor: np.ndarray  # [N] 0 basement, 1 first floor
    county: np.ndarray  # [N] index into county_names (np.unique order, as the gym's)
    floor_by_county: np.ndarray  # [N] mean floor of the house's county (contextual effect)
    log_radon: np.ndarray  # [N] log activity (pCi/L), activity <= 0 set to 0.1
    county_names: tuple[str, ...]

    @property
    def num_counties(self) -> int:
        return len(self.county_names)


def radon_minnesota() -> Radon:
    """Minnesota: 919 houses, 85 counties. Activity and uranium pass through float32 first,
    as TFDS stores them (its ``radon`` features are ``tf.float32``)."""
    with gzip.open(DATA / "radon_mn.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    names = np.array([r["county"] for r in rows])
    floor = np.array([int(r["floor"]) for r in rows], dtype=np.int64)
    activity = np.array([r["activity"] for r in rows], dtype=np.float32).astype(np.float64)
    uranium = np.array([r["Uppm"] for r in rows], dtype=np.float32).astype(np.float64)
    activity[activity <= 0.0] = 0.1
    county_names, county = np.unique(names, return_inverse=True)
    floor_by_county = np.array([floor[county == i].mean() for i in range(len(county_names))])
    if (len(rows), len(county_names)) != (919, 85):
        raise ValueError(f"radon_mn: {len(rows)} houses in {len(county_names)} counties")
    return Radon(
        log_uranium=np.log(uranium),
        floor=floor,
        county=county.astype(np.int64),
        floor_by_county=floor_by_county[county],
        log_radon=np.log(activity),
        county_names=tuple(str(n) for n in county_names),
    )


def brownian_motion_missing_middle() -> tuple[np.ndarray, float, float]:
    """``observed_locs [30]`` (NaN at the 10 middle steps), ``innovation_noise_scale`` and
    ``observation_noise_scale`` (0.1, 0.15)."""
    d = dataset("brownian_motion_missing_middle_observations")
    return (
        np.asarray(d.OBSERVED_LOC, dtype=np.float64),
        float(d.INNOVATION_NOISE),
        float(d.OBSERVATION_NOISE),
    )


def sp500_returns(num_points: int = 100) -> np.ndarray:
    """The gym's ``sp500_returns(num_points)``: the last ``num_points`` daily changes of the
    S&P 500 close, minus their mean."""
    returns = np.diff(np.asarray(dataset("sp500_closing_prices").CLOSING_PRICES, np.float64))
    returns = returns[-num_points:]
    return returns - returns.mean()


def synthetic_item_response_theory() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``student_ids``, ``question_ids``, ``correct`` [30012] (every answer in the training
    set; the gym's shuffle only reorders the terms of the likelihood: abilities and
    difficulties are indexed by the ids)."""
    d = dataset("synthetic_item_response_theory")
    return (
        np.asarray(d.STUDENT_IDS, dtype=np.int64),
        np.asarray(d.QUESTION_IDS, dtype=np.int64),
        np.asarray(d.CORRECT, dtype=np.int64),
    )


def synthetic_log_gaussian_cox_process() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``locations [100, 2]`` (a 10 x 10 grid), ``extents [100]``, ``counts [100]``, in the
    order of the gym's ``synthetic_log_gaussian_cox_process()``: shuffled by
    ``np.random.RandomState(1337)``. The order matters: the reference's ``log_intensity[i]``
    belongs to the i-th location after the shuffle."""
    d = dataset("synthetic_log_gaussian_cox_process")
    order = np.arange(len(d.COUNTS))
    np.random.RandomState(GYM_SHUFFLE_SEED).shuffle(order)  # the gym's RNG
    return (
        np.asarray(d.LOCATIONS, dtype=np.float64)[order],
        np.asarray(d.EXTENTS, dtype=np.float64)[order],
        np.asarray(d.COUNTS, dtype=np.int64)[order],
    )
