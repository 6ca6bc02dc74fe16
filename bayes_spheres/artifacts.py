"""Files a run writes besides the ensemble: ``posterior.nc`` (ArviZ) and the ELBO trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from bayes_spheres.io import atomic_path


def save_posterior(
    path: str | Path, samples: dict[str, Tensor], sample_stats: dict[str, Tensor] | None = None
) -> None:
    """Draws [chain, draw, ...] as ArviZ ``InferenceData`` in netCDF: the posterior group, and
    a ``sample_stats`` group (e.g. MCMC's ``lp``, ``diverging`` [chain, draw]) when given."""
    import arviz as az

    posterior = {k: v.detach().cpu().numpy() for k, v in samples.items()}
    stats = {k: v.detach().cpu().numpy() for k, v in (sample_stats or {}).items()}
    idata = az.from_dict(posterior=posterior, sample_stats=stats or None)
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))


def save_elbo(csv_path: str | Path, png_path: str | Path, elbo: np.ndarray) -> None:
    """The ELBO per step as CSV (``step,elbo``) and a plot with a running mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(elbo) + 1)
    table = np.column_stack([steps, elbo])
    with atomic_path(csv_path) as tmp:
        np.savetxt(tmp, table, delimiter=",", header="step,elbo", comments="", fmt=["%d", "%.8g"])
    window = max(1, len(elbo) // 200)
    smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, elbo, lw=0.3, alpha=0.4, label="ELBO per step")
    ax.plot(steps[window - 1 :], smooth, lw=1.2, label=f"running mean ({window})")
    lo, hi = np.percentile(elbo[len(elbo) // 10 :], [1, 100])
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_xlabel("step")
    ax.set_ylabel("ELBO (as optimised)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def save_trace(
    png_path: str | Path, samples: dict[str, Tensor], lp: Tensor, coordinates: int = 3
) -> None:
    """Trace plot of MCMC chains: a few coordinates of ``w`` (and ``b``) and the log density,
    one line per chain (draws [chain, draw, ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = samples["w"].detach().cpu().numpy()
    panels = [(f"w[{i}]", w[:, :, i]) for i in range(min(coordinates, w.shape[-1]))]
    if "b" in samples:
        panels.append(("b", samples["b"].detach().cpu().numpy()))
    panels.append(("log density", lp.detach().cpu().numpy()))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.6 * len(panels)), sharex=True)
    for ax, (name, values) in zip(axes, panels, strict=True):
        for c, chain in enumerate(values):
            ax.plot(chain, lw=0.5, alpha=0.8, label=f"chain {c}")
        ax.set_ylabel(name)
    axes[-1].set_xlabel("kept draw")
    axes[0].legend(loc="upper right", fontsize="small", ncol=len(w))
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
