"""The fast path: Bernoulli-logistic likelihoods whose logits are linear in the latents, under
a Gaussian prior, found by probing the Pyro model itself.

Symbols: the latents ``theta`` [P] (Pyro's unconstrained sites, flattened); logits
``a = X theta + a0`` [N]; labels ``y`` and signs ``sign = 2 y - 1``, so the log likelihood is
``sum_n log sigmoid(sign_n a_n)``; the prior ``log p(theta) = c + h.theta - theta' Q theta / 2``
(precision ``Q``, shift ``h``). :func:`linear_logistic_target` reads ``X``, ``a0``, ``Q``, ``h``
off any Pyro model of that kind (the study's flat and shared-mean models, or a user's own) and
checks the result against Pyro's potential; any other model raises :class:`NotLinearLogistic`
and the kernel takes the generic path.

Along a direction ``d`` the logits move as ``a + t (X d)`` and the prior is a quadratic in
``t``, so a univariate slice update costs O(N), not O(N P); along a Hamiltonian trajectory the
activations rotate with the state
(:func:`~bayes_spheres.kernels.linear_trajectory.slice_trajectory_linear`), or, where that
would cost more (large N, sparse designs), the likelihood is taken through products with the
design (:mod:`~bayes_spheres.kernels.linear_products`): the target's ``form``, chosen at
set-up from counts (:func:`~bayes_spheres.kernels.fast_cost.choose_form`; ``form_reason``
gives the numbers).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_spheres.kernels.fast_cost import (
    MAX_GRAM_BYTES,
    Form,
    ProductCounter,
    Sizes,
    choose_form,
)
from bayes_spheres.kernels.gram import LinearLogistic, LowRankGram, StoredGram
from bayes_spheres.kernels.linear_products import (
    LinearProducts,
    slice_trajectory_products,
    to_csr,
)
from bayes_spheres.kernels.linear_trajectory import slice_trajectory_linear
from bayes_spheres.kernels.potential import unravel
from bayes_spheres.kernels.protocols import LogDensityAlong, Splitting


class NotLinearLogistic(ValueError):
    """The model is not a logistic likelihood linear in its latents under a Gaussian prior."""


class LogisticTarget:
    """Bernoulli-logistic likelihood with logits ``a = X theta + a0`` and a Gaussian prior
    ``log p(theta) = c + h.theta - theta' Q theta / 2`` (module docstring).

    For a basis ``E`` the matrices ``sign * (X E)`` and ``E' Q E`` are computed once; one update
    then keeps the per-chain signed logits [C, N] and ``theta Q E`` current in O(N + K).
    ``form``: how :meth:`splitting` integrates (:class:`~bayes_spheres.kernels.fast_cost.Form`;
    None: ``gram`` where ``A A'`` fits ``MAX_GRAM_BYTES``, else ``rows``);
    :func:`linear_logistic_target` chooses it by cost and says why in ``form_reason``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        prior_precision: Tensor,
        prior_shift: Tensor,
        offset: Tensor,
        prior_constant: float = 0.0,
        form: Form | str | None = None,
    ) -> None:
        if form is None:
            gram_bytes = len(x) ** 2 * x.element_size()
            form = Form.GRAM if gram_bytes <= MAX_GRAM_BYTES else Form.ROWS
            self.form_reason = f"A A' {gram_bytes} bytes, limit {MAX_GRAM_BYTES}"
        else:
            self.form_reason = f"form={Form(form).value!r} given"
        self.form: str = Form(form).value
        sign = 2.0 * y - 1.0
        self.signed_x = sign[:, None] * x  # [N, P]
        self.signed_offset = sign * offset  # [N]
        self.precision, self.shift = prior_precision, prior_shift
        self.prior_constant = prior_constant  # c (samplers need only the shape)
        # the latent sites whose flattened values, in this order, are theta (where known)
        self.sites: dict[str, torch.Size] = {}
        self._basis: Tensor | None = None
        self._signed_csr: Tensor | None = None  # X in CSR, for the sparse form
        self._whitened: tuple[Tensor, Tensor, LinearLogistic | LinearProducts] | None = None
        # on the CPU: placeholders until setup
        self._signed_x_basis = self._basis_precision = self._basis_shift = torch.empty(0)

    @classmethod
    def standard(cls, x: Tensor, y: Tensor, offset: Tensor) -> LogisticTarget:
        """The prior ``N(0, I)`` (``c = -P log(2 pi) / 2``): already whitened, so
        :meth:`splitting` needs no inverse or Cholesky factor (the conditional path builds
        one such target per chain and update, ``kernels/conditional.py``)."""
        size = x.shape[1]
        eye = torch.eye(size, dtype=x.dtype, device=x.device)
        zero = x.new_zeros(size)
        target = cls(x, y, eye, zero, offset, -0.5 * size * math.log(2.0 * math.pi))
        target._whitened = (zero, eye, target._integrand(None, target.signed_offset))
        return target

    def with_form(self, form: Form | str) -> LogisticTarget:
        """The same target integrated in another ``form`` (whitening and ``A A'`` rebuilt
        at the next :meth:`splitting`)."""
        other = copy.copy(self)
        other.form = Form(form).value
        other.form_reason = f"form={other.form!r} given"
        other._whitened = None
        return other

    def signed_logits(self, theta: Tensor) -> Tensor:
        """``sign * (X theta)`` [C, N] at ``theta`` [C, P]: through a CSR copy of ``X`` in
        the ``sparse`` form (O(nnz) instead of O(N P): at N = 30,012 and P = 501 with 3
        non-zeros a row, a dense product once per update would cost a fifth of the
        trajectory)."""
        if self.form != Form.SPARSE:
            return theta @ self.signed_x.T
        if self._signed_csr is None:
            self._signed_csr = to_csr(self.signed_x)
        return (self._signed_csr @ theta.T).T

    def log_likelihood(self, theta: Tensor) -> Tensor:
        return F.logsigmoid(self.signed_logits(theta) + self.signed_offset).sum(-1)

    def log_prior(self, theta: Tensor) -> Tensor:
        return theta @ self.shift - 0.5 * ((theta @ self.precision) * theta).sum(-1)

    def log_density(self, theta: Tensor) -> Tensor:
        return self.log_likelihood(theta) + self.log_prior(theta)

    def splitting(self, like: Tensor | None = None, beta: float = 1.0) -> Splitting:
        """The prior as the Gaussian part: ``theta = m + L z``, ``L L' = Q^-1``, ``m = Q^-1 h``;
        the rest is the likelihood, ``a = (sign X L) z + sign (X m + a0)``, raised to the
        power ``beta`` (1: the posterior; less: a tempered target, as annealed importance
        sampling needs, :mod:`bayes_spheres.evidence`). The whitening, and ``A A'`` where the
        ``form`` holds it, are computed once per target and shared by every ``beta``."""
        if self._whitened is None:
            cov = torch.linalg.inv(self.precision)
            chol = torch.linalg.cholesky(0.5 * (cov + cov.T))
            mean = cov @ self.shift
            a_0 = self.signed_x @ mean + self.signed_offset
            self._whitened = (mean, chol, self._integrand(chol, a_0))
        mean, chol, integrand = self._whitened
        integrand = integrand.tempered(beta)
        if isinstance(integrand, LinearProducts):
            trajectory = partial(slice_trajectory_products, products=integrand)
        else:
            trajectory = partial(slice_trajectory_linear, linear=integrand)
        return Splitting(integrand.rest, mean, chol, gaussian=True, trajectory=trajectory)

    def _integrand(self, chol: Tensor | None, a_0: Tensor) -> LinearLogistic | LinearProducts:
        """The likelihood in whitened coordinates in this target's ``form``: ``A = X L`` with
        ``A A'`` held (gram) or computed by rows, or products with ``X`` and ``L`` (None:
        the identity, a prior already white)."""
        if self.form in (Form.PRODUCTS, Form.SPARSE):
            sparse = self.form == Form.SPARSE
            return LinearProducts.build(self.signed_x, a_0, chol, sparse)
        a_z = self.signed_x if chol is None else self.signed_x @ chol  # [N, P]
        gram = StoredGram(a_z) if self.form == Form.GRAM else LowRankGram(a_z)
        return LinearLogistic(a_z, a_0, gram=gram)

    def lines(self, theta: Tensor, directions: Tensor) -> LogisticLines:
        if self._basis is not directions:
            self._basis = directions
            self._signed_x_basis = (self.signed_x @ directions).T.contiguous()  # [K, N]
            self._basis_precision = directions.T @ self.precision @ directions  # [K, K]
            self._basis_shift = self.shift @ directions  # [K]
        return LogisticLines(self, theta.clone(), directions)

    def scaling_ray(self, theta: Tensor) -> LogDensityAlong:
        """O(N) per chain and candidate: the signed logits ``e^s (sign X theta) + sign a0``
        (the offset does not scale) and the prior ``e^s h.theta - e^(2s) theta' Q theta / 2``."""
        logits = self.signed_logits(theta)[:, None, :]  # [C, 1, N]
        linear = (theta @ self.shift)[:, None]
        quadratic = 0.5 * ((theta @ self.precision) * theta).sum(-1)[:, None]

        def logp(s: Tensor) -> Tensor:
            g = torch.exp(s)
            ll = F.logsigmoid(torch.addcmul(self.signed_offset, g[..., None], logits)).sum(-1)
            return ll + g * (linear - quadratic * g)

        return logp


class LogisticLines:
    """Chains of a :class:`LogisticTarget` along the columns of ``directions``: the signed
    logits [C, N], the prior's slope along each direction [C, K] and its value [C] move with
    them."""

    def __init__(self, target: LogisticTarget, theta: Tensor, directions: Tensor) -> None:
        self.target, self.theta, self.directions = target, theta, directions
        self.logits = target.signed_logits(theta) + target.signed_offset  # [C, N]
        # log prior along E_k: lp + t (h.E_k - theta' Q E_k) - t^2 E_k' Q E_k / 2
        self.slope = target._basis_shift - theta @ target.precision @ directions  # [C, K]
        self.log_prior = target.log_prior(theta)  # [C]

    def along(self, k: int) -> LogDensityAlong:
        column = self.target._signed_x_basis[k]
        slope, curvature = self.slope[:, k : k + 1], 0.5 * self.target._basis_precision[k, k]
        logits, log_prior = self.logits[:, None, :], self.log_prior[:, None]

        def logp(t: Tensor) -> Tensor:
            ll = F.logsigmoid(torch.addcmul(logits, t[..., None], column)).sum(-1)
            return ll + log_prior + t * (slope - curvature * t)

        return logp

    def move(self, k: int, t: Tensor) -> None:
        row = self.target._basis_precision[k]
        self.log_prior = self.log_prior + t * (self.slope[:, k] - 0.5 * row[k] * t)
        self.slope = self.slope - t[:, None] * row
        self.logits = torch.addcmul(self.logits, t[:, None], self.target._signed_x_basis[k])
        self.theta = torch.addcmul(self.theta, t[:, None], self.directions[:, k])


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
    :func:`~bayes_spheres.kernels.fast_cost.choose_form` from the sizes, the design's zeros,
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
    value's counted (:class:`~bayes_spheres.kernels.fast_cost.ProductCounter`), twice (the
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
