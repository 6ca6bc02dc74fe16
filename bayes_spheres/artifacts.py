"""Files a run writes besides the ensemble: ``posterior.nc`` (ArviZ) and the ELBO trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from bayes_spheres.io import atomic_path


def save_posterior(
    path: str | Path,
    samples: dict[str, Tensor],
    sample_stats: dict[str, Tensor] | None = None,
    log_likelihood: dict[str, Tensor] | None = None,
    observed_data: dict[str, Tensor] | None = None,
    log_likelihood_dtype: str = "float64",
) -> None:
    """Draws [chain, draw, ...] as ArviZ ``InferenceData`` in netCDF: the posterior group, and
    when given a ``sample_stats`` group (e.g. MCMC's ``lp``, ``diverging`` [chain, draw]), the
    pointwise ``log_likelihood`` [chain, draw, N] (stored as ``log_likelihood_dtype``) and the
    ``observed_data`` it belongs to, so ``az.loo``, ``az.waic`` and ``az.compare`` read it."""
    import arviz as az

    def arrays(group: dict[str, Tensor] | None, dtype: str | None = None) -> dict | None:
        if not group:
            return None
        values = {k: v.detach().cpu().numpy() for k, v in group.items()}
        return values if dtype is None else {k: v.astype(dtype) for k, v in values.items()}

    idata = az.from_dict(
        posterior=arrays(samples),
        sample_stats=arrays(sample_stats),
        log_likelihood=arrays(log_likelihood, log_likelihood_dtype),
        observed_data=arrays(observed_data),
    )
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
    """ArviZ's trace plot (``az.plot_trace``: each chain's density and trace) of a few
    coordinates of ``w``, of ``b`` and of the log density ``lp`` (draws [chain, draw, ...])."""
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    draws = {"w": samples["w"].detach().cpu().numpy()[..., :coordinates]}
    if "b" in samples:
        draws["b"] = samples["b"].detach().cpu().numpy()
    draws["lp"] = lp.detach().cpu().numpy()
    axes = az.plot_trace(draws, compact=False, figsize=(9, 1.6 * (coordinates + len(draws))))
    fig = axes.ravel()[0].figure
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
