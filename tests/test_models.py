"""The four priors (docs/paper.md, "Priors"): log densities by hand, sites, and the two
parameterisations of the hierarchical model giving one distribution."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from bayes_spheres.models import (
    Flat,
    Hierarchical,
    ModelName,
    SharedMean,
    activation,
    pointwise_log_likelihood,
    weights_of,
)

LOG_2PI = math.log(2 * math.pi)
D, N = 3, 7


# --- hand-written reference densities (no torch.distributions) -----------------------------


def normal_lp(x, loc, scale) -> float:
    x = np.asarray(x, dtype=float)
    z = (x - loc) / scale
    return float(np.sum(-0.5 * z**2 - math.log(scale) - 0.5 * LOG_2PI))


def lognormal_lp(x: float, mu: float, sd: float) -> float:
    z = (math.log(x) - mu) / sd
    return -0.5 * z**2 - math.log(sd) - 0.5 * LOG_2PI - math.log(x)


def bernoulli_ll(phi: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    a = phi @ w + b
    return float(np.sum(y * a - np.logaddexp(0.0, a)))


# --- a fixed point ------------------------------------------------------------------------


@pytest.fixture
def point():
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0, 0], dtype=torch.float64)
    return {
        "phi": phi,
        "y": y,
        "w": torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64),
        "v": torch.tensor([0.4, -0.9, 1.6], dtype=torch.float64),
        "s": torch.tensor(3.2, dtype=torch.float64),
        "mu": torch.tensor(-0.8, dtype=torch.float64),
        "b": torch.tensor(0.35, dtype=torch.float64),
    }


def traced(model, data, phi, y):
    return poutine.trace(poutine.condition(model, data=data)).get_trace(phi, y)


def np_(t):
    return t.detach().numpy()


@pytest.mark.parametrize("bias", [True, False])
def test_flat_log_density(point, bias):
    m = Flat(sigma=2.5, bias=bias, bias_scale=4.0)
    data = {"w": point["w"]} | ({"b": point["b"]} if bias else {})
    tr = traced(m, data, point["phi"], point["y"])
    b = float(point["b"]) if bias else 0.0
    expected = normal_lp(np_(point["w"]), 0.0, 2.5)
    expected += normal_lp(b, 0.0, 4.0) if bias else 0.0
    expected += bernoulli_ll(np_(point["phi"]), np_(point["y"]), np_(point["w"]), b)
    assert float(tr.log_prob_sum()) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_hierarchical_centered_log_density(point, bias):
    m = Hierarchical(centered=True, scale_median=5.0, scale_log_sd=0.7, bias=bias, bias_scale=3.0)
    data = {"s": point["s"], "w": point["w"]} | ({"b": point["b"]} if bias else {})
    tr = traced(m, data, point["phi"], point["y"])
    s, b = float(point["s"]), (float(point["b"]) if bias else 0.0)
    expected = lognormal_lp(s, math.log(5.0), 0.7) + normal_lp(np_(point["w"]), 0.0, s)
    expected += normal_lp(b, 0.0, 3.0) if bias else 0.0
    expected += bernoulli_ll(np_(point["phi"]), np_(point["y"]), np_(point["w"]), b)
    assert float(tr.log_prob_sum()) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_hierarchical_noncentered_log_density(point, bias):
    m = Hierarchical(centered=False, scale_median=5.0, scale_log_sd=0.7, bias=bias, bias_scale=3.0)
    data = {"s": point["s"], "w_decentered": point["v"]} | ({"b": point["b"]} if bias else {})
    tr = traced(m, data, point["phi"], point["y"])
    s, b = float(point["s"]), (float(point["b"]) if bias else 0.0)
    w = s * np_(point["v"])
    # latent sites are s, v = w_decentered and b; w = s v is derived and has no density
    expected = lognormal_lp(s, math.log(5.0), 0.7) + normal_lp(np_(point["v"]), 0.0, 1.0)
    expected += normal_lp(b, 0.0, 3.0) if bias else 0.0
    expected += bernoulli_ll(np_(point["phi"]), np_(point["y"]), w, b)
    assert float(tr.log_prob_sum()) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(tr.nodes["w"]["value"], point["s"] * point["v"], rtol=1e-15, atol=0)
    free = poutine.trace(m).get_trace(point["phi"], point["y"])
    latent = {
        n
        for n, node in free.nodes.items()
        if node["type"] == "sample" and not node["is_observed"] and not n.startswith("data")
    }
    assert latent == ({"s", "w_decentered", "b"} if bias else {"s", "w_decentered"})


@pytest.mark.parametrize("bias", [True, False])
def test_shared_mean_log_density(point, bias):
    m = SharedMean(sigma_mu=6.0, sigma=1.7, bias=bias, bias_scale=2.0)
    data = {"mu": point["mu"], "w": point["w"]} | ({"b": point["b"]} if bias else {})
    tr = traced(m, data, point["phi"], point["y"])
    mu, b = float(point["mu"]), (float(point["b"]) if bias else 0.0)
    expected = normal_lp(mu, 0.0, 6.0) + normal_lp(np_(point["w"]), mu, 1.7)
    expected += normal_lp(b, 0.0, 2.0) if bias else 0.0
    expected += bernoulli_ll(np_(point["phi"]), np_(point["y"]), np_(point["w"]), b)
    assert float(tr.log_prob_sum()) == pytest.approx(expected, rel=1e-12, abs=1e-12)


ALL_MODELS = [
    pytest.param(lambda bias: Flat(bias=bias), id="flat"),
    pytest.param(lambda bias: Hierarchical(centered=True, bias=bias), id="hier_centered"),
    pytest.param(lambda bias: Hierarchical(centered=False, bias=bias), id="hier_noncentered"),
    pytest.param(lambda bias: SharedMean(bias=bias), id="shared_mean"),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("make", ALL_MODELS)
def test_every_model_exposes_w_and_b(point, make, bias):
    m = make(bias)
    tr = poutine.trace(m).get_trace(point["phi"])
    assert tr.nodes["w"]["value"].shape == (D,)
    assert tr.nodes["b"]["value"].shape == ()
    assert tr.nodes["y"]["value"].shape == (N,)
    if not bias:
        assert float(tr.nodes["b"]["value"]) == 0.0
        assert tr.nodes["b"]["infer"].get("_deterministic") is True
    else:
        assert not tr.nodes["b"]["is_observed"]


def test_model_names():
    assert Flat().name == ModelName.FLAT
    assert Hierarchical(centered=True).name == ModelName.HIER_CENTERED
    assert Hierarchical(centered=False).name == ModelName.HIER_NONCENTERED
    assert SharedMean().name == ModelName.SHARED_MEAN


def test_activation_single_and_members():
    phi = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    w = torch.tensor([0.5, -1.0], dtype=torch.float64)
    torch.testing.assert_close(
        activation(phi, w, 0.25), torch.tensor([-1.25, -0.75], dtype=torch.float64)
    )
    ws = torch.stack([w, 2 * w])  # [S=2, D]
    bs = torch.tensor([0.25, 1.0], dtype=torch.float64)
    torch.testing.assert_close(
        activation(phi, ws, bs), torch.tensor([[-1.25, -2.0], [-0.75, -1.0]], dtype=torch.float64)
    )


@pytest.mark.parametrize("bias", [True, False])
def test_weights_of(point, bias):
    w, v, s, mu, b = point["w"], point["v"], point["s"], point["mu"], point["b"]
    extra = {"b": b} if bias else {}
    b_expected = b if bias else torch.zeros((), dtype=torch.float64)
    cases = [
        (Flat(bias=bias), {"w": w}, w),
        (Hierarchical(centered=True, bias=bias), {"s": s, "w": w}, w),
        (Hierarchical(centered=False, bias=bias), {"s": s, "w_decentered": v}, s * v),
        (SharedMean(bias=bias), {"mu": mu, "w": w}, w),
    ]
    for model, latents, w_expected in cases:
        got_w, got_b = weights_of(model, latents | extra, D)
        torch.testing.assert_close(got_w, w_expected, rtol=1e-15, atol=0)
        torch.testing.assert_close(got_b, b_expected, rtol=0, atol=0)
        assert got_w.dtype == torch.float64


PARAMS = [
    (Flat, "sigma"),
    (Flat, "bias_scale"),
    (Hierarchical, "scale_median"),
    (Hierarchical, "scale_log_sd"),
    (Hierarchical, "bias_scale"),
    (SharedMean, "sigma_mu"),
    (SharedMean, "sigma"),
    (SharedMean, "bias_scale"),
]


@pytest.mark.parametrize("bad", [0, 0.0, -1, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize(("cls", "param"), PARAMS)
def test_invalid_prior_values_raise(cls, param, bad):
    with pytest.raises(ValueError, match=rf"^{param}=.*: must be a finite number > 0") as err:
        cls(**{param: bad})
    assert repr(bad) in str(err.value)


# --- centered and non-centered: one distribution of w ------------------------------------


def prior_draws(model, n: int, dim: int = 2) -> torch.Tensor:
    import pyro

    pyro.set_rng_seed(1 if model.centered else 2)
    phi = torch.zeros(1, dim, dtype=torch.float64)
    return torch.stack([poutine.trace(model).get_trace(phi).nodes["w"]["value"] for _ in range(n)])


def _std_normal_cdf(z: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1 + np.vectorize(erf)(z / math.sqrt(2)))


def test_centered_and_noncentered_give_same_prior_on_w():
    n, median, log_sd = 6000, 10.0, 1.0
    draws = {
        c: prior_draws(
            Hierarchical(centered=c, scale_median=median, scale_log_sd=log_sd, bias=False), n
        )
        for c in (True, False)
    }

    # Known values: log|w_i| = log s + log|z_i| with log s ~ N(log median, log_sd^2), z ~ N(0,1).
    var_log_abs_z = math.pi**2 / 8
    e_log_abs = math.log(median) - (0.5772156649015329 + math.log(2)) / 2
    sd_log_abs = math.sqrt(log_sd**2 + var_log_abs_z)
    rho = log_sd**2 / (log_sd**2 + var_log_abs_z)  # the shared s correlates |w_1| and |w_2|
    # P(|w_1| < 1) = E_s[2 Phi(1/s) - 1] by Gauss-Hermite quadrature over log s
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    s = np.exp(math.log(median) + log_sd * nodes)
    p_small = float(np.sum(weights * (2 * _std_normal_cdf(1 / s) - 1)) / math.sqrt(2 * math.pi))

    stats = {}
    for c, w in draws.items():
        la = w.abs().log()
        frac = float((w[:, 0].abs() < 1).double().mean())
        corr = float(torch.corrcoef(la.T)[0, 1])
        stats[c] = (float(la[:, 0].mean()), frac, corr)
        # each parameterisation against the known answer, 5 standard errors
        assert abs(stats[c][0] - e_log_abs) < 5 * sd_log_abs / math.sqrt(n), (c, stats[c])
        assert abs(frac - p_small) < 5 * math.sqrt(p_small * (1 - p_small) / n), (c, frac)
        assert abs(corr - rho) < 5 * (1 - rho**2) / math.sqrt(n), (c, corr, rho)
        # the two coordinates are exchangeable
        assert abs(float(la[:, 0].mean() - la[:, 1].mean())) < 5 * sd_log_abs * math.sqrt(
            2 * (1 - rho) / n
        )

    # and against each other (two independent samples)
    (m1, f1, c1), (m2, f2, c2) = stats[True], stats[False]
    assert abs(m1 - m2) < 5 * sd_log_abs * math.sqrt(2 / n)
    assert abs(f1 - f2) < 5 * math.sqrt(2 * p_small * (1 - p_small) / n)
    assert abs(c1 - c2) < 5 * (1 - rho**2) * math.sqrt(2 / n)


def bernoulli_pointwise(phi: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    a = phi @ w + b
    return y * a - np.logaddexp(0.0, a)


def draw_by_draw(model, samples, phi, y):
    return pointwise_log_likelihood(model, samples, phi, y)


def batched(model, samples, phi, y):
    return model.pointwise_log_likelihood(samples, phi, y)


@pytest.mark.parametrize("pointwise", [draw_by_draw, batched])
@pytest.mark.parametrize(
    ("make", "latents"),
    [
        (lambda: Flat(), ("w", "b")),
        (lambda: Hierarchical(centered=False), ("s", "w_decentered", "b")),
        (lambda: SharedMean(), ("mu", "w", "b")),
    ],
)
def test_pointwise_log_likelihood_is_each_draws_bernoulli_log_density(
    point, make, latents, pointwise
):
    """[chain, draw, N] over the observed site only: the latents, derived sites (the
    non-centred model's w) and the plate are not data; each value is the hand-written
    Bernoulli log density of that draw at that point. The same from the model's trace draw
    by draw and from all draws at once (the method the pipeline calls)."""
    model = make()
    g = torch.Generator().manual_seed(3)
    chains, draws = 2, 3
    shapes = {"w": (D,), "w_decentered": (D,), "b": (), "mu": ()}
    samples = {
        k: (
            torch.rand(chains, draws, generator=g, dtype=torch.float64) + 0.5
            if k == "s"
            else torch.randn(chains, draws, *shapes[k], generator=g, dtype=torch.float64)
        )
        for k in latents
    }
    if "w_decentered" in samples:  # the derived site, as Posterior.samples keeps it
        samples["w"] = samples["s"][..., None] * samples["w_decentered"]
    log_lik, observed = pointwise(model, samples, point["phi"], point["y"])
    assert set(log_lik) == {"y"} and set(observed) == {"y"}
    assert log_lik["y"].shape == (chains, draws, N)
    np.testing.assert_array_equal(np_(observed["y"]), np_(point["y"]))
    for c in range(chains):
        for d in range(draws):
            expected = bernoulli_pointwise(
                np_(point["phi"]), np_(point["y"]), np_(samples["w"][c, d]),
                float(samples["b"][c, d]),
            )  # fmt: skip
            np.testing.assert_allclose(np_(log_lik["y"][c, d]), expected, rtol=1e-12)


class TemperedFlat(Flat):
    """A user's subclass whose model call tempers the likelihood without saying so in
    ``likelihood``: all draws at once would be wrong for it."""

    def __call__(self, phi, y=None, subsample_size=None):
        w, b = self.prior(phi.shape[1], phi)
        with pyro.plate("data", len(phi)):
            return pyro.sample("y", self.likelihood(0.5 * activation(phi, w, b)), obs=y)


def test_all_draws_at_once_falls_back_to_the_trace_where_the_model_differs(point):
    g = torch.Generator().manual_seed(4)
    samples = {"w": torch.randn(2, 3, D, generator=g, dtype=torch.float64),
               "b": torch.randn(2, 3, generator=g, dtype=torch.float64)}  # fmt: skip
    model = TemperedFlat()
    expected, _ = pointwise_log_likelihood(model, samples, point["phi"], point["y"])
    got, _ = model.pointwise_log_likelihood(samples, point["phi"], point["y"])
    torch.testing.assert_close(got["y"], expected["y"], rtol=1e-12, atol=0)
    plain, _ = Flat().pointwise_log_likelihood(samples, point["phi"], point["y"])
    assert not torch.allclose(plain["y"], expected["y"])  # the check had something to catch


def test_pointwise_log_likelihood_needs_an_observed_site(point):
    samples = {"w": torch.zeros(1, 1, D, dtype=torch.float64)}
    with pytest.raises(ValueError, match="no observed site"):
        pointwise_log_likelihood(Flat(bias=False), samples, point["phi"])
