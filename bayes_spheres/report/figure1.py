"""Figure 1 of the paper, three panels (``figure1.png`` and ``figure1.pdf``), drawn from the
run folders of its four fits:

- left: the 1-D posterior density of one weight of the D = 500 model, every other weight
  (and the bias) held at the MAP;
- middle: the 2-D sphere problem's likelihood over the two weights as background, with draws
  from the full-covariance SVI posterior (red) and MCMC draws (white crosses);
- right: the same background with draws from the hierarchical (direction x scale) SVI
  posterior.

The fits are cells of the sweep ``bayes-spheres experiment=figure1`` (``conf/experiment/
figure1.yaml``: ``OUT_DIR/figure1_fits/{map,svi,mcmc,hier_svi}``), made like any cell of the
study from the project's configs, so the figure uses the same model, inference and optimiser
settings as Table 1; the sweep's callback draws the figure when it ends. This module only
reads run folders (each fit's ensemble, and its data and model from the config the run saved)
and draws: ``bayes-spheres-figure OUT_DIR`` redraws it.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor

from bayes_spheres.config import validate
from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.io import atomic_path
from bayes_spheres.models import Flat, SphereModel, activation
from bayes_spheres.run_folder import ENSEMBLE_FILE, FIGURE_FITS

log = logging.getLogger(__name__)

FITS = ("map", "svi", "mcmc", "hier_svi")  # conf/experiment/figure1/, by run folder
SWEEP = "bayes-spheres experiment=figure1"


@dataclass(frozen=True)
class Fit:
    """One of Figure 1's fits, read from its run folder."""

    ensemble: Ensemble
    data: SphereData
    model: SphereModel


def read_fit(folder: str | Path) -> Fit:
    """The fit in run folder ``folder``: its ensemble, and the data and model of the config
    Hydra saved there (``.hydra/config.yaml``)."""
    folder = Path(folder)
    saved = folder / ".hydra" / "config.yaml"
    if not (folder / ENSEMBLE_FILE).is_file() or not saved.is_file():
        raise FileNotFoundError(
            f"no finished fit in {folder} (needs {ENSEMBLE_FILE} and .hydra/config.yaml): "
            f"run `{SWEEP}` first"
        )
    plan = validate(OmegaConf.load(saved))
    ensemble = Ensemble.load(folder / ENSEMBLE_FILE)
    return Fit(ensemble, plan.data.load(), plan.model)


def log_likelihood(
    model: SphereModel, phi: Tensor, y: Tensor, w: Tensor, b: Tensor | float = 0.0
) -> Tensor:
    """``sum_n log p(y_n | phi_n, w, b)`` under ``model``'s likelihood, for a batch of
    weights ``w`` [..., D]."""
    a = activation(phi, w.reshape(-1, w.shape[-1]), b)  # [N, K]
    return model.likelihood(a).log_prob(y[:, None]).sum(0).reshape(w.shape[:-1])


def conditional_density(
    model: Flat, data: SphereData, w_map: Tensor, b_map: Tensor, coord: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior density of ``w[coord]`` under the flat ``model`` (prior
    ``N(0, sigma^2)``) with every other weight at the MAP, on a grid that covers the mass;
    normalised numerically."""
    phi, y, sigma = data.phi_train, data.y_train, model.sigma

    def logp(t: Tensor) -> Tensor:
        w = w_map.expand(len(t), -1).clone()
        w[:, coord] = t
        return log_likelihood(model, phi, y, w, b_map) - 0.5 * (t / sigma) ** 2

    centre = float(w_map[coord])
    half = 1.0
    while half < 100 * sigma:  # widen until the density at both ends is negligible
        ends = logp(phi.new_tensor([centre - half, centre + half]))
        if float(ends.max() - logp(phi.new_tensor([centre]))[0]) < -12:
            break
        half *= 2
    # on the CPU: the figure draws with numpy
    t = torch.linspace(centre - half, centre + half, 2001, dtype=phi.dtype)
    lp = logp(t)
    dens = torch.exp(lp - lp.max())
    dens = dens / torch.trapezoid(dens, t)
    return t.numpy(), dens.numpy()


def _background(ax, fit: Fit, extent: tuple[float, float, float, float]) -> None:
    lo_x, hi_x, lo_y, hi_y = extent
    data = fit.data
    dtype = data.phi_train.dtype
    # on the CPU: the figure draws with numpy
    g1, g2 = torch.meshgrid(
        torch.linspace(lo_x, hi_x, 240, dtype=dtype),
        torch.linspace(lo_y, hi_y, 240, dtype=dtype),
        indexing="xy",
    )
    ll = log_likelihood(fit.model, data.phi_train, data.y_train, torch.stack([g1, g2], -1))
    ax.imshow(
        torch.exp(ll - ll.max()).numpy(),
        extent=extent,
        origin="lower",
        cmap="viridis",
        aspect="auto",
    )
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")


def _extent(*clouds: np.ndarray) -> tuple[float, float, float, float]:
    pts = np.concatenate(clouds)
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    pad = 0.15 * (hi - lo) + 1e-3
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def figure1(out_dir: str | Path) -> list[Path]:
    """Draw Figure 1 in ``out_dir`` from the fits under ``out_dir/figure1_fits/``; returns the
    paths written (PNG and PDF, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = {name: read_fit(Path(out_dir) / FIGURE_FITS / name) for name in FITS}
    flat = {name: fits[name].data.dim for name in ("svi", "mcmc", "hier_svi")}
    if set(flat.values()) != {2}:
        raise ValueError(
            f"Figure 1's middle and right panels are pictures of the 2-D problem, but its fits "
            f"have data.dim {flat}: leave data.dim out of the overrides of `{SWEEP}`"
        )
    mode = fits["map"]
    data = mode.data
    t, dens = conditional_density(mode.model, data, mode.ensemble.w[0], mode.ensemble.b[0])

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax = axes[0]
    ax.plot(t, dens, color="k")
    ax.set_xlabel(f"$w_1$ (others at the MAP; D = {data.dim})")
    ax.set_ylabel("posterior density")
    ax.set_title("one weight of the D-dim model")

    svi, mcmc, hier = (fits[name].ensemble.w.numpy() for name in ("svi", "mcmc", "hier_svi"))
    # each panel at the extent of its own draws; the SVI draws above the MCMC draws, so that
    # both show where they overlap and MCMC's larger weights stand out beyond them
    panels = ((axes[1], "full-covariance SVI + MCMC", (svi, mcmc)),
              (axes[2], "hierarchical SVI", (hier,)))  # fmt: skip
    for ax, title, clouds in panels:
        extent = _extent(*clouds)
        _background(ax, fits["svi"], extent)
        ax.set_title(f"2-D spheres: {title}")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
    axes[1].scatter(*mcmc.T, s=14, c="white", marker="x", lw=0.7, alpha=0.8,
                    label="MCMC draws", zorder=2)  # fmt: skip
    axes[1].scatter(*svi.T, s=7, c="red", edgecolors="black", linewidths=0.2,
                    label="SVI draws", zorder=3)  # fmt: skip
    axes[1].legend(loc="lower right", fontsize=7, framealpha=0.6)
    axes[2].scatter(*hier.T, s=7, c="red", edgecolors="black", linewidths=0.2,
                    label="hier. SVI draws", zorder=3)  # fmt: skip
    axes[2].legend(loc="lower right", fontsize=7, framealpha=0.6)
    fig.tight_layout()
    out_dir = Path(out_dir)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"figure1.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=130)
        paths.append(path)
    plt.close(fig)
    log.info(
        "figure 1: left panel at D = %d, right panels at D = %d", data.dim, fits["svi"].data.dim
    )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bayes-spheres-figure", description=__doc__)
    parser.add_argument(
        "out_dir", help=f"the sweep folder of `{SWEEP}` (figure1.png and figure1.pdf go there)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print("\n".join(map(str, figure1(args.out_dir))))


if __name__ == "__main__":
    main()
