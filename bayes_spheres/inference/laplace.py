"""Laplace approximation (MacKay 2003, ch. 27): a Gaussian at the MAP whose precision is the
Hessian of the negative log joint, via Pyro's :class:`AutoLaplaceApproximation`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoLaplaceApproximation, AutoMultivariateNormal
from pyro.ops.hessian import hessian
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.draws import guide_ensemble
from bayes_spheres.inference.map import LBFGSSettings, MAPSettings, lbfgs_minimise
from bayes_spheres.models import SphereModel

log = logging.getLogger(__name__)


def jittered_cholesky(h: Tensor, max_tries: int = 10) -> tuple[Tensor, float]:
    """Cholesky factor of ``h`` (+ jitter I only if ``h`` is not positive definite).

    Returns the factor and the jitter used (0.0 when none was needed); the jitter starts at
    1e-10 x mean diagonal and grows tenfold.
    """
    jitter = 0.0
    for _ in range(max_tries + 1):
        chol, bad = torch.linalg.cholesky_ex(
            h + jitter * torch.eye(len(h), dtype=h.dtype, device=h.device)
        )
        if not bad:
            return chol, jitter
        jitter = 1e-10 * float(h.diagonal().abs().mean()) if jitter == 0.0 else 10 * jitter
    raise torch.linalg.LinAlgError(f"Hessian is not positive definite even with jitter {jitter}")


def laplace_guide(
    model: SphereModel, *model_args: object, lbfgs: LBFGSSettings | None = None
) -> tuple[AutoMultivariateNormal, dict]:
    """Fit the MAP by L-BFGS inside :class:`AutoLaplaceApproximation`, then return the
    Gaussian guide ``N(map, H^-1)`` over the unconstrained latents, and info. Like any Pyro
    autoguide, its parameters live in Pyro's param store under the guide's names: clear the
    store between fits in one process (``pipeline.run`` and ``figure.py`` do)."""
    delta = AutoLaplaceApproximation(model)
    delta(*model_args)  # set up the guide's parameters
    elbo = Trace_ELBO()
    info = lbfgs_minimise(
        lambda: elbo.differentiable_loss(model, delta, *model_args), delta.loc, lbfgs
    )
    # As AutoLaplaceApproximation.laplace_approximation, with jitter only when needed (Pyro's
    # inverts the Hessian as it is and fails where it is not positive definite).
    guide_trace = poutine.trace(delta).get_trace(*model_args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*model_args)
    loss = guide_trace.log_prob_sum() - model_trace.log_prob_sum()
    h = hessian(loss, delta.loc).detach()
    precision_chol, jitter = jittered_cholesky(h)
    covariance = torch.cholesky_inverse(precision_chol)
    gaussian = AutoMultivariateNormal(model)
    with torch.random.fork_rng():  # its first call sets up its parameters (from prior draws)
        gaussian(*model_args)
    # Its covariance is diag(scale) T T' diag(scale), T unit lower triangular: T and scale
    # from the Cholesky factor L of the covariance, L = diag(diag L) T. Assigning a tensor
    # to a PyroParam sets its value through its constraint.
    chol = torch.linalg.cholesky(covariance)
    with torch.no_grad():
        gaussian.loc = torch.nn.Parameter(delta.loc.detach().clone())
        gaussian.scale = chol.diagonal().clone()
        gaussian.scale_tril = chol / chol.diagonal()[:, None]
    info["posterior_sd"] = covariance.diagonal().sqrt()
    info["hessian_jitter"] = jitter
    return gaussian, info


@dataclass(frozen=True)
class LaplaceSettings(MAPSettings):
    """A Laplace fit's settings: the MAP's L-BFGS (``conf/inference/laplace.yaml``); calling
    it fits (:func:`fit`)."""

    def __call__(
        self, model: SphereModel, data: SphereData, members: int = 1000, seed: int = 0
    ) -> Posterior:
        return fit(model, data, members, seed, self.lbfgs)


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1000,
    seed: int = 0,
    lbfgs: LBFGSSettings | None = None,
) -> Posterior:
    """Laplace approximation of ``model``'s posterior: an ensemble of ``members`` draws
    (no progress bar: the fit takes seconds)."""
    del seed  # the caller seeds Pyro
    guide, info = laplace_guide(model, data.phi_train, data.y_train, lbfgs=lbfgs)
    if info["hessian_jitter"]:
        log.warning("Laplace: Hessian not positive definite; jitter %.3g", info["hessian_jitter"])
    ensemble, samples = guide_ensemble(model, guide, data, members)
    sd = info.pop("posterior_sd")
    log.info(
        "Laplace: MAP in %d iterations; posterior sd %.3g..%.3g",
        info["iterations"],
        float(sd.min()),
        float(sd.max()),
    )
    return Posterior(ensemble, samples, {"laplace": info})
