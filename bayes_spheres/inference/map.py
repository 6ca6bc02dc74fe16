"""MAP: penalised maximum likelihood with the model's prior, by L-BFGS (paper, Appendix A).

The paper used PyTorch's L-BFGS without a line search; we use its strong-Wolfe line search,
which converges reliably on this separable problem (``line_search`` in the config).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.models import SphereModel, weights_of

log = logging.getLogger(__name__)


def minimise(
    potential: FlatPotential,
    theta0: Tensor | None = None,
    max_iter: int = 2000,
    tolerance_grad: float = 1e-9,
    tolerance_change: float = 1e-14,
    history_size: int = 50,
    line_search: str | None = "strong_wolfe",
) -> tuple[Tensor, dict]:
    """Minimise ``potential`` with :class:`torch.optim.LBFGS`; returns the minimiser and info."""
    theta = (
        torch.zeros(potential.size, dtype=potential.dtype, device=potential.device)
        if theta0 is None
        else theta0.detach().clone()
    )
    theta.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tolerance_grad,
        tolerance_change=tolerance_change,
        history_size=history_size,
        line_search_fn=line_search,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        u = potential(theta)
        u.backward()
        return u

    opt.step(closure)
    with torch.enable_grad():
        u = potential(theta)
        (g,) = torch.autograd.grad(u, theta)
    state = opt.state[opt._params[0]]
    u = u.detach()
    info = {
        "potential": float(u),
        "grad_norm_max": float(g.abs().max()),
        "iterations": int(state.get("n_iter", 0)),
        "evaluations": int(state.get("func_evals", 0)),
    }
    if not torch.isfinite(u):
        raise FloatingPointError(f"MAP diverged: negative log joint is {float(u)}")
    return theta.detach(), info


def map_estimate(model, *model_args: object, **lbfgs: object) -> tuple[dict[str, Tensor], dict]:
    """Constrained latent values at the mode of ``model``'s joint density, and solver info."""
    potential = FlatPotential.from_model(model, *model_args)
    theta, info = minimise(potential, **lbfgs)
    return potential.constrain(potential.unravel(theta)), info


def fit(
    model: SphereModel, data: SphereData, members: int = 1, seed: int = 0, **lbfgs: object
) -> Posterior:
    """MAP of ``model`` on the training set: an ensemble of one."""
    del members, seed  # deterministic: always one member
    latents, info = map_estimate(model, data.phi_train, data.y_train, **lbfgs)
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
