"""MCMC rows of Table 1: slice sampling (Neal 2003), "1,000 samples" forming the ensemble.

A thin adapter from Pyro's :class:`~pyro.infer.MCMC` to a :class:`Posterior`: the kernel is
:class:`~bayes_spheres.kernels.Slice` (or Pyro's NUTS, ``kernel="nuts"``, as a baseline), run
as a user runs it, ``VectorizedMCMC(Slice(model, settings), num_samples, warmup_steps,
num_chains)`` (all chains as one batch; ``MCMC`` takes the same kernel).
The kernel finds the fast path for the flat and shared-mean models itself. Convergence (R-hat,
bulk/tail ESS over every coordinate; ArviZ on ``az.from_pyro(mcmc)``) goes to ``info``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS
from torch import Tensor

from bayes_spheres import checks
from bayes_spheres.artifacts import save_trace
from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.kernels import Slice, SliceSettings, VectorizedMCMC
from bayes_spheres.models import SphereModel, weights_of
from bayes_spheres.progress import bars_disabled
from bayes_spheres.torch_context import torch_settings

log = logging.getLogger(__name__)

RHAT_WARN = 1.01
TRACE_FILE = "trace.png"  # in the run folder: the chains of a few coordinates and of lp
ESS_WARN = 100


class KernelName(StrEnum):
    SLICE = "slice"
    NUTS = "nuts"


@dataclass(frozen=True)
class MCMCSettings:
    """An MCMC fit's settings, checked when made (``conf/inference/mcmc.yaml`` builds it as
    the ``inference`` node, so a bad value fails before any data are made); calling it fits.

    ``members`` draws from the posterior: ``num_chains`` chains of ``ceil(members /
    num_chains)`` kept draws each, every ``thin``-th after ``warmup`` updates. R-hat, ESS and
    the returned samples (``posterior.nc``) use every draw after warm-up. ``kernel``: ``slice``
    (:class:`~bayes_spheres.kernels.Slice` with ``slice``, its settings; all chains as one
    batch, :class:`~bayes_spheres.kernels.VectorizedMCMC`) or ``nuts`` (Pyro's, the baseline,
    through ``MCMC``). ``threads``: torch's intra-op threads while sampling, restored after
    (None: leave as is); one update works on [chains, N] tensors, where a second thread only
    spin-waits, and on a shared 2-core machine that made a paper-scale fit ~10x slower.
    """

    kernel: KernelName = KernelName.SLICE
    num_chains: int = 8
    warmup: int = 120
    thin: int = 5
    threads: int | None = 1
    slice: SliceSettings = field(default_factory=SliceSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", checks.choice("kernel", self.kernel, KernelName))
        checks.integer("num_chains", self.num_chains, minimum=1)
        checks.integer("warmup", self.warmup)
        checks.integer("thin", self.thin, minimum=1)
        if self.threads is not None:
            checks.integer("threads", self.threads, minimum=1)
        if not isinstance(self.slice, SliceSettings):
            raise checks.SettingError("slice", self.slice, "must be a SliceSettings")

    def __call__(
        self,
        model: SphereModel,
        data: SphereData,
        members: int = 1000,
        seed: int = 0,
    ) -> Posterior:
        return fit(model, data, members, seed, self)


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    settings: MCMCSettings | None = None,
) -> Posterior:
    """``members`` draws from ``model``'s posterior by MCMC (:class:`MCMCSettings`). The
    global random stream is seeded with ``seed`` inside and restored after."""
    settings = settings or MCMCSettings()
    draws = math.ceil(members / settings.num_chains)
    run = {"num_samples": draws * settings.thin, "warmup_steps": settings.warmup,
           "num_chains": settings.num_chains, "disable_progbar": bars_disabled()}  # fmt: skip
    with torch_settings(settings.threads), warnings.catch_warnings(), torch.random.fork_rng():
        warnings.filterwarnings("ignore", "num_chains=", UserWarning)  # sequential chains
        pyro.set_rng_seed(seed)
        if settings.kernel is KernelName.SLICE:
            mcmc = VectorizedMCMC(Slice(model, settings.slice), **run)
        else:
            mcmc = MCMC(NUTS(model), **run)
        mcmc.run(data.phi_train, data.y_train)
    return posterior_of(mcmc, model, data, members, settings.thin)


def posterior_of(
    mcmc: MCMC | VectorizedMCMC, model: SphereModel, data: SphereData, members: int, thin: int
) -> Posterior:
    """The :class:`Posterior` of a finished run: every draw after warm-up in ``samples``
    (``posterior.nc``) and the diagnostics, every ``thin``-th draw in the ensemble."""
    import arviz as az

    latents = mcmc.get_samples(group_by_chain=True)
    samples = _with_weights(model, latents, data.dim)
    idata = az.from_pyro(mcmc, log_likelihood=False)
    convergence = diagnostics(idata.posterior, list(latents))
    _warn_if_unconverged(convergence)
    chain_info = mcmc.diagnostics()
    info = {
        "kernel": type(mcmc.kernel).__name__.lower(),
        "chains": mcmc.num_chains,
        "warmup": mcmc.warmup_steps,
        "thin": thin,
        "divergences": int(idata.sample_stats["diverging"].values.sum()),
        **{
            key: values["chain 0"]
            for key, values in chain_info.items()
            if isinstance(values, dict)
            and "chain 0" in values
            and key not in ("divergences", "log_density")
        },
        **convergence,
    }
    # R-hat's noise over 501 coordinates falls with the draws it sees, so judging convergence
    # on the thinned 1,000 alone would be needlessly noisy: the ensemble keeps every thin-th.
    w = samples["w"][:, thin - 1 :: thin].reshape(-1, data.dim)[:members]
    b = samples["b"][:, thin - 1 :: thin].reshape(-1)[:members]
    stats = {
        "lp": _log_density(mcmc, latents),
        "diverging": torch.as_tensor(idata.sample_stats["diverging"].values),
    }
    return Posterior(
        Ensemble(w, b, data.features),
        samples,
        {"mcmc": info, "convergence": convergence},
        sample_stats=stats,
        artifacts=(lambda out: save_trace(out / TRACE_FILE, samples, stats["lp"]),),
    )


def _log_density(mcmc: MCMC | VectorizedMCMC, latents: dict[str, Tensor]) -> Tensor:
    """``-potential`` (Pyro's, over unconstrained sites) at every draw [chain, draw]: as
    :class:`~bayes_spheres.kernels.Slice` recorded it, or computed draw by draw (NUTS)."""
    chain_info = mcmc.diagnostics().get("log_density")
    if chain_info is not None:
        # on the CPU: diagnostics
        return torch.tensor([chain_info[f"chain {c}"] for c in range(mcmc.num_chains)])
    kernel, transforms = mcmc.kernel, mcmc.transforms  # set up by the run in either regime
    chains, draws = next(iter(latents.values())).shape[:2]
    flat = {
        k: (transforms[k](v) if k in transforms else v).reshape(chains * draws, *v.shape[2:])
        for k, v in latents.items()
    }
    with torch.no_grad():
        lp = [
            -kernel.potential_fn({k: v[i] for k, v in flat.items()}) for i in range(chains * draws)
        ]
    return torch.stack(lp).reshape(chains, draws)


def _with_weights(model: SphereModel, latents: dict[str, Tensor], dim: int) -> dict[str, Tensor]:
    """Latent draws [C, S, ...] plus the ``w`` [C, S, D] and ``b`` [C, S] they imply."""
    c, s = next(iter(latents.values())).shape[:2]
    flat = {k: v.detach().reshape(c * s, *v.shape[2:]) for k, v in latents.items()}
    w, b = weights_of(model, flat, dim)  # one batch dimension, as the priors are written
    out = {k: v.detach() for k, v in latents.items()}
    return {**out, "w": w.reshape(c, s, dim), "b": b.reshape(c, s)}


def diagnostics(posterior: object, names: list[str]) -> dict[str, float]:
    """Worst R-hat and smallest bulk/tail ESS over every coordinate of the sites ``names``
    (ArviZ; Vehtari et al. 2021) of an ArviZ posterior group."""
    import arviz as az

    rhat = az.rhat(posterior, var_names=names)
    bulk = az.ess(posterior, var_names=names, method="bulk")
    tail = az.ess(posterior, var_names=names, method="tail")

    def over(ds: object, fn: object) -> float:
        return float(fn(np.concatenate([np.ravel(ds[k].values) for k in names])))

    return {
        "rhat_max": over(rhat, np.nanmax),
        "ess_bulk_min": over(bulk, np.nanmin),
        "ess_bulk_median": over(bulk, np.nanmedian),
        "ess_tail_min": over(tail, np.nanmin),
    }


def _warn_if_unconverged(convergence: dict[str, float]) -> None:
    if convergence["rhat_max"] > RHAT_WARN or convergence["ess_bulk_min"] < ESS_WARN:
        log.warning(
            "MCMC may not have converged: R-hat max %.3f (want <= %.2f), bulk ESS min %.0f "
            "(want >= %d); more warm-up or draws",
            convergence["rhat_max"],
            RHAT_WARN,
            convergence["ess_bulk_min"],
            ESS_WARN,
        )
