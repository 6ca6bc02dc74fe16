"""Reading the fast path's target off a Pyro model: :func:`linear_logistic_target` finds the
design ``X``, offset ``a0``, prior precision ``Q`` and shift ``h`` of
:class:`~bayes_spheres.kernels.fast.logistic.LogisticTarget` (symbols there) by tracing the model
at a few points, and checks the result against Pyro's potential; a model of any other kind
raises :class:`~bayes_spheres.kernels.fast.logistic.NotLinearLogistic`."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.fast.fast_cost import (
    MAX_GRAM_BYTES,
    Form,
    ProductCounter,
    Sizes,
    choose_form,
)
from bayes_spheres.kernels.fast.logistic import LogisticTarget, NotLinearLogistic
from bayes_spheres.kernels.potential import unravel


def _is_real(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def bernoulli_of(fn: dist.Distribution) -> dist.Bernoulli | None:
    """The Bernoulli inside ``fn`` (through ``Independent`` and expanded wrappers), or None."""
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn if isinstance(fn, dist.Bernoulli) else None


class _ModelProbe:
    """Logits and log prior of a Pyro model at latent values, by tracing the model itself."""

    def __init__(
        self, model: Callable, args: tuple, kwargs: dict, shapes: dict[str, torch.Size]
    ) -> None:
        self.model, self.args, self.kwargs, self.shapes = model, args, kwargs, shapes

    def unravel(self, theta: Tensor) -> dict[str, Tensor]:
        return unravel(theta, self.shapes)

    def __call__(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(logits [N], labels [N], log prior, its gradient [P])`` at ``theta`` [P]."""
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            conditioned = poutine.condition(self.model, data=self.unravel(theta))
            trace = poutine.trace(conditioned).get_trace(*self.args, **self.kwargs)
            observed, log_prior = [], theta.new_zeros(())
            for name, node in trace.nodes.items():
                if node["type"] != "sample" or site_is_subsample(node):
                    continue
                if node["infer"].get("_deterministic"):
                    continue
                scaled = node["scale"] != 1.0 or node["mask"] is not None
                if node["is_observed"] and name not in self.shapes:
                    if node["fn"].log_prob(node["value"]).requires_grad:
                        observed.append((name, node, scaled))
                    # else a constant: a site held fixed from outside, such as a conditioned
                    # hyper-parameter, whose density the latents do not change
                    continue
                if scaled:
                    raise NotLinearLogistic(f"latent site {name!r} is scaled or masked")
                if not _is_real(node["fn"].support):
                    raise NotLinearLogistic(f"site {name!r} has support {node['fn'].support}")
                log_prior = log_prior + node["fn"].log_prob(node["value"]).sum()
            if len(observed) != 1:
                names = [name for name, _, _ in observed]
                raise NotLinearLogistic(f"observed sites {names}: the fast path needs one")
            name, node, scaled = observed[0]
            bernoulli = bernoulli_of(node["fn"])
            if bernoulli is None or scaled:
                raise NotLinearLogistic(
                    f"observed site {name!r} is {type(node['fn']).__name__}"
                    f"{' (scaled or masked)' if scaled else ''}, not an unscaled Bernoulli"
                )
            labels = node["value"]
            logits = torch.broadcast_to(bernoulli.logits, labels.shape).reshape(-1)
            (grad,) = torch.autograd.grad(log_prior, theta, allow_unused=True)
        grad = torch.zeros_like(theta) if grad is None else grad
        return logits.detach(), labels.detach().reshape(-1), log_prior.detach(), grad


def linear_logistic_target(
    model: Callable,
    args: tuple,
    kwargs: dict,
    shapes: dict[str, torch.Size],
    potential_fn: Callable[[dict[str, Tensor]], Tensor],
    like: Tensor,
    prototype: poutine.Trace | None = None,
    *,
    chains: int = 8,
    max_gram_bytes: int = MAX_GRAM_BYTES,
    form: Form | str | None = None,
) -> LogisticTarget:
    """The :class:`LogisticTarget` of ``model`` over its latents ``shapes`` (flattened in that
    order), read off the model: logits and prior gradient at 0 and at each unit vector; then
    checked at random points (logits linear, prior quadratic, and the log density equal to
    ``-potential_fn`` up to a constant). Raises :class:`NotLinearLogistic` otherwise; first,
    without evaluating anything, where the ``prototype`` trace (Pyro's, from
    :func:`~pyro.infer.mcmc.util.initialize_model`) has a latent site that is not real.

    Then the fast path's form (``target.form``, why in ``target.form_reason``), by
    :func:`~bayes_spheres.kernels.fast.fast_cost.choose_form` from the sizes, the design's zeros,
    ``chains`` (stepped together: the study's 8 by default) and the model's own
    multiply-adds (counted in one value of ``potential_fn``), holding ``A A'`` only up to
    ``max_gram_bytes``;
    raises :class:`NotLinearLogistic` where every form would cost more than the generic
    path. ``form``: take this form, no rule (tests and benchmarks)."""
    for name in shapes:
        node = prototype.nodes.get(name) if prototype is not None else None
        if node is not None and not _is_real(node["fn"].support):
            raise NotLinearLogistic(f"site {name!r} has support {node['fn'].support}")
    probe = _ModelProbe(model, args, kwargs, shapes)
    size = sum(math.prod(s) for s in shapes.values())
    eye = torch.eye(size, dtype=like.dtype, device=like.device)
    zero = eye.new_zeros(size)
    logits0, labels, log_prior0, grad0 = probe(zero)
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise NotLinearLogistic("observed labels are not all 0 or 1")
    generator = torch.Generator().manual_seed(0)  # the probe leaves the global stream alone
    points = torch.randn(2, size, generator=generator, dtype=torch.float64).to(like)
    tolerance = math.sqrt(torch.finfo(like.dtype).eps)

    def close(a: Tensor, b: Tensor) -> bool:
        return bool((a - b).abs().max() <= tolerance * (1.0 + a.abs().max() + b.abs().max()))

    # cheap rejection first: affine logits and a linear prior gradient have no second
    # difference
    corners = [probe(points[0]), probe(points[1]), probe(points[0] + points[1])]
    if not close(
        corners[2][0] - corners[0][0] - corners[1][0] + logits0, torch.zeros_like(logits0)
    ):
        raise NotLinearLogistic("logits are not linear in the latents")
    if not close(corners[2][3] - corners[0][3] - corners[1][3] + grad0, zero):
        raise NotLinearLogistic("the prior is not Gaussian in the latents")
    columns, curvature = [], []
    for unit in eye:
        logits, _, _, grad = probe(unit)
        columns.append(logits - logits0)
        curvature.append(grad0 - grad)
    x = torch.stack(columns, 1)  # [N, P]
    precision = torch.stack(curvature)
    precision = 0.5 * (precision + precision.T)
    target = LogisticTarget(x, labels, precision, grad0, logits0, float(log_prior0))
    target.sites = dict(shapes)
    for point, (logits, _, log_prior, _) in zip(points, corners, strict=False):
        quadratic = point @ grad0 - 0.5 * point @ precision @ point
        if not (close(logits, logits0 + x @ point) and close(log_prior - log_prior0, quadratic)):
            raise NotLinearLogistic("logits not linear or prior not Gaussian at a random point")
    with torch.no_grad():
        pyro_gap = potential_fn(probe.unravel(points[1])) - potential_fn(probe.unravel(points[0]))
        fast_gap = target.log_density(points[:1]) - target.log_density(points[1:])
    if not close(pyro_gap.reshape(1), fast_gap.reshape(1)):
        raise NotLinearLogistic(
            f"log density differs from Pyro's potential: {float(fast_gap):.6g} against "
            f"{float(pyro_gap):.6g} between two points"
        )
    if form is not None:
        target.form = Form(form).value
        target.form_reason = f"form={target.form!r} given"
        return target
    diagonal = bool((precision == torch.diag(torch.diagonal(precision))).all())
    sizes = Sizes(len(x), size, int((x != 0).sum()), diagonal, x.element_size(), chains)
    madds = _counted_madds(potential_fn, probe.unravel(points[0]))
    chosen, target.form_reason = choose_form(sizes, madds, max_gram_bytes)
    if chosen is None:
        raise NotLinearLogistic(target.form_reason)
    target.form = chosen.value
    return target


def _counted_madds(
    potential_fn: Callable[[dict[str, Tensor]], Tensor], params: dict[str, Tensor]
) -> float:
    """The multiply-adds of the products in one value and gradient of ``potential_fn``: the
    value's counted (:class:`~bayes_spheres.kernels.fast.fast_cost.ProductCounter`), twice (the
    gradient with respect to the latents takes one product per product)."""
    leaves = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    with ProductCounter() as counter, torch.enable_grad():
        potential_fn(leaves)
    return 2.0 * counter.madds


def model_target(model: Callable, *args: object, **kwargs: object) -> LogisticTarget:
    """:func:`linear_logistic_target` of ``model(*args, **kwargs)`` over its latent sites in
    trace order (Pyro's :func:`~pyro.infer.mcmc.util.initialize_model` finds them; the global
    random stream is left as it was)."""
    with torch.random.fork_rng():
        init, potential_fn, _, prototype = initialize_model(
            model, model_args=args, model_kwargs=kwargs
        )
    if not init:
        raise NotLinearLogistic("the model has no latent sites")
    shapes = {k: v.shape for k, v in init.items()}
    like = next(iter(init.values()))
    return linear_logistic_target(model, args, kwargs, shapes, potential_fn, like, prototype)
