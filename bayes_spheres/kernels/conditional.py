"""The conditional fast path: models that are a logistic regression with a Gaussian prior
*given* a few other latent sites, such as the hierarchical prior given its scale ``s``
(``bayes_spheres/models.py::Hierarchical``), sampled by Gibbs updates whose largest block
runs on the fast integrator.

The latent sites split into the **Gaussian sites** ``G`` (a ``Normal``, possibly
``Independent`` or expanded) and the **hyper-parameters** ``H`` (every other site, a few
numbers). Pyro's own :class:`~pyro.infer.reparam.LocScaleReparam` (``centered=0``) writes each
Gaussian site as ``loc + scale * z`` with ``z ~ N(0, I)``; where, given ``H``, the logits are
linear in ``z`` (checked at run time), the conditional posterior of ``z`` is a
:class:`~bayes_spheres.kernels.logistic.LogisticTarget` with a standard normal prior, whose
logit matrix ``X(H) = d logits / d z`` is read off the reparameterised model by forward-mode
autograd. One update of one chain:

1. ``z | H``: one slice update along a Hamiltonian trajectory of that target (the fast
   integrator, :mod:`~bayes_spheres.kernels.linear_trajectory`) and its scale moves;
2. ``H | z``: a univariate slice update of each coordinate of ``H`` (unconstrained) on the
   reparameterised model's potential (Pyro's), ``z`` held fixed;
3. ``H | G``: the same on the model's own potential, the Gaussian sites held at their values.

Steps 2 and 3 hold different things fixed (the non-centred and the centred
parametrisation): each leaves the posterior invariant, and together they are the
"interweaving" of Yu & Meng (2011, "To center or not to center", J. Comput. Graph. Statist.
20(3)), which mixes well whether the data or the prior dominate ``H``. On the hierarchical
prior at ``D = 500`` the centred step alone moves ``log s`` by about ``1 / sqrt(2 D)`` = 3 %
per update (``s | w`` is that narrow), the non-centred step alone is slow where the likelihood
pins ``w = s z``; the pair is not.

A Gaussian site's scale may depend on ``H`` only and its loc on ``H`` and earlier Gaussian
sites linearly (the shared-mean prior's ``w | mu``): else the logits are not linear in ``z``
and :func:`conditional_target` raises
:class:`~bayes_spheres.kernels.logistic.NotLinearLogistic`; the kernel then takes the generic
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

from bayes_spheres.kernels.hamiltonian import HamiltonianSliceSampler
from bayes_spheres.kernels.logistic import LogisticTarget, NotLinearLogistic, bernoulli_of
from bayes_spheres.kernels.potential import unravel
from bayes_spheres.kernels.steps import slice_update

# The most hyper-parameter coordinates the conditional path updates one by one; a model with
# more (e.g. Student-t weights, whose every coordinate is a "hyper-parameter") takes the
# generic path.
MAX_HYPER_SIZE = 16


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
    ``theta <-> (hyper, z)``, the conditional :class:`LogisticTarget` of ``z`` given
    ``hyper``, and the log densities of ``hyper`` given ``z`` or given the Gaussian sites."""

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
        if self.hyper_size > MAX_HYPER_SIZE:
            raise NotLinearLogistic(
                f"{self.hyper_size} coordinates in the non-Gaussian sites {self.hyper}: the "
                f"conditional path updates at most {MAX_HYPER_SIZE} one by one"
            )
        config = {name: LocScaleReparam(centered=0.0) for name in self.gaussian}
        self.reparameterised = poutine.reparam(model, config=config)
        self.z_shapes = {f"{n}_decentered": shapes[n] for n in self.gaussian}
        self.hyper_shapes = {n: shapes[n] for n in self.hyper}
        with torch.random.fork_rng():  # Pyro's potential of the reparameterised model
            _, self.reparameterised_potential, _, _ = initialize_model(
                self.reparameterised, model_args=args, model_kwargs=kwargs
            )
        offsets, start = {}, 0
        for name, shape in shapes.items():
            offsets[name] = (start, start + math.prod(shape))
            start += math.prod(shape)
        # on the CPU: indices
        self.hyper_index = torch.cat([torch.arange(*offsets[n]) for n in self.hyper])
        self._jacobian: Callable | None = None

    # -- the two parametrisations ---------------------------------------------------------

    def _constrained(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        return {n: self.transforms[n].inv(v) for n, v in values.items()}

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``theta`` [P] -> ``(hyper [K], z [Pz])``: ``z = (value - loc) / scale`` of each
        Gaussian site, read off the model traced at ``theta``."""
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

    def _reparameterised_point(self, hyper: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The unconstrained point of the reparameterised model, as its potential takes it."""
        return unravel(hyper, self.hyper_shapes) | unravel(z, self.z_shapes)

    def join(self, hyper: Tensor, z: Tensor) -> Tensor:
        """``(hyper, z)`` -> ``theta`` [P]: the Gaussian sites' values in the reparameterised
        model's trace (Pyro's deterministic ``loc + scale * z``)."""
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

    def conditional(self, hyper: Tensor, z: Tensor) -> LogisticTarget:
        """The posterior of ``z`` given ``hyper``: logistic, under the prior ``N(0, I)``."""
        x, offset, labels = self.logits_matrix(hyper, z)
        return LogisticTarget.standard(x, labels, offset)

    def check(self, theta: Tensor, generator: torch.Generator) -> None:
        """Raise :class:`NotLinearLogistic` unless, at ``theta``'s ``hyper``, the logits are
        linear in ``z`` and the conditional target's log density changes as Pyro's potential
        of the reparameterised model does, between random ``z``; and unless ``split`` and
        ``join`` are inverse."""
        hyper, z = self.split(theta)
        target = self.conditional(hyper, z)
        tolerance = math.sqrt(torch.finfo(theta.dtype).eps)

        def close(a: Tensor, b: Tensor) -> bool:
            scale = 1.0 + float(a.abs().max()) + float(b.abs().max())
            return bool((a - b).abs().max() <= tolerance * scale)

        steps = torch.randn(2, len(z), generator=generator, dtype=torch.float64).to(z)
        points = torch.stack([z, z + steps[0], z + steps[1], z + steps[0] + steps[1]])
        observed = [self._observed(hyper, p)[0] for p in points]
        linear = target.signed_offset + points @ target.signed_x.T
        signed = 2.0 * self._observed(hyper, z)[1] - 1.0
        if not all(close(signed * o, a) for o, a in zip(observed, linear, strict=True)):
            raise NotLinearLogistic("logits are not linear in the Gaussian sites given the rest")
        with torch.no_grad():
            pyro = torch.stack([
                -self.reparameterised_potential(self._reparameterised_point(hyper, p))
                for p in points
            ]).reshape(-1)  # fmt: skip
            fast = target.log_density(points)
        if not close(pyro - pyro[0], fast - fast[0]):
            raise NotLinearLogistic(
                "the conditional log density differs from Pyro's potential of the "
                "reparameterised model"
            )
        if not close(self.join(hyper, z), theta):
            raise NotLinearLogistic("the Gaussian sites are not loc + scale * z")

    # -- the hyper-parameters' log densities ----------------------------------------------

    def log_density(self, theta: Tensor) -> Tensor:
        """``-potential`` (Pyro's, the model's own) at each row of ``theta`` [C, P]."""
        with torch.no_grad():
            return torch.stack([-self.potential_fn(unravel(t, self.shapes)) for t in theta])

    def hyper_given_z(self, z: Tensor) -> Callable[[Tensor], Tensor]:
        """``hyper [K] -> log p(hyper, z)``: Pyro's potential of the reparameterised model."""

        def log_density(hyper: Tensor) -> Tensor:
            with torch.no_grad():
                return -self.reparameterised_potential(self._reparameterised_point(hyper, z))

        return log_density

    def hyper_given_gaussian(self, theta: Tensor) -> Callable[[Tensor], Tensor]:
        """``hyper [K] -> log p(hyper, G)`` with the Gaussian sites at ``theta``'s values:
        Pyro's potential of the model itself."""

        def log_density(hyper: Tensor) -> Tensor:
            point = theta.clone()
            point[self.hyper_index] = hyper
            with torch.no_grad():
                return -self.potential_fn(unravel(point, self.shapes))

        return log_density


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
    """The :class:`ConditionalTarget` of ``model``, checked at ``like`` [P] (a chain's
    starting point); raises :class:`NotLinearLogistic` where the model is not of that kind."""
    target = ConditionalTarget(model, args, kwargs, shapes, transforms, potential_fn, prototype)
    generator = torch.Generator().manual_seed(0)  # the check leaves the global stream alone
    with torch.random.fork_rng():
        target.check(like, generator)
    return target


class ConditionalSampler:
    """The Gibbs update of the module docstring for C chains, one after another: each chain
    has its own :class:`HamiltonianSliceSampler` for ``z | H`` (its own step size, adapted
    in warm-up on its own changing targets), and univariate slice updates of ``H``."""

    def __init__(
        self,
        chains: int,
        new_sampler: Callable[[], HamiltonianSliceSampler],
        init_width: float = 1.0,
        max_steps: int = 20,
    ) -> None:
        self.samplers = [new_sampler() for _ in range(chains)]
        self.init_width, self.max_steps = init_width, max_steps
        self.hyper_calls = self.hyper_updates = 0
        self.diverging: Tensor | None = None

    def _hyper(self, log_density: Callable[[Tensor], Tensor], hyper: Tensor) -> Tensor:
        """One univariate slice update of each coordinate of ``hyper`` [K]."""
        hyper = hyper.clone()
        logp = log_density(hyper).reshape(1)
        for k in range(len(hyper)):

            def along(t: Tensor, k: int = k) -> Tensor:
                out = []
                for offset in t.reshape(-1):
                    point = hyper.clone()
                    point[k] = point[k] + offset
                    out.append(log_density(point))
                return torch.stack(out).reshape(t.shape).nan_to_num(-math.inf)

            step = slice_update(along, logp, self.init_width, self.max_steps)
            hyper[k] = hyper[k] + step.t[0]
            logp = step.logp
            self.hyper_calls += step.calls
            self.hyper_updates += 1
        return hyper

    def sweep(
        self, target: ConditionalTarget, theta: Tensor, logp: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One Gibbs update of every chain at ``theta`` [C, P]; returns ``(theta, logp)``."""
        rows, diverging = [], []
        for sampler, row in zip(self.samplers, theta, strict=True):
            hyper, z = target.split(row)
            linear = target.conditional(hyper, z)
            sampler.retarget(linear, z[None])
            z_new, _ = sampler.sweep(linear, z[None], linear.log_density(z[None]))
            z = z_new[0]
            diverging.append(sampler.diverging)
            hyper = self._hyper(target.hyper_given_z(z), hyper)
            row = target.join(hyper, z)
            hyper = self._hyper(target.hyper_given_gaussian(row), hyper)
            row = row.clone()
            row[target.hyper_index] = hyper
            rows.append(row)
        self.diverging = torch.cat(diverging)
        theta = torch.stack(rows)
        return theta, target.log_density(theta)

    def info(self) -> dict:
        first = self.samplers[0].info()
        first["step_size"] = [round(s.step_size, 6) for s in self.samplers]
        updates = max(self.hyper_updates, 1)
        return first | {"hyper_calls_per_update": round(self.hyper_calls / updates, 1)}
