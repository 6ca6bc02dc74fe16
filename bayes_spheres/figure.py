"""Figure 1 of the paper, three panels (``figure1.png`` and ``figure1.pdf``):

- left: the 1-D posterior density of one weight of the D = 500 model, every other weight
  (and the bias) held at the MAP;
- middle: the 2-D sphere problem's likelihood over the two weights as background, with draws
  from the full-covariance SVI posterior (red) and MCMC draws (white crosses);
- right: the same background with draws from the hierarchical (direction x scale) SVI
  posterior.

Every fit goes through the project's configs (``conf/``) and :func:`bayes_spheres.config.validate`,
so the figure uses the same model, inference and optimiser settings as Table 1.
``bayes-spheres-figure OUT_DIR`` makes it; the Table 1 sweep makes it in its folder.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from bayes_spheres.config import validate
from bayes_spheres.data import SphereData, load_spheres
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.io import atomic_path
from bayes_spheres.models import activation

log = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# The 2-D problem: two weights and no bias, so that the likelihood is a picture.
TWO_D = ("data.dim=2", "model.bias=false", "data.n_val=10")
# In two dimensions univariate slice updates are the cheap exact choice (a Hamiltonian
# trajectory would spend most of its steps bouncing in the narrow wedge).
TWO_D_MCMC = ("inference.directions=coordinate", "inference.warmup=100", "inference.thin=1")
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


def fit_ensemble(overrides: Sequence[str], members: int, seed: int) -> tuple[Ensemble, SphereData]:
    """Fit the configured model x inference (``overrides`` as on the CLI) and return its
    ensemble of ``members`` draws and the data it was fit on."""
    cfg = _compose([*overrides, f"seed={seed}", "progress=false"])
    plan = validate(cfg)
    data = _data(cfg)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    post = plan.fit(
        plan.model, data, members=members, seed=seed, progress=False, **plan.fit_settings
    )
    return post.ensemble, data


def log_likelihood(phi: Tensor, y: Tensor, w: Tensor, b: Tensor | float = 0.0) -> Tensor:
    """``sum_n log p(y_n | phi_n, w, b)`` for a batch of weights ``w`` [..., D]."""
    a = activation(phi, w.reshape(-1, w.shape[-1]), b)  # [N, K]
    ll = -F.binary_cross_entropy_with_logits(a, y[:, None].expand_as(a), reduction="none")
    return ll.sum(0).reshape(w.shape[:-1])


def conditional_density(
    data: SphereData, w_map: Tensor, b_map: Tensor, sigma: float, coord: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior density of ``w[coord]`` with every other weight at the MAP (flat prior
    ``N(0, sigma^2)``), on a grid that covers the mass; normalised numerically."""
    phi, y = data.phi_train, data.y_train

    def logp(t: Tensor) -> Tensor:
        w = w_map.expand(len(t), -1).clone()
        w[:, coord] = t
        return log_likelihood(phi, y, w, b_map) - 0.5 * (t / sigma) ** 2

    centre = float(w_map[coord])
    half = 1.0
    while half < 100 * sigma:  # widen until the density at both ends is negligible
        ends = logp(phi.new_tensor([centre - half, centre + half]))
        if float(ends.max() - logp(phi.new_tensor([centre]))[0]) < -12:
            break
        half *= 2
    t = torch.linspace(centre - half, centre + half, 2001, dtype=phi.dtype)
    lp = logp(t)
    dens = torch.exp(lp - lp.max())
    dens = dens / torch.trapezoid(dens, t)
    return t.numpy(), dens.numpy()


def _background(ax, data: SphereData, extent: tuple[float, float, float, float]) -> None:
    lo_x, hi_x, lo_y, hi_y = extent
    dtype = data.phi_train.dtype
    g1, g2 = torch.meshgrid(
        torch.linspace(lo_x, hi_x, 240, dtype=dtype),
        torch.linspace(lo_y, hi_y, 240, dtype=dtype),
        indexing="xy",
    )
    ll = log_likelihood(data.phi_train, data.y_train, torch.stack([g1, g2], -1))
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

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mode, data = fit_ensemble(["model=flat", "inference=map", *left], 1, seed)
        sigma = float(_compose(["model=flat", *left]).model.sigma)
        t, dens = conditional_density(data, mode.w[0], mode.b[0], sigma)
        flat = ["model=flat", *two_d]
        svi, data2 = fit_ensemble([*flat, "inference=svi"], members, seed)
        mcmc, _ = fit_ensemble([*flat, "inference=mcmc", *TWO_D_MCMC], members, seed)
        hier, _ = fit_ensemble(["model=hier_noncentered", "inference=svi", *two_d], members, seed)
    finally:
        torch.set_default_dtype(previous)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax = axes[0]
    ax.plot(t, dens, color="k")
    ax.set_xlabel(f"$w_1$ (others at the MAP; D = {data.dim})")
    ax.set_ylabel("posterior density")
    ax.set_title("one weight of the D-dim model")

    clouds = [e.w.numpy() for e in (svi, mcmc, hier)]
    extent = _extent(*clouds)
    for ax, title in zip(axes[1:], ("full-covariance SVI + MCMC", "hierarchical SVI"), strict=True):
        _background(ax, data2, extent)
        ax.set_title(f"2-D spheres: {title}")
    axes[1].scatter(*clouds[0].T, s=4, c="red", alpha=0.6, label="SVI draws")
    axes[1].scatter(*clouds[1].T, s=12, c="white", marker="x", lw=0.8, label="MCMC draws")
    axes[1].legend(loc="lower right", fontsize=7, framealpha=0.6)
    axes[2].scatter(*clouds[2].T, s=4, c="red", alpha=0.6, label="hier. SVI draws")
    axes[2].legend(loc="lower right", fontsize=7, framealpha=0.6)
    for ax in axes[1:]:
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
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
