"""Ensembles: log-mean-sigmoid, probabilities, batching, saving (paper, Appendix B)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayes_spheres.data import SquaredFeatures
from bayes_spheres.ensemble import Ensemble, log_mean_sigmoid, wrong_class_sign


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def random_ensemble(s: int = 4, d: int = 5, seed: int = 0) -> Ensemble:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(s, d, generator=g, dtype=torch.float64)
    b = torch.randn(s, generator=g, dtype=torch.float64)
    mean = torch.rand(d, generator=g, dtype=torch.float64)
    std = 0.5 + torch.rand(d, generator=g, dtype=torch.float64)
    return Ensemble(w, b, SquaredFeatures(mean, std))


# --- log_mean_sigmoid --------------------------------------------------------------------


def test_log_mean_sigmoid_moderate_values():
    a = 3 * torch.randn(6, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direct = torch.log(torch.sigmoid(a).mean(-1))
    torch.testing.assert_close(log_mean_sigmoid(a), direct, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        log_mean_sigmoid(a, dim=0), torch.log(torch.sigmoid(a).mean(0)), rtol=1e-13, atol=0
    )


def test_log_mean_sigmoid_saturated_negative():
    a = t([-800.0, -1000.0, -900.0])
    # the direct float64 computation underflows ...
    assert torch.log(torch.sigmoid(a).mean()) == -math.inf
    # ... while sigmoid(a) = exp(a) (1 + O(e^a)) there, so log mean = logsumexp(a) - log S
    m = -800.0
    expected = m + math.log(1 + math.exp(-200) + math.exp(-100)) - math.log(3)
    got = float(log_mean_sigmoid(a))
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-15)


def test_log_mean_sigmoid_saturated_positive_and_mixed():
    assert float(log_mean_sigmoid(t([800.0, 1000.0]))) == pytest.approx(0.0, abs=1e-300)
    assert float(log_mean_sigmoid(t([800.0, -800.0]))) == pytest.approx(math.log(0.5), rel=1e-15)
    # one member dominating: log((1 + e^-1000) / 2) -> log(1/2)
    got = log_mean_sigmoid(t([[800.0, -1000.0], [-1000.0, -1000.0]]))
    torch.testing.assert_close(got, t([math.log(0.5), -1000.0]), rtol=1e-15, atol=0)


def test_log_mean_sigmoid_gradient_is_finite_when_saturated():
    a = t([-800.0, -1000.0]).requires_grad_(True)
    (g,) = torch.autograd.grad(log_mean_sigmoid(a), a)
    assert torch.isfinite(g).all()
    # d/da_s log mean exp(a) = softmax(a)_s
    torch.testing.assert_close(g, torch.softmax(a.detach(), 0), rtol=1e-12, atol=0)


def test_wrong_class_sign():
    torch.testing.assert_close(wrong_class_sign(t([0.0, 1.0])), t([1.0, -1.0]))


# --- probabilities -----------------------------------------------------------------------


def naive_prob(ens: Ensemble, x: torch.Tensor) -> np.ndarray:
    w, b = ens.w.numpy(), ens.b.numpy()
    m, s = ens.features.mean.numpy(), ens.features.std.numpy()
    out = []
    for xi in x.numpy():
        phi = (xi**2 - m) / s
        out.append(np.mean([1 / (1 + math.exp(-(phi @ w[k] + b[k]))) for k in range(len(b))]))
    return np.array(out)


def test_prob_is_mean_of_member_sigmoids():
    ens = random_ensemble()
    x = torch.randn(13, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    np.testing.assert_allclose(ens.prob(x).numpy(), naive_prob(ens, x), rtol=1e-13, atol=0)
    logits = ens.logits(x)
    assert logits.shape == (13, 4)
    # a single point's logits, written out
    phi0 = (x[0] ** 2 - ens.features.mean) / ens.features.std
    torch.testing.assert_close(logits[0], ens.w @ phi0 + ens.b, rtol=1e-13, atol=0)


def test_prob_batching_does_not_change_results():
    ens = random_ensemble()
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = ens.prob(x, batch_size=4096)
    # equal up to rounding: BLAS may take a different kernel for a 1-row matrix product
    for bs in (1, 3, 7, 50):
        torch.testing.assert_close(ens.prob(x, batch_size=bs), ref, rtol=1e-15, atol=0)
    assert torch.equal(ens.prob(x, batch_size=50), ref)
    assert ens.prob(x[:0]).shape == (0,)


def test_wrong_prob():
    ens = random_ensemble()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    label = t([0, 1, 0, 1, 1, 0])
    p1 = ens.prob(x)
    torch.testing.assert_close(
        ens.wrong_prob(x, label), torch.where(label == 1, 1 - p1, p1), rtol=0, atol=0
    )
    torch.testing.assert_close(
        ens.wrong_prob(x, label, batch_size=2), ens.wrong_prob(x, label), rtol=0, atol=0
    )


def test_size_dim_and_gradient_reaches_x():
    ens = random_ensemble(s=3, d=5)
    assert ens.size == 3 and ens.dim == 5
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ens.logits(x)[:, 0].sum(), x)
    torch.testing.assert_close(g, 2 * x.detach() * ens.w[0] / ens.features.std)


# --- saving ------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    ens = random_ensemble(s=3, d=4)
    path = tmp_path / "ensemble.npz"
    ens.save(path)
    with np.load(path) as f:
        assert set(f.files) == {"w", "b", "feature_mean", "feature_std"}
        assert f["w"].shape == (3, 4) and f["b"].shape == (3,)
        assert f["feature_mean"].shape == (4,) and f["feature_std"].shape == (4,)
        np.testing.assert_array_equal(f["w"], ens.w.numpy())
    back = Ensemble.load(path)
    for a, b in (
        (back.w, ens.w),
        (back.b, ens.b),
        (back.features.mean, ens.features.mean),
        (back.features.std, ens.features.std),
    ):
        assert torch.equal(a, b)
    assert back.w.dtype == torch.float64
    # no stray temporary files left by the atomic write
    assert [p.name for p in tmp_path.iterdir()] == ["ensemble.npz"]


# --- validation --------------------------------------------------------------------------


def feats(d: int) -> SquaredFeatures:
    return SquaredFeatures(torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64))


@pytest.mark.parametrize(
    ("w", "b", "d"),
    [
        (torch.zeros(4), torch.zeros(1), 4),  # w not [S, D]
        (torch.zeros(2, 4), torch.zeros(3), 4),  # b not [S]
        (torch.zeros(2, 4), torch.zeros(()), 4),  # b scalar
        (torch.zeros(2, 4), torch.zeros(2), 5),  # feature map of another dimension
        (torch.zeros(1, 2, 4), torch.zeros(1), 4),  # too many dims
    ],
)
def test_wrong_shapes_raise(w, b, d):
    with pytest.raises(ValueError):
        Ensemble(w.double(), b.double(), feats(d))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_raise(bad):
    w = torch.zeros(2, 3, dtype=torch.float64)
    w[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        Ensemble(w, torch.zeros(2, dtype=torch.float64), feats(3))
    b = torch.tensor([0.0, bad], dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or inf"):
        Ensemble(torch.zeros(2, 3, dtype=torch.float64), b, feats(3))
