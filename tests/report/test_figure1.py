"""Figure 1 from run folders: the conditional density of one weight, the error where a fit is
missing, and the whole sweep (``experiment=figure1``) at a tiny scale through the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bayes_spheres.models import Flat
from bayes_spheres.report import collect
from bayes_spheres.report.figure1 import conditional_density, log_likelihood, read_fit
from bayes_spheres.run_folder import FIGURE_FITS

TINY = ["scale=quick", "data.n_train=60", "members=20", "restarts=2", "progress=false"]


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "bayes_spheres.app", *args],
        capture_output=True, text=True, timeout=900, cwd=cwd,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return res


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


def test_conditional_density_peaks_at_the_map_of_a_run_folder(tmp_path):
    """A MAP run made by the CLI, read back as a fit: with the other weights at the MAP, the
    conditional of one weight peaks at that weight's MAP value (the joint is strictly
    log-concave and maximal there) and integrates to one."""
    folder = tmp_path / "map"
    cli("model=flat", "inference=map", *TINY, "data.dim=10", f"hydra.run.dir={folder}",
        cwd=tmp_path)  # fmt: skip
    fit = read_fit(folder)
    assert fit.data.dim == 10 and len(fit.data.y_train) == 60 and isinstance(fit.model, Flat)
    mode = fit.ensemble
    for coord in (0, 3):
        t, dens = conditional_density(fit.model, fit.data, mode.w[0], mode.b[0], coord=coord)
        spacing = t[1] - t[0]
        assert abs(t[dens.argmax()] - float(mode.w[0, coord])) <= spacing
        assert float(torch.trapezoid(torch.as_tensor(dens), torch.as_tensor(t))) == (
            pytest.approx(1.0, abs=1e-9)
        )
        assert dens[0] < 1e-4 * dens.max() and dens[-1] < 1e-4 * dens.max()


def test_a_missing_fit_names_the_sweep_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment=figure1"):
        read_fit(tmp_path / FIGURE_FITS / "map")


@pytest.mark.slow
def test_the_figure_sweep_writes_png_and_pdf_and_a_rerun_reuses_its_fits(tmp_path):
    sweep = tmp_path / "figure1"
    args = ["experiment=figure1", *TINY, "members=40", f"hydra.sweep.dir={sweep}"]
    args.append("hydra.launcher.n_jobs=1")
    cli(*args, cwd=tmp_path)
    assert (sweep / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (sweep / "figure1.pdf").read_bytes()[:5] == b"%PDF-"
    fits = sorted(p.parent.name for p in (sweep / FIGURE_FITS).glob("*/metrics.json"))
    assert fits == ["hier_svi", "map", "mcmc", "svi"]
    assert read_fit(sweep / FIGURE_FITS / "svi").data.dim == 2
    assert collect(sweep) == []  # the figure's fits are no rows of a table
    # a rerun reuses the finished fits; the figure command redraws from them alone
    stamps = {p: p.stat().st_mtime_ns for p in (sweep / FIGURE_FITS).rglob("ensemble.npz")}
    cli(*args, cwd=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    (sweep / "figure1.png").unlink()
    res = subprocess.run(
        [sys.executable, "-m", "bayes_spheres.report.figure1", str(sweep)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert (sweep / "figure1.png").is_file()
