"""The generic target: any potential ``theta [P] -> -log p`` (e.g. Pyro's ``potential_fn``
over a flat vector), called once per point; works for any model. Where the model allows it,
:class:`BatchedPotential` computes Pyro's potential for all points (all chains) in one run of
the model instead, and :func:`compiled_potential` replays a recording of Pyro's potential
(Pyro's ``jit_compile``) without running the model's Python code; either is used only where
:func:`differs_from_pyro` finds it equal to Pyro's per-point potential."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.protocols import LogDensityAlong, Splitting


def unravel(theta: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    """Vector(s) [..., sum of sizes] -> site values [..., *shape], in ``shapes``' order."""
    out, i = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = theta[..., i : i + n].reshape(theta.shape[:-1] + shape)
        i += n
    return out


# The batched potential is used where it matches the per-point one to this relative
# tolerance (values and gradients) at every probe point, by dtype.
BATCHED_RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}
PROBE_POINTS = 4


class BatchedPotential:
    """Pyro's potential (``pyro.infer.mcmc.util.initialize_model``'s ``potential_fn``) at B
    unconstrained points [B, P] at once: the model runs once, conditioned on the B points'
    constrained values, inside an outer ``pyro.plate`` of size B placed left of every batch
    dimension of the prototype trace, as Pyro vectorises ELBO particles. The potential of
    point b is minus the sum of every site's log probability over its non-point dimensions,
    plus the transforms' log Jacobians, as in Pyro's ``_PEMaker``. Only models whose code
    broadcasts over that dimension give the right answer: :func:`batched_potential` checks."""

    def __init__(
        self,
        model: Callable,
        args: tuple,
        kwargs: dict,
        transforms: dict,
        shapes: dict[str, torch.Size],
        prototype: Trace,
    ) -> None:
        self.model, self.args, self.kwargs = model, args, kwargs
        self.transforms, self.shapes = transforms, shapes
        batch_dims = {
            name: len(site["fn"].batch_shape)
            for name, site in prototype.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)
        }
        self.dim = -(max(batch_dims.values(), default=0) + 1)  # the points' plate
        self.pads = {name: -self.dim - 1 - batch_dims[name] for name in shapes}

    def __call__(self, theta: Tensor) -> Tensor:
        points = len(theta)
        unconstrained = {
            name: value.reshape((points,) + (1,) * self.pads[name] + value.shape[1:])
            for name, value in unravel(theta, self.shapes).items()
        }
        constrained = {name: self.transforms[name].inv(u) for name, u in unconstrained.items()}
        with pyro.plate("_potential_points", points, dim=self.dim):
            trace = poutine.trace(poutine.condition(self.model, constrained)).get_trace(
                *self.args, **self.kwargs
            )
        trace.compute_log_prob(lambda name, site: not site_is_subsample(site))
        log_joint = theta.new_zeros(points)
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_prob = site["log_prob"]
                log_prob = log_prob.reshape((1,) * (-self.dim - log_prob.dim()) + log_prob.shape)
                log_joint = log_joint + log_prob.expand(points, *log_prob.shape[1:]).reshape(
                    points, -1
                ).sum(1)
        for name, transform in self.transforms.items():
            jacobian = transform.log_abs_det_jacobian(constrained[name], unconstrained[name])
            log_joint = log_joint - jacobian.reshape(points, -1).sum(1)
        return -log_joint


def differs_from_pyro(
    candidate: Callable[[Tensor], Tensor],
    potential: Callable[[Tensor], Tensor],
    like: Tensor,
    what: str,
) -> str | None:
    """Why ``candidate`` (points [B, P] -> [B]) may not stand in for Pyro's per-point
    ``potential`` (None: it may): at ``like``'s rows and random points about them, its
    values and gradients must equal the per-point ones (``BATCHED_RTOL``). ``what`` names the
    candidate in the reason."""
    points = probe_points(like)
    try:
        with torch.enable_grad():
            rows = points.clone().requires_grad_(True)
            each = torch.stack([potential(row) for row in rows]).reshape(len(rows))
            (each_grad,) = torch.autograd.grad(each.sum(), rows)
            rows = points.clone().requires_grad_(True)
            together = candidate(rows)
            (together_grad,) = torch.autograd.grad(together.sum(), rows)
        each, each_grad, together, together_grad = (
            t.detach() for t in (each, each_grad, together, together_grad)
        )
    except Exception as err:  # any failure of the candidate: Pyro's potential per point then
        return f"{what} failed: {type(err).__name__}: {str(err).splitlines()[0]}"
    return mismatch(what, (together, together_grad), (each, each_grad))


def probe_points(like: Tensor) -> Tensor:
    """Where a stand-in for Pyro's potential is checked: ``like``'s rows [C, P] and
    :data:`PROBE_POINTS` random points about the first."""
    noise = torch.randn((PROBE_POINTS, *like.shape[1:]), dtype=like.dtype, device=like.device)
    return torch.cat([like, like[:1] + noise]).detach()


def mismatch(what: str, got: tuple[Tensor, Tensor], pyros: tuple[Tensor, Tensor]) -> str | None:
    """Why values and gradients ``got`` differ from Pyro's (``BATCHED_RTOL``), or None."""
    rtol = BATCHED_RTOL.get(pyros[0].dtype, 1e-4)
    for name, a, b in zip(("value", "gradient"), got, pyros, strict=True):
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=rtol * float(
            b.abs().max().clamp_min(1.0))):  # fmt: skip
            return f"{what}'s {name} differs from Pyro's per point"
    return None


def batched_potential(
    batched: BatchedPotential, potential: Callable[[Tensor], Tensor], like: Tensor
) -> str | None:
    """Why ``batched`` may not stand in for the per-point ``potential`` (None: it may); a model
    that, say, sums a latent site over all its dimensions mixes the points and fails here."""
    return differs_from_pyro(batched, potential, like, "batched potential")


def compiled_potential(
    model: Callable, args: tuple, kwargs: dict, shapes: dict[str, torch.Size]
) -> Callable[[Tensor], Tensor]:
    """Pyro's potential with ``jit_compile=True`` (``initialize_model``, as ``HMC(model,
    jit_compile=True)`` uses it), over a flat vector ``theta [P]``: the first call records
    the potential's tensor operations (``torch.jit.trace``, through Pyro), later calls replay
    them, with their gradient, without the model's Python code. A recording keeps one branch
    of any Python ``if`` on values and turns Python numbers taken from tensors into
    constants, so it is used only where :func:`differs_from_pyro` finds it equal to Pyro's."""
    _, potential_fn, _, _ = initialize_model(
        model, model_args=args, model_kwargs=kwargs, jit_compile=True, skip_jit_warnings=True
    )

    def potential(theta: Tensor) -> Tensor:
        return potential_fn(unravel(theta, shapes))

    return potential


def replayed(
    model: Callable,
    args: tuple,
    kwargs: dict,
    shapes: dict[str, torch.Size],
    potential: Callable[[Tensor], Tensor],
    like: Tensor,
) -> tuple[Callable[[Tensor], Tensor] | None, str]:
    """``model``'s :func:`compiled_potential` where :func:`differs_from_pyro` finds it equal
    to ``potential`` (Pyro's, [P] -> scalar) at ``like`` [1, P] and about it; else None.
    Also the reason, for ``diagnostics()``."""
    try:
        compiled = compiled_potential(model, args, kwargs, shapes)
    except Exception as err:  # Pyro or torch cannot record this model
        return None, f"compiled potential failed: {type(err).__name__}: {err}".splitlines()[0]
    why = differs_from_pyro(per_point(compiled), potential, like, "compiled potential")
    return (None, why) if why else (compiled, "compiled: equal to Pyro's per point")


# A potential that raises one of these (a covariance matrix that is not positive definite
# far out in the tails) is not a number there, as Pyro's ``pyro.ops.integrator.potential_grad``
# treats it: the trajectory ends at that point as at a divergence.
UNDEFINED = ("singular", "input is not positive-definite")


def undefined(err: RuntimeError) -> bool:
    """Whether ``err`` says the potential is undefined there (:data:`UNDEFINED`)."""
    return any(reason in str(err) for reason in UNDEFINED)


def at(potential: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """``potential(theta)``, or not-a-number where it raises an :data:`UNDEFINED` error."""
    try:
        return potential(theta)
    except RuntimeError as err:
        if undefined(err):
            return theta.new_tensor(math.nan)
        raise


ValueAndGradient = Callable[[Tensor], tuple[Tensor, Tensor]]


def nan_where_undefined(fused: ValueAndGradient) -> ValueAndGradient:
    """``fused`` (a potential and its gradient at [P]), with a value that is not a number and
    a zero gradient where it raises an :data:`UNDEFINED` error, as :func:`at` does."""

    def both(theta: Tensor) -> tuple[Tensor, Tensor]:
        try:
            return fused(theta)
        except RuntimeError as err:
            if undefined(err):
                return theta.new_tensor(math.nan), torch.zeros_like(theta)
            raise

    return both


def per_point(potential: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``potential`` ([P] -> scalar) over points [B, P], one call per point (not a number
    where it is undefined, :func:`at`)."""

    def each(theta: Tensor) -> Tensor:
        if len(theta) == 1:  # one chain: no stacking
            return at(potential, theta[0]).reshape(1)
        return torch.stack([at(potential, row) for row in theta]).reshape(len(theta))

    return each


class PotentialTarget:
    """Log density ``-potential(theta)`` over unconstrained vectors [B, P]: by ``batched``
    (all points at once) where given, else by a loop over the points. ``decentring``: the
    model's centred sites and their map to Pyro's reparameterised model, where the generic
    path found some (:class:`~bayes_spheres.kernels.interweaving.Decentring`). ``fused``:
    the potential and its gradient at one point [P] as one recorded graph, for one chain's
    leapfrog steps (:mod:`~bayes_spheres.kernels.fused_gradient`)."""

    def __init__(
        self,
        potential: Callable[[Tensor], Tensor],
        batched: Callable[[Tensor], Tensor] | None = None,
        decentring: object | None = None,
        fused: ValueAndGradient | None = None,
    ) -> None:
        self.potential, self.batched = potential, batched
        self.decentring = decentring  # kernels/interweaving.py's, where the model has one
        self.fused = None if fused is None else nan_where_undefined(fused)

    def _potential(self, theta: Tensor) -> Tensor:
        if self.batched is not None:
            value = at(self.batched, theta)
            if value.dim():  # else undefined at some point: those points one by one
                return value
        return per_point(self.potential)(theta)

    def log_density(self, theta: Tensor) -> Tensor:
        with torch.no_grad():
            return -self._potential(theta)

    def lines(self, theta: Tensor, directions: Tensor) -> PotentialLines:
        return PotentialLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        def logp(s: Tensor) -> Tensor:
            points = torch.exp(s)[..., None] * theta[:, None, :]  # [C, J, P]
            return self.log_density(points.reshape(-1, theta.shape[-1])).reshape(s.shape)

        return logp

    def splitting(self, like: Tensor) -> Splitting:
        """No Gaussian part: the whole log density is the rest, its gradient by autograd."""

        def rest(z: Tensor) -> tuple[Tensor, Tensor]:
            if self.fused is not None and len(z) == 1:
                value, grad = self.fused(z[0])
                return -value.reshape(1), -grad.reshape(z.shape)
            with torch.enable_grad():
                points = z.detach().requires_grad_(True)
                logp = -self._potential(points)
                if not logp.requires_grad:  # undefined at every point (:func:`at`)
                    return logp.detach(), torch.zeros_like(points)
                (grad,) = torch.autograd.grad(logp.sum(), points)
            return logp.detach(), grad

        size = like.shape[-1]
        eye = torch.eye(size, dtype=like.dtype, device=like.device)
        return Splitting(rest, like.new_zeros(size), eye, gaussian=False)


class PotentialLines:
    """Chains of a :class:`PotentialTarget` moving along the columns of ``directions``."""

    def __init__(self, target: PotentialTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions

    def along(self, k: int) -> LogDensityAlong:
        direction = self.directions[:, k]

        def logp(t: Tensor) -> Tensor:
            points = self.theta[:, None, :] + t[..., None] * direction  # [C, J, P]
            flat = points.reshape(-1, direction.numel())
            return self.target.log_density(flat).reshape(t.shape)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        self.theta = self.theta + t[:, None] * self.directions[:, k]
