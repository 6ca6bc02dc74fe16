"""Figure 1: the conditional density of one weight, and the whole figure at a tiny scale."""

from __future__ import annotations

import pytest
import torch

from bayes_spheres.figure import conditional_density, figure1, fit_ensemble, log_likelihood


def test_log_likelihood_matches_the_bernoulli_sum():
    gen = torch.Generator().manual_seed(0)
    phi, w = torch.randn(7, 3, generator=gen), torch.randn(4, 3, generator=gen)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0, 0])
    a = phi @ w.T + 0.3
    expected = (
        y[:, None] * torch.log(torch.sigmoid(a))
        + (1 - y[:, None]) * torch.log(1 - torch.sigmoid(a))
    ).sum(0)
    torch.testing.assert_close(log_likelihood(phi, y, w, 0.3), expected)


def test_conditional_density_peaks_at_the_map_and_integrates_to_one():
    """With the other weights at the MAP, the conditional of one weight peaks at that weight's
    MAP value (the joint is strictly log-concave and maximal there)."""
    mode, data = fit_ensemble(
        ["model=flat", "inference=map", "scale=quick", "data.dim=10", "data.n_train=60"], 1, 0
    )
    for coord in (0, 3):
        t, dens = conditional_density(data, mode.w[0], mode.b[0], sigma=10.0, coord=coord)
        spacing = t[1] - t[0]
        assert abs(t[dens.argmax()] - float(mode.w[0, coord])) <= spacing
        assert float(torch.trapezoid(torch.as_tensor(dens), torch.as_tensor(t))) == (
            pytest.approx(1.0, abs=1e-9)
        )
        assert dens[0] < 1e-4 * dens.max() and dens[-1] < 1e-4 * dens.max()


@pytest.mark.slow
def test_figure1_writes_png_and_pdf(tmp_path):
    tiny = ["scale=quick", "data.n_train=60"]
    paths = figure1(
        tmp_path,
        members=30,
        left=[*tiny, "data.dim=10"],
        two_d=["data.dim=2", "model.bias=false", *tiny],
    )
    assert [p.name for p in paths] == ["figure1.png", "figure1.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
