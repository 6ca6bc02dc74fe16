"""The Pyro versions of the Inference Gym targets (``bayes_spheres.benchmarks``) against the gym's
own definitions, transcribed here a second time, independently, from its TFP code into
``scipy.stats`` terms: the log joint density (prior plus likelihood, on the constrained
values, as the gym's ``unnormalized_log_prob`` is) agrees to float64 rounding at random
points about the reference posterior. The data are re-derived here from the raw files where
the package prepares them (German credit standardisation, S&P 500 returns, the IRT answers as
the gym's dense matrix with a mask), so a slip in the preparation fails too."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pyro import poutine
from scipy import stats
from scipy.spatial.distance import cdist
from scipy.special import log_expit

from bayes_spheres.benchmarks import TARGETS, load
from bayes_spheres.benchmarks.datasets import (
    brownian_motion_missing_middle,
    german_credit_numeric_raw,
    radon_minnesota,
    synthetic_item_response_theory,
    synthetic_log_gaussian_cox_process,
)
from bayes_spheres.benchmarks.gym import dataset
from bayes_spheres.benchmarks.time_series import AR1

RTOL = 1e-11  # relative to the sum of the terms' magnitudes: float64 rounding, no more
POINTS = 4


# --- the gym's log densities, in scipy ---------------------------------------------------------


def eight_schools(v: dict) -> float:
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12], dtype=float)
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18], dtype=float)
    theta = v["school_effects"]
    return (
        stats.norm.logpdf(v["avg_effect"], 0.0, 10.0)
        + stats.norm.logpdf(v["log_stddev"], 5.0, 1.0)
        + stats.norm.logpdf(theta, v["avg_effect"], np.exp(v["log_stddev"])).sum()
        + stats.norm.logpdf(y, theta, sigma).sum()
    )


def eight_schools_noncentered(v: dict) -> float:
    """The centred density at ``theta = avg + exp(log_sd) z`` times ``|d theta / d z| =
    exp(log_sd)^8``: the density of ``z``."""
    theta = v["avg_effect"] + np.exp(v["log_stddev"]) * v["school_effects_decentered"]
    centred = {"avg_effect": v["avg_effect"], "log_stddev": v["log_stddev"]}
    return eight_schools(centred | {"school_effects": theta}) + 8 * v["log_stddev"]


def german_credit() -> tuple[np.ndarray, np.ndarray]:
    raw = german_credit_numeric_raw().astype(float)
    x = raw[:, :24]
    x = (x - x.mean(0)) / x.std(0)
    return np.hstack([x, np.ones((1000, 1))]), raw[:, 24] - 1.0  # TFDS 2 - class, reversed


def bernoulli_logit(y: np.ndarray, logits: np.ndarray) -> float:
    return float(np.sum(y * log_expit(logits) + (1 - y) * log_expit(-logits)))


def german_credit_logistic(v: dict) -> float:
    x, y = german_credit()
    w = v["weights"]
    return stats.norm.logpdf(w).sum() + bernoulli_logit(y, x @ w)


def german_credit_probit(v: dict) -> float:
    x, y = german_credit()
    z = x @ v["weights"]
    return stats.norm.logpdf(v["weights"]).sum() + np.sum(
        y * stats.norm.logcdf(z) + (1 - y) * stats.norm.logcdf(-z)
    )


def german_credit_sparse_logistic(v: dict) -> float:
    x, y = german_credit()
    gamma = stats.gamma(a=0.5, scale=1 / 0.5)  # TFP Gamma(concentration=0.5, rate=0.5)
    w = v["unscaled_weights"] * v["local_scales"] * v["global_scale"]
    return (
        gamma.logpdf(v["global_scale"])
        + gamma.logpdf(v["local_scales"]).sum()
        + stats.norm.logpdf(v["unscaled_weights"]).sum()
        + bernoulli_logit(y, x @ w)
    )


def brownian_motion(v: dict) -> float:
    d = dataset("brownian_motion_missing_middle_observations")
    obs = np.asarray(d.OBSERVED_LOC, dtype=float)
    seen = ~np.isnan(obs)
    x = v["locs"]
    return (
        stats.norm.logpdf(x[0], 0.0, d.INNOVATION_NOISE)
        + stats.norm.logpdf(x[1:], x[:-1], d.INNOVATION_NOISE).sum()
        + stats.norm.logpdf(obs[seen], x[seen], d.OBSERVATION_NOISE).sum()
    )


def stochastic_volatility(v: dict) -> float:
    prices = np.asarray(dataset("sp500_closing_prices").CLOSING_PRICES, dtype=float)
    r = np.diff(prices)[-100:]
    r = r - r.mean()
    phi, mu = v["persistence_of_volatility"], v["mean_log_volatility"]
    s, h = v["white_noise_shock_scale"], v["log_volatility"]
    return (
        stats.beta.logpdf((phi + 1) / 2, 20.0, 1.5) - np.log(2.0)  # 2 Beta(20, 1.5) - 1
        + stats.cauchy.logpdf(mu, 0.0, 5.0)
        + stats.halfcauchy.logpdf(s, 0.0, 2.0)
        + stats.norm.logpdf(h[0], mu, s / np.sqrt(1 - phi**2))
        + stats.norm.logpdf(h[1:], mu + phi * (h[:-1] - mu), s).sum()
        + stats.norm.logpdf(r, 0.0, np.exp(h / 2)).sum()
    )  # fmt: skip


def radon(v: dict) -> float:
    d = radon_minnesota()
    counties = np.unique(d.county)
    floor_by_county = np.array([d.floor[d.county == c].mean() for c in counties])[d.county]
    w = v["weight"]
    loc = (
        w[0] * d.log_uranium + w[1] * d.floor + w[2] * floor_by_county
        + v["county_effect"][d.county]
    )  # fmt: skip
    return (
        stats.norm.logpdf(v["county_effect_mean"], 0.0, 1.0)
        + stats.uniform.logpdf(v["county_effect_scale"], 0.0, 100.0)
        + stats.norm.logpdf(
            v["county_effect"], v["county_effect_mean"], v["county_effect_scale"]
        ).sum()
        + stats.norm.logpdf(w, 0.0, 1.0).sum()
        + stats.uniform.logpdf(v["log_radon_scale"], 0.0, 100.0)
        + stats.norm.logpdf(d.log_radon, loc, v["log_radon_scale"]).sum()
    )  # fmt: skip


def item_response_theory(v: dict) -> float:
    d = dataset("synthetic_item_response_theory")
    students, questions = np.asarray(d.STUDENT_IDS), np.asarray(d.QUESTION_IDS)
    dense = np.zeros((400, 100))
    dense[students, questions] = d.CORRECT
    mask = np.zeros((400, 100), dtype=bool)
    mask[students, questions] = True
    logits = (
        v["mean_student_ability"]
        + v["centered_student_ability"][:, None]
        - v["question_difficulty"][None, :]
    )
    lik = dense * log_expit(logits) + (1 - dense) * log_expit(-logits)
    return (
        stats.norm.logpdf(v["mean_student_ability"], 0.75, 1.0)
        + stats.norm.logpdf(v["centered_student_ability"]).sum()
        + stats.norm.logpdf(v["question_difficulty"]).sum()
        + lik[mask].sum()
    )


def log_gaussian_cox_process(v: dict) -> float:
    d = dataset("synthetic_log_gaussian_cox_process")
    shuffle = np.arange(100)  # the gym's data.synthetic_log_gaussian_cox_process(shuffle=True)
    np.random.RandomState(1337).shuffle(shuffle)  # the gym's RNG
    x, extents, counts = (np.asarray(a)[shuffle] for a in (d.LOCATIONS, d.EXTENTS, d.COUNTS))
    amp, ls = v["amplitude"] + 0.001, v["length_scale"] + 0.001
    r = np.sqrt(3) * cdist(x, x) / ls
    cov = amp**2 * (1 + r) * np.exp(-r) + 1e-6 * np.eye(100)
    mean = np.mean(np.log(counts) - np.log(extents))
    f = v["log_intensity"]
    return (
        stats.lognorm.logpdf(v["amplitude"], s=0.5, scale=np.exp(-1.0))
        + stats.lognorm.logpdf(v["length_scale"], s=1.0, scale=np.exp(-1.0))
        + stats.multivariate_normal.logpdf(f, np.full(100, mean), cov)
        + stats.poisson.logpmf(counts, extents * np.exp(f)).sum()
    )


GYM_LOG_DENSITY = {
    "eight_schools": eight_schools,
    "eight_schools_noncentered": eight_schools_noncentered,
    "german_credit_logistic": german_credit_logistic,
    "german_credit_probit": german_credit_probit,
    "german_credit_sparse_logistic": german_credit_sparse_logistic,
    "brownian_motion": brownian_motion,
    "stochastic_volatility": stochastic_volatility,
    "radon_minnesota": radon,
    "item_response_theory": item_response_theory,
    "log_gaussian_cox_process": log_gaussian_cox_process,
}


# --- points and the Pyro side ------------------------------------------------------------------


def latent_sites(model) -> dict:
    trace = poutine.trace(model).get_trace()
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def bounds(support) -> tuple[float, float]:
    """``(lower, upper)`` of a support, through ``independent`` wrappers."""
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    return (
        float(getattr(support, "lower_bound", -np.inf)),
        float(getattr(support, "upper_bound", np.inf)),
    )


def random_point(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latent values about the reference posterior (mean + sd/2 * N(0, 1) per coordinate),
    put inside each site's support; for the non-centred schools, the centred point's
    ``z = (theta - avg) / exp(log_sd)``."""
    if name == "eight_schools_noncentered":
        v = random_point("eight_schools", rng)
        theta = v.pop("school_effects")
        v["school_effects_decentered"] = (theta - v["avg_effect"]) / np.exp(v["log_stddev"])
        return v
    target = load(name)
    sites = latent_sites(target.model)
    point = {}
    for quantity, ref in target.reference.items():
        site = quantity if quantity in sites else next(iter(sites))  # "identity": the one site
        x = ref.mean + 0.5 * ref.sd * rng.normal(size=np.shape(ref.mean))
        lower, upper = bounds(sites[site]["fn"].support)
        x = np.clip(np.abs(x) if lower == 0.0 else x, lower + 1e-3, upper - 1e-3)
        point[site] = np.asarray(x, dtype=np.float64)
    assert set(point) == set(sites), (set(point), set(sites))
    return point


def pyro_log_density(model, point: dict[str, np.ndarray]) -> float:
    values = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in point.items()}
    trace = poutine.trace(poutine.condition(model, data=values)).get_trace()
    return float(trace.log_prob_sum())


@pytest.mark.parametrize("name", list(TARGETS))
def test_log_density_matches_the_gym(name):
    target = load(name)
    rng = np.random.default_rng(20260101)
    rows = []
    for _ in range(POINTS):
        point = random_point(name, rng)
        ours, theirs = pyro_log_density(target.model, point), GYM_LOG_DENSITY[name](point)
        rows.append((ours, theirs))
        assert ours == pytest.approx(theirs, rel=RTOL, abs=RTOL), (name, point)
    gaps = [abs(a - b) / abs(b) for a, b in rows]
    print(f"{name}: {POINTS} points, log p {rows[0][1]:.6f} ..., max relative gap {max(gaps):.1e}")


# The gym's default event-space bijectors: sites outside this table are unconstrained.
BOUNDED = {
    "global_scale": (0.0, np.inf),
    "local_scales": (0.0, np.inf),
    "county_effect_scale": (0.0, 100.0),
    "log_radon_scale": (0.0, 100.0),
    "persistence_of_volatility": (-1.0, 1.0),
    "white_noise_shock_scale": (0.0, np.inf),
    "amplitude": (0.0, np.inf),
    "length_scale": (0.0, np.inf),
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_supports_are_the_gyms(name):
    """Pyro's MCMC moves each site through ``biject_to(support)``: a bounded site with an
    unbounded support (``TransformedDistribution`` of a Beta reports ``Real``) steps out."""
    for site, node in latent_sites(load(name).model).items():
        support = node["fn"].support
        assert bounds(support) == BOUNDED.get(site, (-np.inf, np.inf)), (site, support)


def test_every_target_has_a_gym_density():
    assert set(GYM_LOG_DENSITY) == set(TARGETS)


@pytest.mark.parametrize("name", list(TARGETS))
def test_quantities_have_the_reference_shapes(name):
    """The map from draws to the gym's quantities gives its names and shapes, batched."""
    target = load(name)
    draws = {
        k: np.stack([v["value"].numpy()] * 3)[None]  # [1 chain, 3 draws, ...]
        for k, v in latent_sites(target.model).items()
    }
    quantities = target.quantities(draws)
    assert set(quantities) == set(target.reference)
    for q, ref in target.reference.items():
        assert quantities[q].shape == (1, 3, *np.shape(ref.mean)), q
        assert np.all(ref.sd > 0) and np.all(ref.mean_se > 0), q


def test_vendored_data_are_the_published_ones():
    raw = german_credit_numeric_raw()
    assert raw.shape == (1000, 25)
    assert np.bincount(raw[:, 24])[1:].tolist() == [700, 300]  # 700 good, 300 bad credits
    r = radon_minnesota()
    assert (len(r.log_radon), r.num_counties) == (919, 85)  # the gym's asserted counts
    assert r.county_names[:2] == ("AITKIN", "ANOKA")


def test_data_are_in_the_references_order():
    """Per-unit quantities follow their data: a loader that reorders units (the gym shuffles
    the Cox process's cells with seed 1337) would pair each reference coordinate with another
    unit's data, which no density check sees."""
    _, extents, counts = synthetic_log_gaussian_cox_process()
    lgcp = load("log_gaussian_cox_process").reference["log_intensity"].mean
    assert np.corrcoef(np.log(counts) - np.log(extents), lgcp)[0, 1] > 0.99
    r = radon_minnesota()
    county_mean = np.array([r.log_radon[r.county == c].mean() for c in range(r.num_counties)])
    radon = load("radon_minnesota").reference["county_effect"].mean
    assert np.corrcoef(county_mean, radon)[0, 1] > 0.6
    _, questions, correct = synthetic_item_response_theory()
    rate = np.bincount(questions, weights=correct) / np.bincount(questions)
    difficulty = load("item_response_theory").reference["question_difficulty"].mean
    assert np.corrcoef(rate, difficulty)[0, 1] < -0.9
    observed, _, _ = brownian_motion_missing_middle()
    seen = ~np.isnan(observed)
    locs = load("brownian_motion").reference["identity"].mean
    assert np.corrcoef(observed[seen], locs[seen])[0, 1] > 0.9


def test_ar1_samples_have_its_moments():
    """The path distribution's sampler (used for prior draws) against its stationary law:
    mean ``loc``, variance ``scale^2 / (1 - rho^2)``, lag-1 correlation ``rho``."""
    torch.manual_seed(0)
    loc, rho, scale = torch.tensor(2.0), torch.tensor(0.8), torch.tensor(0.5)
    x = AR1(loc, rho, scale, num_steps=20).sample(torch.Size([20000])).numpy()
    var = 0.25 / (1 - 0.64)
    se = np.sqrt(var / 20000)
    assert np.all(np.abs(x.mean(0) - 2.0) < 5 * se)
    assert np.all(np.abs(x.var(0) / var - 1) < 5 * np.sqrt(2 / 20000))
    lag = np.corrcoef(x[:, 9], x[:, 10])[0, 1]
    assert abs(lag - 0.8) < 5 * (1 - 0.64) / np.sqrt(20000)


def test_the_gym_is_read_without_tensorflow():
    for name in TARGETS:
        load(name)
    assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
    assert "inference_gym" not in sys.modules
