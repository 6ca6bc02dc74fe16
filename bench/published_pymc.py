"""The published targets of :mod:`bayes_spheres.benchmarks` written in PyMC, for nutpie's rows
in ``bench/published.py``: the same densities over the same unconstrained coordinates as the
Pyro models (PyMC's log and interval transforms are Pyro's exp and sigmoid ones), checked by
``published.py`` before sampling. Latent paths are ``pm.Flat`` plus a ``pm.Potential``; the
persistence of volatility is a ``Beta`` on (0, 1) named ``RAW_NAMES`` below, mapped by a
``Deterministic`` to (-1, 1) (the same log-odds coordinate as Pyro's, its Jacobian a
constant apart).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayes_spheres.benchmarks import datasets
from bayes_spheres.benchmarks.hierarchical import TREATMENT_EFFECTS, TREATMENT_STDDEVS

# Pyro site -> PyMC free variable where the names differ
RAW_NAMES = {"persistence_of_volatility": "persistence_of_volatility_beta"}


def normal_logp(x, mu, sigma):  # pytensor tensors in, one out
    return pm.logp(pm.Normal.dist(mu, sigma), x)


def log_ndtr(z):  # a pytensor tensor in, one out
    """``log Phi(z)`` to float64 precision: ``log(erfcx(t)) - t^2 + log 1/2`` at ``t = -z /
    sqrt 2`` below z = 5, ``log1p(-Phi(-z))`` above (``log(pm.math.invprobit(z))`` is off by
    ~1e-8 relative in the lower tail, which the same-posterior check notices)."""
    low = pt.minimum(z, 5.0)
    lower = np.log(0.5) + pt.log(pt.erfcx(-low / np.sqrt(2.0))) - low**2 / 2.0
    upper = pt.log1p(-0.5 * pt.erfc(z / np.sqrt(2.0)))
    return pt.switch(z < 5.0, lower, upper)


def eight_schools(noncentered: bool) -> pm.Model:
    with pm.Model() as model:
        avg = pm.Normal("avg_effect", 0.0, 10.0)
        log_sd = pm.Normal("log_stddev", 5.0, 1.0)
        if noncentered:
            z = pm.Normal("school_effects_decentered", 0.0, 1.0, shape=8)
            theta = pm.Deterministic("school_effects", avg + pt.exp(log_sd) * z)
        else:
            theta = pm.Normal("school_effects", avg, pt.exp(log_sd), shape=8)
        pm.Normal(
            "treatment_effects",
            theta,
            np.asarray(TREATMENT_STDDEVS),
            observed=np.asarray(TREATMENT_EFFECTS),
        )
    return model


def german_credit(kind: str) -> pm.Model:
    features, labels = datasets.german_credit_numeric()
    x = np.hstack([features, np.ones((features.shape[0], 1))])
    d = x.shape[1]
    with pm.Model() as model:
        if kind == "sparse_logistic":
            g = pm.Gamma("global_scale", alpha=0.5, beta=0.5)
            local = pm.Gamma("local_scales", alpha=0.5, beta=0.5, shape=d)
            unscaled = pm.Normal("unscaled_weights", 0.0, 1.0, shape=d)
            w = unscaled * local * g
        else:
            w = pm.Normal("weights", 0.0, 1.0, shape=d)
        z = pt.dot(x, w)
        if kind == "probit":
            logits = log_ndtr(z) - log_ndtr(-z)  # the logit of Phi(z), in both tails
            pm.Bernoulli("labels", logit_p=logits, observed=labels)
        else:
            pm.Bernoulli("labels", logit_p=z, observed=labels)
    return model


def brownian_motion() -> pm.Model:
    observed, innovation, noise = datasets.brownian_motion_missing_middle()
    seen = ~np.isnan(observed)
    with pm.Model() as model:
        x = pm.Flat("locs", shape=observed.shape[0])
        pm.Potential(
            "walk",
            normal_logp(x[0], 0.0, innovation).sum() + normal_logp(x[1:], x[:-1], innovation).sum(),
        )
        pm.Normal("observed_locs", x[np.flatnonzero(seen)], noise, observed=observed[seen])
    return model


def stochastic_volatility() -> pm.Model:
    r = datasets.sp500_returns(100)
    with pm.Model() as model:
        raw = pm.Beta(RAW_NAMES["persistence_of_volatility"], alpha=20.0, beta=1.5)
        phi = pm.Deterministic("persistence_of_volatility", 2.0 * raw - 1.0)
        mu = pm.Cauchy("mean_log_volatility", 0.0, 5.0)
        s = pm.HalfCauchy("white_noise_shock_scale", 2.0)
        h = pm.Flat("log_volatility", shape=r.shape[0])
        pm.Potential(
            "ar1",
            normal_logp(h[0], mu, s / pt.sqrt(1.0 - phi**2))
            + normal_logp(h[1:], mu + phi * (h[:-1] - mu), s).sum(),
        )
        pm.Normal("returns", 0.0, pt.exp(h / 2.0), observed=r)
    return model


def radon() -> pm.Model:
    d = datasets.radon_minnesota()
    with pm.Model() as model:
        mean = pm.Normal("county_effect_mean", 0.0, 1.0)
        scale = pm.Uniform("county_effect_scale", 0.0, 100.0)
        ce = pm.Normal("county_effect", mean, scale, shape=d.num_counties)
        w = pm.Normal("weight", 0.0, 1.0, shape=3)
        sigma = pm.Uniform("log_radon_scale", 0.0, 100.0)
        loc = d.log_uranium * w[0] + d.floor * w[1] + d.floor_by_county * w[2] + ce[d.county]
        pm.Normal("log_radon", loc, sigma, observed=d.log_radon)
    return model


def item_response_theory() -> pm.Model:
    students, questions, correct = datasets.synthetic_item_response_theory()
    with pm.Model() as model:
        m = pm.Normal("mean_student_ability", 0.75, 1.0)
        a = pm.Normal("centered_student_ability", 0.0, 1.0, shape=int(students.max()) + 1)
        b = pm.Normal("question_difficulty", 0.0, 1.0, shape=int(questions.max()) + 1)
        pm.Bernoulli("correct", logit_p=m + a[students] - b[questions], observed=correct)
    return model


def log_gaussian_cox_process() -> pm.Model:
    locations, extents, counts = datasets.synthetic_log_gaussian_cox_process()
    distances = np.sqrt(((locations[:, None] - locations[None]) ** 2).sum(-1))
    n = counts.shape[0]
    with pm.Model() as model:
        amp = pm.LogNormal("amplitude", -1.0, 0.5) + 1e-3
        ls = pm.LogNormal("length_scale", -1.0, 1.0) + 1e-3
        r = np.sqrt(3.0) * distances / ls
        cov = amp**2 * (1.0 + r) * pt.exp(-r) + 1e-6 * np.eye(n)
        mean = np.mean(np.log(counts) - np.log(extents))
        f = pm.MvNormal("log_intensity", mu=np.full(n, mean), cov=cov)
        pm.Poisson("counts", pt.exp(np.log(extents) + f), observed=counts)
    return model


def model(name: str) -> pm.Model:
    """The PyMC model of the target ``name``."""
    if name in ("eight_schools", "eight_schools_noncentered"):
        return eight_schools(noncentered=name.endswith("noncentered"))
    if name.startswith("german_credit_"):
        return german_credit(name.removeprefix("german_credit_"))
    return {
        "brownian_motion": brownian_motion,
        "stochastic_volatility": stochastic_volatility,
        "radon_minnesota": radon,
        "item_response_theory": item_response_theory,
        "log_gaussian_cox_process": log_gaussian_cox_process,
    }[name]()
