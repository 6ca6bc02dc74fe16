"""Figure 1 of the paper, three panels (``figure1.png`` and ``figure1.pdf``):

- left: the 1-D posterior density of one weight of the D = 500 model, every other weight
  (and the bias) held at the MAP;
- middle: the 2-D sphere problem's likelihood over the two weights as background, with draws
  from the full-covariance SVI posterior (red) and MCMC draws (white crosses);
- right: the same background with draws from the hierarchical (direction x scale) SVI
  posterior.

Each of the four fits is a run folder like any cell of the study (``OUT_DIR/figure1_fits/``:
``map``, ``svi``, ``mcmc``, ``hier_svi``), made by :func:`bayes_spheres.pipeline.run` from the
project's configs (``conf/``), so the figure uses the same model, inference and optimiser
settings as Table 1, and a rerun reuses finished fits; this module only reads them and draws.
``bayes-spheres-figure OUT_DIR`` makes it; the Table 1 sweep makes it in its folder.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from bayes_spheres.config import validate
from bayes_spheres.data import SphereData, load_spheres
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.io import atomic_path
from bayes_spheres.models import Flat, SphereModel, activation
from bayes_spheres.pipeline import run
from bayes_spheres.run_folder import FIGURE_FITS

log = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# The 2-D problem: two weights and no bias, so that the likelihood is a picture.
TWO_D = ("data.dim=2", "model.bias=false", "data.n_val=10")
# In two dimensions univariate slice updates are the cheap exact choice (a Hamiltonian
# trajectory would spend most of its steps bouncing in the narrow wedge).
TWO_D_MCMC = ("inference.slice.directions=coordinate", "inference.warmup=100", "inference.thin=1")
LEFT = ("data.n_val=10",)


@contextmanager
def _composer() -> Iterator:
    """``hydra.compose`` under the project's config dir (reusing Hydra's if it is running)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield compose
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            yield compose


def _compose(overrides: Sequence[str]) -> DictConfig:
    with _composer() as compose:
        return compose(config_name="config", overrides=list(overrides))


def _data(cfg: DictConfig) -> SphereData:
    d = cfg.data
    return load_spheres(d.dim, d.n_train, d.n_val, d.r_inner, d.r_outer, seed=d.seed)


@dataclass(frozen=True)
class Fit:
    """One of Figure 1's fits, read from its run folder."""

    ensemble: Ensemble
    data: SphereData
    model: SphereModel


def fit_cell(folder: str | Path, overrides: Sequence[str], seed: int) -> Fit:
    """The configured model x inference (``overrides`` as on the CLI) as a run folder:
    :func:`bayes_spheres.pipeline.run` writes it (a finished folder made with the same
    config is reused, as a resumed sweep reuses a cell), and its ensemble is read back.
    One fit per cell: the figure needs no resampled ensemble (a second fit)."""
    cfg = _compose([*overrides, f"seed={seed}", "progress=false", "++method.resample=false"])
    run(cfg, folder)
    ensemble = Ensemble.load(Path(folder) / "ensemble.npz")
    return Fit(ensemble, _data(cfg), validate(cfg).model)


def figure_cells(
    left: Sequence[str] = LEFT, two_d: Sequence[str] = TWO_D
) -> dict[str, tuple[str, ...]]:
    """The overrides of Figure 1's four fits, by the name of their run folder."""
    flat = ("model=flat", *two_d)
    return {
        "map": ("model=flat", "inference=map", *left),
        "svi": (*flat, "inference=svi"),
        "mcmc": (*flat, "inference=mcmc", *TWO_D_MCMC),
        "hier_svi": ("model=hier_noncentered", "inference=svi", *two_d),
    }


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


def figure1(
    out_dir: str | Path,
    seed: int = 0,
    members: int = 300,
    left: Sequence[str] = LEFT,
    two_d: Sequence[str] = TWO_D,
) -> list[Path]:
    """Make Figure 1 in ``out_dir``; returns the paths written (PNG and PDF, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits_dir = Path(out_dir) / FIGURE_FITS
    fits = {
        name: fit_cell(fits_dir / name, [*overrides, f"members={members}"], seed)
        for name, overrides in figure_cells(left, two_d).items()
    }
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
    log.info("figure 1: left panel at D = %d, right panels at D = 2", data.dim)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bayes-spheres-figure", description=__doc__)
    parser.add_argument("out_dir", help="folder for figure1.png and figure1.pdf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=300, help="draws shown per method")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="config overrides for every fit, e.g. data.n_train=200 "
        "(applied after the figure's own; the 2-D panels use " + " ".join(TWO_D) + ")",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = list(args.overrides)
    paths = figure1(
        args.out_dir,
        seed=args.seed,
        members=args.members,
        left=[*LEFT, *extra],
        two_d=[*TWO_D, *extra],
    )
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
