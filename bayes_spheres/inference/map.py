"""MAP: penalised maximum likelihood with the model's prior, by L-BFGS (paper, Appendix A).

The paper used PyTorch's L-BFGS without a line search; we use its strong-Wolfe line search,
which converges reliably on this separable problem (``line_search`` in the config).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import torch
from torch import Tensor

from bayes_spheres import checks
from bayes_spheres.data import SphereData
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference import Posterior
from bayes_spheres.inference.potential import FlatPotential
from bayes_spheres.models import SphereModel, weights_of

log = logging.getLogger(__name__)


class LineSearch(StrEnum):
    STRONG_WOLFE = "strong_wolfe"


@dataclass(frozen=True)
class LBFGSSettings:
    """Settings of :class:`torch.optim.LBFGS` (config: ``inference.lbfgs``), checked when
    made. ``line_search``: ``strong_wolfe`` or None, the paper's L-BFGS without one."""

    max_iter: int = 2000
    tolerance_grad: float = 1e-9
    tolerance_change: float = 1e-14
    history_size: int = 50
    line_search: LineSearch | None = LineSearch.STRONG_WOLFE

    def __post_init__(self) -> None:
        checked = {
            "max_iter": checks.integer("max_iter", self.max_iter, minimum=1),
            "tolerance_grad": checks.positive("tolerance_grad", self.tolerance_grad),
            "tolerance_change": checks.positive("tolerance_change", self.tolerance_change),
            "history_size": checks.integer("history_size", self.history_size, minimum=1),
        }
        if self.line_search is not None:
            checked["line_search"] = checks.choice("line_search", self.line_search, LineSearch)
        for name, value in checked.items():  # frozen: the checked, normalised values
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class MAPSettings:
    """A MAP fit's settings (``conf/inference/map.yaml`` builds it as the ``inference`` node,
    ``lbfgs`` as ``inference.lbfgs``); calling it fits (:func:`fit`)."""

    lbfgs: LBFGSSettings = field(default_factory=LBFGSSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.lbfgs, LBFGSSettings):
            raise checks.SettingError("lbfgs", self.lbfgs, "must be an LBFGSSettings")

    def __call__(
        self, model: SphereModel, data: SphereData, members: int = 1, seed: int = 0
    ) -> Posterior:
        return fit(model, data, members, seed, self.lbfgs)


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
) -> Posterior:
    """MAP of ``model`` on the training set: an ensemble of one (no progress bar: one
    L-BFGS fit takes well under a second)."""
    del members, seed  # deterministic: always one member
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
