"""MAP: penalised maximum likelihood with the model's prior, by L-BFGS (paper, Appendix A).

The paper used PyTorch's L-BFGS without a line search; we use its strong-Wolfe line search,
which converges reliably on this separable problem (``line_search`` in the config).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.models import SphereModel, weights_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LBFGSSettings:
    """Settings of :class:`torch.optim.LBFGS` (config: ``inference.lbfgs``)."""

    max_iter: int = 2000
    tolerance_grad: float = 1e-9
    tolerance_change: float = 1e-14
    history_size: int = 50
    line_search: str | None = "strong_wolfe"  # None: the paper's L-BFGS without line search


def lbfgs_minimise(
    objective: Callable[[], Tensor], theta: Tensor, settings: LBFGSSettings | None = None
) -> dict:
    """Minimise ``objective()`` over the leaf tensor ``theta`` in place with
    :class:`torch.optim.LBFGS`; returns solver info. Raises if the optimum is not finite."""
    s = settings or LBFGSSettings()
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=s.max_iter,
        max_eval=2 * s.max_iter,
        tolerance_grad=s.tolerance_grad,
        tolerance_change=s.tolerance_change,
        history_size=s.history_size,
        line_search_fn=s.line_search,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        u = objective()
        u.backward()
        return u

    opt.step(closure)
    with torch.enable_grad():
        u = objective()
        (g,) = torch.autograd.grad(u, theta)
    state = opt.state[opt._params[0]]
    u = u.detach()
    if not torch.isfinite(u):
        raise FloatingPointError(f"L-BFGS diverged: objective is {float(u)}")
    return {
        "objective": float(u),
        "grad_norm_max": float(g.abs().max()),
        "iterations": int(state.get("n_iter", 0)),
        "evaluations": int(state.get("func_evals", 0)),
    }


def map_estimate(
    model: Callable, *model_args: object, lbfgs: LBFGSSettings | None = None
) -> tuple[dict[str, Tensor], dict]:
    """Constrained latent values at the mode of ``model``'s joint density, and solver info."""
    potential = FlatPotential.from_model(model, *model_args)
    theta = torch.zeros(potential.size, dtype=potential.dtype, device=potential.device)
    theta.requires_grad_(True)
    info = lbfgs_minimise(lambda: potential(theta), theta, lbfgs)
    return potential.constrain(potential.unravel(theta.detach())), info


def fit(
    model: SphereModel,
    data: SphereData,
    members: int = 1,
    seed: int = 0,
    lbfgs: LBFGSSettings | None = None,
    progress: bool = True,
) -> Posterior:
    """MAP of ``model`` on the training set: an ensemble of one (``progress``: no bar, one
    L-BFGS fit takes well under a second)."""
    del members, seed, progress  # deterministic: always one member
    latents, info = map_estimate(model, data.phi_train, data.y_train, lbfgs=lbfgs)
    w, b = weights_of(model, latents, data.dim)
    log.info(
        "MAP: %d L-BFGS iterations, |grad|_max %.2e, |w| %.3g",
        info["iterations"],
        info["grad_norm_max"],
        float(w.norm()),
    )
    ensemble = Ensemble(w[None], b.reshape(1), data.features)
    samples = {k: v.detach()[None, None] for k, v in {**latents, "w": w, "b": b}.items()}
    return Posterior(ensemble, samples, {"map": info})
