"""The conditional fast path: models that are a logistic regression with a Gaussian prior
*given* a few other latent sites, such as the hierarchical prior given its scale ``s``
(``bayes_spheres/models.py::Hierarchical``), sampled by Gibbs updates whose largest block
runs on the fast integrator.

The latent sites split into the **Gaussian sites** ``G`` (a ``Normal``, possibly
``Independent`` or expanded) and the **hyper-parameters** ``H`` (every other site).
Pyro's own :class:`~pyro.infer.reparam.LocScaleReparam` (``centered=0``) writes each
Gaussian site as ``loc + scale * z`` with ``z ~ N(0, I)``; where, given ``H``, the logits are
linear in ``z`` (checked at run time), the conditional posterior of ``z`` is logistic under a
standard normal prior (:class:`~bayes_spheres.kernels.gaussian_block.WhitenedLogistic`),
whose logit matrix ``X(H) = d logits / d z`` is read off the reparameterised model by
forward-mode autograd. One update of C chains (:class:`~bayes_spheres.kernels.gibbs.
ConditionalSampler`):

1. ``z | H``: per chain, one slice update along a Hamiltonian trajectory of that target (the
   fast integrator, :mod:`~bayes_spheres.kernels.fast.linear_trajectory`) and its scale moves;
2. ``H | z``: all coordinates of ``H`` together (:mod:`~bayes_spheres.kernels.hyper`) on the
   reparameterised model's potential (Pyro's), ``z`` held fixed;
3. for each *global scale* among ``H``: a generalized Gibbs move of the scale and the
   Gaussian block together, along which all the logits scale (Liu & Sabatti 2000,
   :mod:`~bayes_spheres.kernels.scale_moves`);
4. ``H | G``: as step 2 on the model's own potential, the Gaussian sites held at their
   values, where that differs from step 2 (the map ``G -> z`` depends on ``H``).

Steps 2 and 4 hold different things fixed (the non-centred and the centred parametrisation):
together they are the "interweaving" of Yu & Meng (2011, "To center or not to center", J.
Comput. Graph. Statist. 20(3)). At ``D = 500`` on the hierarchical prior both are narrow
(``log s | w`` has sd ``1 / sqrt(2 D)`` = 0.03, ``log s | z`` about 0.10, against a posterior
sd of ``log s`` of 0.48) and ``s`` random-walks; along step 3's orbit the sd is 0.36
(``docs/model-comparison.md``). Where every coordinate of ``H`` has such a move,
steps 2 and 4 are kept after warm-up only where they moved ``H`` a useful fraction as far
(:class:`~bayes_spheres.kernels.gibbs.ConditionalSampler`).

Where ``X(H)`` is a fixed matrix times one factor per Gaussian site (both hierarchical
models), it is built from a probe of the model, not a Jacobian, and its Gram matrix from
per-site parts (:class:`~bayes_spheres.kernels.gaussian_block.ScaledDesign`).

A Gaussian site's scale may depend on ``H`` only and its loc on ``H`` and earlier Gaussian
sites linearly (the shared-mean prior's ``w | mu``): else the logits are not linear in ``z``
and :func:`conditional_target` raises
:class:`~bayes_spheres.kernels.fast.logistic.NotLinearLogistic`; the kernel then takes the generic
path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
import torch.func
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
from pyro.infer.reparam import LocScaleReparam
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.fast.logistic import NotLinearLogistic
from bayes_spheres.kernels.fast.logistic_model import bernoulli_of
from bayes_spheres.kernels.gaussian_block import ScaledDesign, WhitenedLogistic
from bayes_spheres.kernels.gibbs import ConditionalSampler
from bayes_spheres.kernels.hyper import PointDensity
from bayes_spheres.kernels.potential import unravel
from bayes_spheres.kernels.scale_moves import global_orbits

__all__ = ["ConditionalSampler", "ConditionalTarget", "conditional_target"]

# Set-up: the second point at which a scaled design and interweaving are checked is the first
# one's hyper-parameters plus this times N(0, 1) noise.
PROBE_SPREAD = 0.3
# The orbit moves' exponents need d X / d H [N, Pz, K] at set-up: at most this many numbers
# (80 MB in float64), else there are none.
MAX_SLOPE_ENTRIES = 10**7


def _normal(fn: dist.Distribution) -> dist.Normal | None:
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn if type(fn) is dist.Normal else None


def _masked_out(fn: dist.Distribution) -> bool:
    """A ``.mask(False)`` distribution: a deterministic site, as reparameterisers write it."""
    return isinstance(fn, dist.MaskedDistribution) and fn._mask is False


class ConditionalTarget:
    """A model's posterior over its flat unconstrained latents ``theta`` [P] (Pyro's, in the
    kernel's site order ``shapes``), with the pieces of the Gibbs update (module docstring):
    ``theta <-> (hyper, z)``, the conditional target of ``z`` given ``hyper``, the log
    densities of ``hyper`` given ``z`` or given the Gaussian sites, and, after
    :meth:`prepare`, the orbit moves of the global scales (``orbits``: ``(k, c)`` pairs)."""

    def __init__(
        self,
        model: Callable,
        args: tuple,
        kwargs: dict,
        shapes: dict[str, torch.Size],
        transforms: dict,
        potential_fn: Callable[[dict[str, Tensor]], Tensor],
        prototype: poutine.Trace,
    ) -> None:
        self.model, self.args, self.kwargs = model, args, kwargs
        self.shapes, self.transforms, self.potential_fn = shapes, transforms, potential_fn
        self.gaussian = [n for n in shapes if _normal(prototype.nodes[n]["fn"]) is not None]
        self.hyper = [n for n in shapes if n not in self.gaussian]
        if not self.gaussian or not self.hyper:
            raise NotLinearLogistic("no Gaussian latent site" if self.hyper else "no other site")
        self.hyper_size = sum(math.prod(shapes[n]) for n in self.hyper)
        config = {name: LocScaleReparam(centered=0.0) for name in self.gaussian}
        self.reparameterised = poutine.reparam(model, config=config)
        self.z_shapes = {f"{n}_decentered": shapes[n] for n in self.gaussian}
        self.hyper_shapes = {n: shapes[n] for n in self.hyper}
        self.joint_shapes = self.hyper_shapes | self.z_shapes
        with torch.random.fork_rng():  # Pyro's potential of the reparameterised model
            _, potential, _, _ = initialize_model(
                self.reparameterised, model_args=args, model_kwargs=kwargs
            )
        # -log p(hyper, z) over the vector (hyper, z): Pyro's (or its recording, ``paths.py``)
        self.joint_potential = lambda point: potential(unravel(point, self.joint_shapes))
        offsets, start = {}, 0
        for name, shape in shapes.items():
            offsets[name] = (start, start + math.prod(shape))
            start += math.prod(shape)
        # on the CPU: indices
        self.hyper_index = torch.cat([torch.arange(*offsets[n]) for n in self.hyper])
        self.z_columns, start = [], 0
        for shape in self.z_shapes.values():
            self.z_columns.append(slice(start, start + math.prod(shape)))
            start += math.prod(shape)
        self._jacobian: Callable | None = None
        self.design: ScaledDesign | None = None
        self.interweaves = True
        self.orbits: list[tuple[int, Tensor]] = []

    # -- the two parametrisations ---------------------------------------------------------

    def _constrained(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        return {n: self.transforms[n].inv(v) for n, v in values.items()}

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``theta`` [P] -> ``(hyper [K], z [Pz])``: ``z = (value - loc) / scale`` of each
        Gaussian site, read off the model traced at ``theta``; [C, P] rows one by one."""
        if theta.dim() == 2:
            pairs = [self.split(row) for row in theta]
            return torch.stack([h for h, _ in pairs]), torch.stack([z for _, z in pairs])
        values = unravel(theta, self.shapes)
        trace = poutine.trace(poutine.condition(self.model, self._constrained(values)))
        nodes = trace.get_trace(*self.args, **self.kwargs).nodes
        zs = []
        for name in self.gaussian:
            normal, value = _normal(nodes[name]["fn"]), nodes[name]["value"]
            loc = torch.broadcast_to(normal.loc, value.shape)
            zs.append(((value - loc) / torch.broadcast_to(normal.scale, value.shape)).reshape(-1))
        return theta[self.hyper_index], torch.cat(zs)

    def _reparameterised_values(self, hyper: Tensor, z: Tensor) -> dict[str, Tensor]:
        values = self._constrained(unravel(hyper, self.hyper_shapes))
        return values | unravel(z, self.z_shapes)

    def join(self, hyper: Tensor, z: Tensor) -> Tensor:
        """``(hyper, z)`` -> ``theta`` [P]: the Gaussian sites' values in the reparameterised
        model's trace (Pyro's deterministic ``loc + scale * z``); [C, ...] rows one by one."""
        if hyper.dim() == 2:
            return torch.stack([self.join(h, zz) for h, zz in zip(hyper, z, strict=True)])
        values = self._reparameterised_values(hyper, z)
        trace = poutine.trace(poutine.condition(self.reparameterised, values))
        nodes = trace.get_trace(*self.args, **self.kwargs).nodes
        theta = []
        for name in self.shapes:
            if name in self.hyper:
                theta.append(unravel(hyper, self.hyper_shapes)[name].reshape(-1))
            else:
                theta.append(self.transforms[name](nodes[name]["value"]).reshape(-1))
        return torch.cat(theta)

    # -- the conditional logistic target --------------------------------------------------

    def _observed(self, hyper: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [N], labels [N])`` of the model's one observed Bernoulli site."""
        values = self._reparameterised_values(hyper, z)
        trace = poutine.trace(poutine.condition(self.reparameterised, values))
        nodes = trace.get_trace(*self.args, **self.kwargs).nodes
        observed = [
            (name, node)
            for name, node in nodes.items()
            if node["type"] == "sample"
            and node["is_observed"]
            and not site_is_subsample(node)
            and not node["infer"].get("_deterministic")
            and name not in values
            and name not in self.gaussian  # now Pyro's deterministic loc + scale * z
            and not _masked_out(node["fn"])  # e.g. a site the model itself reparameterised
        ]
        if len(observed) != 1:
            names = [name for name, _ in observed]
            raise NotLinearLogistic(f"observed sites {names}: the fast path needs one")
        name, node = observed[0]
        bernoulli = bernoulli_of(node["fn"])
        if bernoulli is None or node["scale"] != 1.0 or node["mask"] is not None:
            raise NotLinearLogistic(f"observed site {name!r} is not an unscaled Bernoulli")
        labels = node["value"]
        return torch.broadcast_to(bernoulli.logits, labels.shape).reshape(-1), labels.reshape(-1)

    def logits_matrix(self, hyper: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(X, a0, labels)`` with logits ``X z + a0`` given ``hyper``: ``X`` [N, Pz] by
        forward-mode autograd through the model (reverse mode where the model's code does not
        allow ``torch.func``)."""
        labels = None

        def logits(zz: Tensor) -> Tensor:
            nonlocal labels
            out, labels = self._observed(hyper, zz)
            return out

        at = z.detach()
        if self._jacobian is None:
            try:
                x = torch.func.jacfwd(logits)(at)
                self._jacobian = torch.func.jacfwd
            except Exception:  # a model torch.func cannot trace: reverse mode, batched
                self._jacobian = _reverse_jacobian
                x = _reverse_jacobian(logits)(at)
        else:
            x = self._jacobian(logits)(at)
        with torch.no_grad():
            value, labels = self._observed(hyper, at)
        return x.detach(), (value - x @ at).detach(), labels.detach()

    def _probe(self, hyper: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [N], X(H) v [2S, N])`` at ``z`` for the design's probes ``v``: one
        forward-mode pass through the model."""

        def logits(zz: Tensor) -> Tensor:
            return self._observed(hyper, zz)[0]

        def along(v: Tensor) -> tuple[Tensor, Tensor]:
            return torch.func.jvp(logits, (z.detach(),), (v,))

        value, products = torch.func.vmap(along)(self.design.probes)
        return value[0].detach(), products.detach()

    def conditional(self, hyper: Tensor, z: Tensor) -> WhitenedLogistic:
        """The posterior of ``z`` given ``hyper``: logistic, under the prior ``N(0, I)``."""
        if self.design is not None:
            value, products = self._probe(hyper, z)
            factors = self.design.factors(products)
            if factors is not None:
                return self.design.block(factors, value, z)
        x, offset, labels = self.logits_matrix(hyper, z)
        sign = 2.0 * labels - 1.0
        return WhitenedLogistic(sign[:, None] * x, sign * offset)

    def check(self, theta: Tensor, generator: torch.Generator) -> None:
        """Raise :class:`NotLinearLogistic` unless, at ``theta``'s ``hyper``, the logits are
        linear in ``z`` and the conditional target's log density changes as Pyro's potential
        of the reparameterised model does, between random ``z``; and unless ``split`` and
        ``join`` are inverse."""
        hyper, z = self.split(theta)
        target = self.conditional(hyper, z)
        steps = torch.randn(2, len(z), generator=generator, dtype=torch.float64).to(z)
        points = torch.stack([z, z + steps[0], z + steps[1], z + steps[0] + steps[1]])
        observed = [self._observed(hyper, p)[0] for p in points]
        linear = target.signed_offset + points @ target.signed_x.T
        signed = 2.0 * self._observed(hyper, z)[1] - 1.0
        if not all(_close(signed * o, a) for o, a in zip(observed, linear, strict=True)):
            raise NotLinearLogistic("logits are not linear in the Gaussian sites given the rest")
        with torch.no_grad():
            pyro = torch.stack([self.joint(hyper, p) for p in points]).reshape(-1)
            fast = target.log_density(points)
        if not _close(pyro - pyro[0], fast - fast[0]):
            raise NotLinearLogistic(
                "the conditional log density differs from Pyro's potential of the "
                "reparameterised model"
            )
        if not _close(self.join(hyper, z), theta):
            raise NotLinearLogistic("the Gaussian sites are not loc + scale * z")

    # -- set-up of the faster design, interweaving and orbit moves ------------------------

    def prepare(self, theta: Tensor, generator: torch.Generator) -> None:
        """At a chain's first point ``theta`` [P]: the global scales' orbit exponents (raises
        :class:`NotLinearLogistic` for a local scale); the :class:`ScaledDesign` where ``X``
        at a second ``H`` is one factor per site times ``X`` here; whether ``G -> z`` depends
        on ``H`` (else step 4 repeats step 2)."""
        hyper, z = self.split(theta)
        slopes = self._slopes(hyper, z)
        sizes = {name: math.prod(shape) for name, shape in self.hyper_shapes.items()}
        names = [f"{n!r}" + (f"[{i}]" if m > 1 else "") for n, m in sizes.items() for i in range(m)]
        self.orbits = [] if slopes is None else global_orbits(slopes, names)
        other = hyper + PROBE_SPREAD * torch.randn(
            len(hyper), generator=generator, dtype=torch.float64
        ).to(hyper)
        x, _, labels = self.logits_matrix(hyper, z)
        x_other = self.logits_matrix(other, z)[0]
        self.design = ScaledDesign(x, labels, self.z_columns, generator)
        try:
            factors = self.design.factors(self._probe(other, z)[1])
        except Exception:  # a model torch.func cannot trace: X(H) whole at every update
            factors = None
        if factors is None or not _close(x * self.design.per_column(factors), x_other):
            self.design = None
        moved = theta.clone()
        moved[self.hyper_index] = other
        self.interweaves = not _close(self.split(moved)[1], z)

    def _slopes(self, hyper: Tensor, z: Tensor) -> Tensor | None:
        """``d log |X_j| / d H_k`` [K, Pz] (0 for a zero column) by nested forward-mode
        autograd, or None where the model does not allow it or the derivative of ``X``
        would hold more than :data:`MAX_SLOPE_ENTRIES` numbers."""
        rows = self._observed(hyper, z)[0].numel()
        if rows * len(z) * len(hyper) > MAX_SLOPE_ENTRIES:
            return None

        def matrix(h: Tensor) -> Tensor:
            return torch.func.jacfwd(lambda zz: self._observed(h, zz)[0])(z.detach())

        try:
            x, dx = matrix(hyper), torch.func.jacfwd(matrix)(hyper)  # [N, Pz], [N, Pz, K]
        except Exception:  # a model torch.func cannot trace: no orbit moves
            return None
        norms = (x * x).sum(0)
        slopes = (x[..., None] * dx).sum(0) / norms.clamp_min(1e-300)[:, None]
        slopes = torch.where(norms[:, None] > 0, slopes, torch.zeros_like(slopes))
        return slopes.T.detach().round(decimals=6)

    # -- the log densities of the hyper-parameters ----------------------------------------

    def log_density(self, theta: Tensor) -> Tensor:
        """``-potential`` (Pyro's, the model's own) at each row of ``theta`` [C, P]."""
        with torch.no_grad():
            return torch.stack([-self.potential_fn(unravel(t, self.shapes)) for t in theta])

    def joint(self, hyper: Tensor, z: Tensor) -> Tensor:
        """``log p(hyper, z)``: Pyro's potential of the reparameterised model (differentiable
        in ``hyper``)."""
        return -self.joint_potential(torch.cat([hyper, z]))

    def joint_density(self, chain: int, hyper: Tensor, z: Tensor) -> Tensor:
        """:meth:`joint` as the orbit moves call it (any chain's point)."""
        with torch.no_grad():
            return self.joint(hyper, z)

    def hyper_given_z(self, z: Tensor) -> PointDensity:
        """``(c, hyper [K]) -> log p(hyper, z_c)`` for chains at ``z`` [C, Pz]."""
        return lambda c, hyper: self.joint(hyper, z[c])

    def hyper_given_gaussian(self, theta: Tensor) -> PointDensity:
        """``(c, hyper [K]) -> log p(hyper, G_c)`` with the Gaussian sites at ``theta``'s
        [C, P] values: Pyro's potential of the model itself."""

        def log_density(c: int, hyper: Tensor) -> Tensor:
            point = theta[c].index_put((self.hyper_index,), hyper)
            return -self.potential_fn(unravel(point, self.shapes))

        return log_density


def _close(a: Tensor, b: Tensor) -> bool:
    """Equal to ``sqrt(eps)``, relative to the larger entry (and 1)."""
    tolerance = math.sqrt(torch.finfo(a.dtype).eps)
    scale = 1.0 + float(a.abs().max()) + float(b.abs().max())
    return bool((a - b).abs().max() <= tolerance * scale)


def _reverse_jacobian(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def jacobian(at: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = at.detach().requires_grad_(True)
            out = fn(leaf)
            eye = torch.eye(len(out), dtype=out.dtype, device=out.device)
            (x,) = torch.autograd.grad(out, leaf, eye, is_grads_batched=True)
        return x

    return jacobian


def conditional_target(
    model: Callable,
    args: tuple,
    kwargs: dict,
    shapes: dict[str, torch.Size],
    transforms: dict,
    potential_fn: Callable[[dict[str, Tensor]], Tensor],
    like: Tensor,
    prototype: poutine.Trace,
) -> ConditionalTarget:
    """The :class:`ConditionalTarget` of ``model``, checked and prepared at ``like`` [P] (a
    chain's starting point); raises :class:`NotLinearLogistic` where the model is not of that
    kind."""
    target = ConditionalTarget(model, args, kwargs, shapes, transforms, potential_fn, prototype)
    generator = torch.Generator().manual_seed(0)  # the check leaves the global stream alone
    with torch.random.fork_rng():
        target.check(like, generator)
        target.prepare(like, generator)
    return target
