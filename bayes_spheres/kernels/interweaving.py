"""Interweaving on the generic path: after each trajectory, the hyper-parameters of centred
Gaussian sites are updated with those sites' standardised values held fixed (Yu & Meng 2011,
"To center or not to center", J. Comput. Graph. Statist. 20(3); Papaspiliopoulos, Roberts &
Skold 2007).

A *centred* site is a latent ``Normal`` (possibly ``Independent``) whose scale is computed from
other latent sites, such as the Inference Gym's eight schools (``school_effects ~
N(avg_effect, exp(log_stddev))``) or radon (``county_effect ~ N(mean, scale)``). In the
model's own coordinates the scale and the effects form a funnel: where the data are weak, a
trajectory that moves the scale must carry every effect along, and the scale mixes slowly
(the gym's centred eight schools: its least ESS, always the scale's, half that of Pyro's NUTS
in one bench run, docs/published-targets.md). Pyro's own
:class:`~pyro.infer.reparam.LocScaleReparam` (``centered=0``) writes each centred site as
``G = loc + scale * G_decentered`` with ``G_decentered ~ N(0, I)``; in those coordinates the
funnel is gone where the data are weak, and it appears where they are strong. So each update
of :class:`InterweavingSampler` is

1. the path's trajectory update in the model's coordinates (the *centred* ones);
2. the map to the reparameterised model's coordinates (:meth:`Decentring.decentre`: one trace
   of the model, ``G_decentered = (G - loc) / scale``);
3. a univariate slice update (Neal 2003) of each coordinate of the *hyper-parameters* ``H``
   (the latent sites the centred sites' loc and scale are computed from), on the
   reparameterised model's potential (Pyro's, recorded and replayed where a check finds it
   equal, ``kernels/potential.py::replayed``), the decentred values held fixed: a move of the
   scale carries every effect along its funnel at no cost in step size;
4. the map back (:meth:`Decentring.recentre`: one trace of the reparameterised model).

Each step leaves the posterior invariant: 1 is the path's update; 2 and 4 are a bijection and
its inverse, under which Pyro's reparameterised model is the same posterior (``LocScaleReparam``
is exact), so 3 is a Gibbs update of that posterior. Which sites are centred, and their
hyper-parameters, are read off the model at the first point (the gradient of each ``Normal``'s
loc and scale with respect to the unconstrained point); a model without such a site runs the
path's update alone. ``Slice(model, interweave=False)`` turns the step off;
``diagnostics()["interweaving"]`` says what it updates, or why nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from pyro.infer.reparam import LocScaleReparam
from torch import Tensor

from bayes_spheres.kernels.hyper import BatchedAlong, Width
from bayes_spheres.kernels.potential import at, replayed, unravel
from bayes_spheres.kernels.steps import slice_update

# The most hyper-parameter coordinates updated one by one after a trajectory: each costs a
# univariate slice (about five evaluations of the potential).
MAX_HYPER = 32
SUFFIX = "_decentered"  # LocScaleReparam's name for the standardised site


def _normal(fn: dist.Distribution) -> dist.Normal | None:
    """The ``Normal`` under ``Independent`` wrappers (what ``LocScaleReparam`` unwraps)."""
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    return fn if type(fn) in (dist.Normal, torch.distributions.Normal) else None


def renamed(by_site: dict, centred: list[str]) -> dict:
    """``by_site`` with each centred site under its standardised site's name, in order."""
    return {(k + SUFFIX if k in centred else k): v for k, v in by_site.items()}


def trace_at(
    model: Callable, args: tuple, kwargs: dict, shapes: dict, transforms: dict, theta: Tensor
) -> tuple[dict[str, Tensor], poutine.Trace]:
    """The site values of one unconstrained point ``theta`` [P] and the trace of ``model``
    conditioned on their constrained values."""
    values = unravel(theta, shapes)
    constrained = {k: transforms[k].inv(v) for k, v in values.items()}
    return values, poutine.trace(poutine.condition(model, constrained)).get_trace(*args, **kwargs)


@dataclass
class Decentring:
    """The map between the model's unconstrained coordinates and those of the model with its
    centred sites reparameterised (module docstring). Both have the same layout: a centred
    site's slice holds ``G`` in the one and ``G_decentered`` in the other. ``hyper``: the
    indices of the hyper-parameters' coordinates; ``potential``: the reparameterised model's
    potential over a flat vector [P]."""

    model: Callable
    args: tuple
    kwargs: dict
    shapes: dict[str, torch.Size]
    transforms: dict
    centred: list[str]
    hyper: list[int]
    hyper_names: list[str]
    reparameterised: Callable
    potential: Callable[[Tensor], Tensor]
    potential_reason: str

    def decentre(self, theta: Tensor) -> Tensor:
        """Points [C, P] of the model -> the reparameterised model's."""
        rows = []
        for row in theta:
            values, trace = trace_at(
                self.model, self.args, self.kwargs, self.shapes, self.transforms, row
            )
            for name in self.centred:
                normal = _normal(trace.nodes[name]["fn"])
                values[name] = (values[name] - normal.loc) / normal.scale
            rows.append(torch.cat([v.reshape(-1) for v in values.values()]))
        return torch.stack(rows)

    def recentre(self, theta: Tensor) -> Tensor:
        """Points [C, P] of the reparameterised model -> the model's."""
        identity = torch.distributions.transforms.identity_transform
        standard = {k: identity if k in self.centred else t for k, t in self.transforms.items()}
        shapes, transforms = renamed(self.shapes, self.centred), renamed(standard, self.centred)
        rows = []
        for row in theta:
            _, trace = trace_at(
                self.reparameterised, self.args, self.kwargs, shapes, transforms, row
            )
            values = unravel(row, self.shapes)
            for name in self.centred:
                values[name] = trace.nodes[name]["value"].reshape(values[name].shape)
            rows.append(torch.cat([v.reshape(-1) for v in values.values()]))
        return torch.stack(rows)


def _parents(
    model: Callable, args: tuple, kwargs: dict, shapes: dict, transforms: dict, point: Tensor
) -> dict[str, set[int]]:
    """For each latent ``Normal`` site whose scale is computed from the point, the coordinates
    [P] its loc or scale depends on (a gradient at ``point`` [P] with random weights)."""
    with torch.enable_grad():
        theta = point.detach().clone().requires_grad_(True)
        _, trace = trace_at(model, args, kwargs, shapes, transforms, theta)
        found = {}
        for name in shapes:
            normal = _normal(trace.nodes[name]["fn"])
            if normal is None or not normal.scale.requires_grad:
                continue
            weights = [torch.randn_like(t) for t in (normal.loc, normal.scale)]
            mixed = (normal.loc * weights[0]).sum() + (normal.scale * weights[1]).sum()
            (grad,) = torch.autograd.grad(mixed, theta, allow_unused=True)
            if grad is not None:
                found[name] = set(grad.nonzero()[:, 0].tolist())
    return found


def decentring(
    model: Callable | None,
    args: tuple,
    kwargs: dict,
    shapes: dict[str, torch.Size],
    transforms: dict,
    like: Tensor,
    jit_compile: bool = True,
) -> tuple[Decentring | None, str]:
    """The :class:`Decentring` of ``model`` read at ``like`` [1, P], or None, and why."""
    if model is None:
        return None, "potential_fn given: no model to read"
    try:
        parents = _parents(model, args, kwargs, shapes, transforms, like[0])
    except Exception as err:  # a model the probe cannot trace: no interweaving
        return None, f"probe failed: {type(err).__name__}: {err}".splitlines()[0]
    if not parents:
        return None, "no Normal site whose scale depends on another latent site"
    offsets, start = {}, 0
    for name, shape in shapes.items():
        size = int(torch.Size(shape).numel())
        offsets[name] = range(start, start + size)
        start += size
    centred = list(parents)
    own = {i for name in centred for i in offsets[name]}
    hyper = sorted(set().union(*parents.values()) - own)
    if not hyper:
        return None, f"{centred}: no hyper-parameter outside the centred sites"
    if len(hyper) > MAX_HYPER:
        return None, f"{len(hyper)} hyper-parameter coordinates (at most {MAX_HYPER})"
    reparameterised = poutine.reparam(model, {name: LocScaleReparam(0.0) for name in centred})
    _, potential_fn, _, _ = initialize_model(reparameterised, model_args=args, model_kwargs=kwargs)
    new_shapes = renamed(shapes, centred)

    def potential(theta: Tensor) -> Tensor:
        return potential_fn(unravel(theta, new_shapes))

    names = [n for n in shapes if set(offsets[n]) & set(hyper)]
    found = Decentring(
        model, args, kwargs, shapes, transforms, centred, hyper, names, reparameterised,
        potential, "per point: jit_compile=False",
    )  # fmt: skip
    try:  # the map must invert at the first point (a site whose loc or scale broadcasts
        # beyond its value's shape, say, does not)
        point = found.decentre(like)
        back = found.recentre(point)
    except Exception as err:
        return None, f"map to {centred} failed: {type(err).__name__}: {err}".splitlines()[0]
    if back.shape != like.shape or not torch.allclose(back, like, rtol=1e-6, atol=1e-8):
        return None, f"the map to {[n + SUFFIX for n in centred]} does not invert"
    if jit_compile:  # the reparameterised potential recorded, where equal to Pyro's
        with torch.random.fork_rng():
            compiled, found.potential_reason = replayed(
                reparameterised, args, kwargs, new_shapes, potential, point
            )  # fmt: skip
        found.potential = compiled or potential
    return found, f"given {[n + SUFFIX for n in centred]}: {names}"


class InterweavingSampler:
    """A path's sampler (``base``) followed by the interweaving step (module docstring) where
    the target carries a :class:`Decentring` (``target.decentring``); widths adapted during
    the first ``warmup`` sweeps."""

    def __init__(
        self,
        base: object,
        warmup: int,
        init_width: float = 1.0,
        max_steps: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        self.base, self.warmup, self.init_width = base, warmup, init_width
        self.max_steps, self.generator = max_steps, generator
        self.widths: list[Width] | None = None
        self.iteration = self.evaluations = 0

    @property
    def diverging(self) -> Tensor | None:
        return getattr(self.base, "diverging", None)

    def sweep(self, target: object, theta: Tensor, logp: Tensor) -> tuple[Tensor, Tensor]:
        theta, logp = self.base.sweep(target, theta, logp)
        decentring: Decentring | None = target.decentring
        if decentring is None:
            return theta, logp
        if self.widths is None:
            self.widths = [Width(self.init_width) for _ in decentring.hyper]
        point = decentring.decentre(theta)
        logp_point = None  # the reparameterised log density at point, once known
        for k, width in zip(decentring.hyper, self.widths, strict=True):

            def along_k(c: int, t: float, k: int = k) -> Tensor:
                moved = point[c].clone()
                moved[k] += t
                return -at(decentring.potential, moved)

            along = BatchedAlong(along_k, len(point))
            for c, value in enumerate([] if logp_point is None else logp_point.tolist()):
                along.seen[c][0.0] = value
            logp_k = along(point.new_zeros(len(point), 1))[:, 0]
            step = slice_update(along, logp_k, width.width, self.max_steps, self.generator)
            width.record(step, self.iteration < self.warmup)
            self.evaluations += along.evaluations
            point[:, k] += step.t
            logp_point = step.logp
        self.iteration += 1
        theta = decentring.recentre(point)
        return theta, target.log_density(theta)

    def info(self) -> dict:
        if not self.iteration:
            return self.base.info()
        evaluations = round(self.evaluations / self.iteration, 1)
        return self.base.info() | {"interweaving_evaluations_per_update": evaluations}
