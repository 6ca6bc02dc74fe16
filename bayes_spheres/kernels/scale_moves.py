"""A generalized Gibbs move that changes a global scale of a hierarchical prior together with
the Gaussian block (Liu & Sabatti 2000, "Generalized Gibbs sampler and multigrid Monte
Carlo", JASA 95(451)): the conditional path's answer to a scale ``s`` whose two conditionals,
given ``z`` and given ``w``, are both narrow (``kernels/conditional.py``).

**The move.** In the conditional path's coordinates ``(H, z)`` (unconstrained
hyper-parameters, whitened Gaussian block ``z`` [Pz]), fix a direction ``h`` [K] and exponents
``c`` [Pz] and let ``T_t(H, z) = (H + t h, e^(t c) * z)``. ``T_t T_u = T_(t + u)``: the
additive group acts, and ``T_t`` has Jacobian determinant ``e^(t sum(c))`` at every point.
Liu & Sabatti's Theorem 1 (with the group's left-Haar measure, here ``dt``): drawing ``t``
from ``p(T_t x) |det T_t'(x)| dt`` and moving to ``T_t x`` leaves ``p`` invariant. So one
move is a univariate slice update (Neal 2003) of ``t`` on

    log p(H + t h, e^(t c) z) + t sum(c).

(For ``c = -a`` on all ``D`` coordinates this is ``p(log s + t, e^(-a t) z) e^(-a D t)``.)
:func:`orbit_update` makes it for C chains; ``tests/kernels/test_conditional.py`` checks it
against quadrature, and that leaving out the Jacobian fails.

**Which direction and exponents.** :func:`orbit_exponents`: for a hyper coordinate ``k``,
``g_j = d log |X_j| / d H_k``, how column ``j`` of the logits' matrix ``X(H) = d logits / dz``
grows with it. ``c_j = 1 - g_j`` moves every column, hence the logits ``X z``, by the same
factor ``e^t``: for the hierarchical prior, ``z_w`` stays (``w = s z_w`` scales with ``s``)
and the bias ``b ~ N(0, 10^2)``, whose scale does not depend on ``s``, scales along. Measured
at 16 draws of the paper-scale posterior (D = 500, N = 1,000; ``docs/model-comparison.md``),
the conditional of ``t`` along this orbit has sd 0.30-0.38 (median 0.36), against a
posterior sd of ``log s`` of 0.48; along the orbits ``(log s + t, e^(-a t) z)``, which leave
``b`` alone, it is 0.10 at ``a = 0`` (``s | z``), 0.06 at ``a = 1/2`` and 0.03 at ``a = 1``
(``s | w``), so no ``a`` of that family would do. A coordinate is a *global* scale where
the mean of ``g`` is at least 1/2; one whose ``c`` is all 0 needs no move (it is ``H | z``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bayes_spheres.kernels.fast.logistic import NotLinearLogistic
from bayes_spheres.kernels.hyper import BatchedAlong
from bayes_spheres.kernels.steps import SliceStep, slice_update

# ``(chain, hyper [K], z [Pz]) -> log p``: the joint density of one chain's point.
JointDensity = Callable[[int, Tensor, Tensor], Tensor]
GLOBAL_SLOPE = 0.5  # a hyper coordinate that grows the logits' columns at this mean rate
NO_MOVE = 1e-6  # exponents all within this of 0: the orbit is the coordinate's own line


def orbit_exponents(slopes: Tensor) -> Tensor | None:
    """The exponents ``c`` [Pz] of the move along a hyper coordinate from the log-growth rates
    ``slopes`` [Pz] of the logits' columns along it (module docstring), or None where it is
    not a global scale or the move would be the coordinate's own update."""
    if float(slopes.mean()) < GLOBAL_SLOPE:
        return None
    exponents = 1.0 - slopes
    return None if float(exponents.abs().max()) <= NO_MOVE else exponents


def is_local_scale(slopes: Tensor) -> bool:
    """Whether a hyper coordinate with these log-growth rates of the logits' columns is a
    *local* scale: it scales some columns (a rate of at least 1/2) but not as many as a
    global scale. The conditional path refuses such models (``kernels/conditional.py``)."""
    rates = slopes.abs()
    return float(rates.max()) >= GLOBAL_SLOPE and float(rates.mean()) < GLOBAL_SLOPE


def global_orbits(slopes: Tensor, names: list[str]) -> list[tuple[int, Tensor]]:
    """``(k, c)``: each global scale among the hyper coordinates and its orbit's exponents,
    from ``slopes`` [K, Pz], the log-growth rates of the logits' columns along each
    coordinate (``names``: the coordinates'). Raises
    :class:`~bayes_spheres.kernels.fast.logistic.NotLinearLogistic` for a local scale, such as a
    horseshoe's: where the data pin the product of a local scale and its weights, both of
    their Gibbs conditionals are narrow and the sweeps zig-zag along the funnel (on the
    Inference Gym's sparse German credit regression: R-hat 1.24 and a bulk ESS of 15 after 4 x
    (500 + 500) updates; ``docs/model-comparison.md``), so the generic path takes it."""
    orbits = []
    for k, rates in enumerate(slopes):
        if is_local_scale(rates):
            count = int((rates.abs() >= GLOBAL_SLOPE).sum())
            raise NotLinearLogistic(
                f"{names[k]} is a local scale (of {count} of {len(rates)} Gaussian "
                "coordinates): Gibbs updates would zig-zag along its funnel"
            )
        exponents = orbit_exponents(rates)
        if exponents is not None:
            orbits.append((k, exponents))
    return orbits


def orbit_update(
    density: JointDensity,
    hyper: Tensor,
    z: Tensor,
    direction: Tensor,
    exponents: Tensor,
    width: float = 1.0,
    max_steps: int = 20,
    logp: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, SliceStep, int]:
    """One move ``(H, z) <- (H + t h, e^(t c) z)`` per chain (module docstring) for chains at
    ``hyper`` [C, K], ``z`` [C, Pz]; ``logp`` [C]: ``density`` there, if known. Returns
    ``(hyper, z, logp, step, evaluations)`` with ``logp`` the density at the new points
    (the Jacobian term removed) and ``step.t`` the ``t`` drawn."""
    jacobian = float(exponents.sum())

    def along_orbit(c: int, t: float) -> Tensor:
        return density(c, hyper[c] + t * direction, torch.exp(t * exponents) * z[c]) + (
            jacobian * t
        )

    along = BatchedAlong(along_orbit, len(hyper))
    zero = hyper.new_zeros(len(hyper), 1)
    if logp is not None:  # t = 0: the density itself
        for c, value in enumerate(logp.tolist()):
            along.seen[c][0.0] = value
    logp0 = along(zero)[:, 0]
    step = slice_update(along, logp0, width, max_steps, generator)
    t = step.t[:, None]
    hyper = hyper + t * direction
    z = torch.exp(t * exponents) * z
    return hyper, z, step.logp - jacobian * step.t, step, along.evaluations
