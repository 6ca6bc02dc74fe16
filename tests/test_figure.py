"""Figure 1: the conditional density of one weight, and the whole figure at a tiny scale."""

from __future__ import annotations

import pytest
import torch

from bayes_spheres.figure import FIGURE_FITS, conditional_density, figure1, fit_cell, log_likelihood
from bayes_spheres.models import Flat
from bayes_spheres.report import collect


def test_log_likelihood_matches_the_bernoulli_sum():
    gen = torch.Generator().manual_seed(0)
    phi, w = torch.randn(7, 3, generator=gen), torch.randn(4, 3, generator=gen)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0, 0])
    a = phi @ w.T + 0.3
    expected = (
        y[:, None] * torch.log(torch.sigmoid(a))
        + (1 - y[:, None]) * torch.log(1 - torch.sigmoid(a))
    ).sum(0)
    torch.testing.assert_close(log_likelihood(Flat(), phi, y, w, 0.3), expected)


def test_conditional_density_peaks_at_the_map_and_integrates_to_one(tmp_path):
    """With the other weights at the MAP, the conditional of one weight peaks at that weight's
    MAP value (the joint is strictly log-concave and maximal there)."""
    overrides = ["model=flat", "inference=map", "scale=quick", "data.dim=10", "data.n_train=60"]
    fit = fit_cell(tmp_path / "map", overrides, seed=0)
    assert (tmp_path / "map" / "metrics.json").is_file()  # a run folder like any cell
    mode = fit.ensemble
    for coord in (0, 3):
        t, dens = conditional_density(fit.model, fit.data, mode.w[0], mode.b[0], coord=coord)
        spacing = t[1] - t[0]
        assert abs(t[dens.argmax()] - float(mode.w[0, coord])) <= spacing
        assert float(torch.trapezoid(torch.as_tensor(dens), torch.as_tensor(t))) == (
            pytest.approx(1.0, abs=1e-9)
        )
        assert dens[0] < 1e-4 * dens.max() and dens[-1] < 1e-4 * dens.max()


@pytest.mark.slow
def test_figure1_writes_png_and_pdf(tmp_path):
    tiny = ["scale=quick", "data.n_train=60"]
    two_d = ["data.dim=2", "model.bias=false", *tiny]
    paths = figure1(tmp_path, members=30, left=[*tiny, "data.dim=10"], two_d=two_d)
    assert [p.name for p in paths] == ["figure1.png", "figure1.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    fits = sorted(p.parent.name for p in (tmp_path / FIGURE_FITS).glob("*/metrics.json"))
    assert fits == ["hier_svi", "map", "mcmc", "svi"]
    assert collect(tmp_path) == []  # the figure's fits are no rows of a table
    # a rerun reuses the finished fits: same draws, same figure inputs
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / FIGURE_FITS).rglob("ensemble.npz")}
    figure1(tmp_path, members=30, left=[*tiny, "data.dim=10"], two_d=two_d)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
