"""Closed-form reparameterisation gradients of the ELBO for the study's SVI rows.

Pyro's ``SVI.step`` spends most of its 1.7-2.8 ms per step at D = 500 outside the
arithmetic: tracing the guide and the model, the param store, one optimiser per parameter,
autograd's graph. For the two pairs of Table 1 the gradient of the one-draw ELBO estimate
has a short closed form, so one step is a handful of BLAS calls on the same parameters:

- a full-covariance Gaussian guide (:class:`~bayes_spheres.guides.AutoFullCovarianceNormal`)
  on any model whose activations are linear in its latents and whose prior is Gaussian
  (:func:`~bayes_spheres.kernels.fast.logistic_model.model_target` reads both off the Pyro model:
  the flat and shared-mean models, or a user's model of that kind);
- the direction x scale guide ``q(v, b) q(s)`` on the non-centered hierarchical model,
  with or without a learnt prior ``p(s)``.

The step draws its noise in the order Pyro's ``Trace_ELBO`` does (the guide's ``eps``, then
``q(s)``'s, then the model's minibatch), applies SGD with momentum exactly as
``torch.optim.SGD`` does, and writes into the very tensors of Pyro's param store: the same
seed follows the Pyro path to rounding (``tests/inference/test_elbo_gradients.py``), and the fitted
guide is then used as any other. Derivation, with ``f`` the loss scale (``1/N`` per datum),
``z = loc + S (eps + L eps)``, ``S = softplus(u)`` and ``g = d(-log p(z) - lik(z))/dz``::

    loss = f (log q(z) - log p(z) - lik(z)),  log q(z) = -|eps|^2 / 2 - sum log S + const
    d/d loc = f g,   d/d u = f (g (eps + L eps) - 1/S) sigmoid(u),
    d/d L = f (S g) eps^T  (strictly lower part)

and, for the hierarchical model, ``s = exp(t)``, ``t = m + sigma eps_s``, the activations
``a = s (phi v) + b``; the ``-t`` of ``log q(s)`` cancels the ``+t`` of ``-log p(s)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from torch import Tensor

from bayes_spheres.guides import AutoFullCovarianceNormal
from bayes_spheres.kernels.fast.logistic_model import model_target
from bayes_spheres.models import Hierarchical, SphereModel

LOG_2PI = math.log(2 * math.pi)
# agreement asked of the first step with Pyro's Trace_ELBO (relative; rounding is ~1e-15
# in float64, ~1e-6 in float32)
FIRST_STEP_RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}


class Unsupported(ValueError):
    """The model and guide have no closed-form step here (Pyro's SVI handles them)."""


def minibatch(n: int, size: int) -> Tensor:
    """Pyro's subsample: a random ``size`` of ``range(n)``, or all of it in order (no draw)
    when ``size >= n``."""
    # on the CPU: an index; the same draw on every device
    return torch.randperm(n)[:size] if size < n else torch.arange(n)


@dataclass
class Momentum:
    """``torch.optim.SGD(lr, momentum)`` (no dampening, no Nesterov) on a set of tensors,
    in place: ``buf = momentum * buf + grad``, ``p -= lr * buf``. Kept instead of
    ``torch.optim.SGD`` itself because that needs every gradient as a tensor of its own
    (the lower factor's as a [P, P] ``tril(outer)``, which the step here fuses into one rank-1
    update) and a call per step: measured at D = 500 (1,000 steps, on a loaded 2-core
    machine) 0.49-0.57 against 0.62-0.69 ms per step for SVI and 0.67-0.72 against
    1.16-1.36 ms for Hier. SVI. Tested the same as Pyro's ``SGD``: the closed-form fits follow
    Pyro's path (``tests/inference/test_elbo_gradients.py``)."""

    lr: float
    momentum: float

    def update(self, param: Tensor, buf: Tensor, grad: Tensor) -> None:
        buf.mul_(self.momentum).add_(grad)
        param.add_(buf, alpha=-self.lr)


class FullCovarianceState:
    """The unconstrained parameters of a full-covariance guide (``loc``, ``u`` with
    ``S = softplus(u)``, the strictly lower ``L``), the param store's own tensors, and
    their momentum buffers."""

    def __init__(self, guide: AutoFullCovarianceNormal) -> None:
        params = dict(guide.named_parameters())
        self.loc = params["loc"].data
        self.u = params["scale_unconstrained"].data
        self.lower = params["strict_lower"].data
        self.bufs = [torch.zeros_like(p) for p in (self.loc, self.u, self.lower)]
        self.dim = self.loc.shape[0]

    def draw(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``eps``, ``r = eps + L eps``, ``S`` and ``z = loc + S r`` (the guide's ``rsample``)."""
        eps = torch.randn(self.dim, dtype=self.loc.dtype, device=self.loc.device)
        r = torch.addmv(eps, self.lower, eps)
        scale = F.softplus(self.u)
        return eps, r, scale, self.loc + scale * r

    def log_q(self, eps: Tensor, scale: Tensor) -> Tensor:
        return -0.5 * eps.dot(eps) - scale.log().sum() - 0.5 * self.dim * LOG_2PI

    def gradients(
        self, f: float, g: Tensor, eps: Tensor, r: Tensor, scale: Tensor
    ) -> dict[Tensor, Tensor]:
        """The loss's gradient with respect to each parameter, from ``g = d(-log p - lik)/dz``
        (unscaled)."""
        return {
            self.loc: f * g,
            self.u: f * (g * r - 1.0 / scale) * torch.sigmoid(self.u),
            self.lower: torch.outer(f * scale * g, eps).tril_(-1),
        }

    def update(
        self, opt: Momentum, f: float, g: Tensor, eps: Tensor, r: Tensor, scale: Tensor
    ) -> None:
        """One SGD step from ``g = d(-log p - lik)/dz`` (unscaled): :meth:`gradients`, with
        the lower factor's momentum update fused into one rank-1 update."""
        buf_loc, buf_u, buf_lower = self.bufs
        grad_u = f * (g * r - 1.0 / scale) * torch.sigmoid(self.u)
        opt.update(self.loc, buf_loc, f * g)
        opt.update(self.u, buf_u, grad_u)
        # buf = momentum * buf + tril(outer), one BLAS rank-1 update and a tril in place
        buf_lower.addr_(f * scale * g, eps, beta=opt.momentum).tril_(-1)
        self.lower.add_(buf_lower, alpha=-opt.lr)


class LinearGaussianStep:
    """Full-covariance guide on a model with a Gaussian prior and activations linear in the
    latents: ``a = X z + a0``, ``log p(z) = c + h.z - z'Qz/2``."""

    def __init__(self, model: SphereModel, guide: AutoFullCovarianceNormal, phi: Tensor, y: Tensor):
        target = model_target(model, phi, y)
        self.state = FullCovarianceState(guide)
        # the target's coordinates are the prior's sites in trace order; so must the guide's be
        # (its median lists them in the order its latent vector holds them; all real here)
        guide_sites = [(name, v.numel()) for name, v in guide.median().items()]
        target_sites = [(k, math.prod(shape)) for k, shape in target.sites.items()]
        if guide_sites != target_sites:
            raise Unsupported(
                f"{model.name}: the guide's latents {guide_sites} are not the prior's "
                f"{target_sites} in the same order"
            )
        latents = target.signed_x.shape[1]
        if latents != self.state.dim:
            raise Unsupported(
                f"{model.name}: guide over {self.state.dim} latents, model has {latents}"
            )
        self.signed_x, self.signed_offset = target.signed_x, target.signed_offset
        self.shift, self.precision = target.shift, target.precision
        off_diagonal = self.precision - torch.diag(self.precision.diagonal())
        diagonal = torch.count_nonzero(off_diagonal) == 0
        self.precision_diagonal = self.precision.diagonal().clone() if diagonal else None
        self.prior_constant = target.prior_constant
        self.n = len(y)

    def _forward(self, f: float, batch: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Draw, and return the loss and ``(g, eps, r, scale)``."""
        st = self.state
        eps, r, scale, z = st.draw()
        idx = minibatch(self.n, batch)
        signed_x = self.signed_x[idx]
        signed_activation = torch.addmv(self.signed_offset[idx], signed_x, z)
        ratio = self.n / len(idx)
        if self.precision_diagonal is not None:
            precision_z = z * self.precision_diagonal
        else:
            precision_z = torch.mv(self.precision, z)
        log_p = self.prior_constant + self.shift.dot(z) - 0.5 * z.dot(precision_z)
        lik = ratio * F.logsigmoid(signed_activation).sum()
        g = (
            precision_z
            - self.shift
            - ratio * torch.mv(signed_x.T, torch.sigmoid(-signed_activation))
        )
        return f * (st.log_q(eps, scale) - log_p - lik), (g, eps, r, scale)

    def gradients(self, f: float, batch: int) -> tuple[float, dict[Tensor, Tensor]]:
        """One step's loss and gradients (per parameter tensor), nothing updated."""
        loss, pieces = self._forward(f, batch)
        return float(loss), self.state.gradients(f, *pieces)

    def __call__(self, opt: Momentum, f: float, batch: int) -> float:
        loss, pieces = self._forward(f, batch)
        self.state.update(opt, f, *pieces)
        return float(loss)


class HierarchicalStep:
    """``q(v, b) q(s)`` on ``s ~ LogNormal(m_p, sigma_p)``, ``v ~ N(0, I)``, ``w = s v``,
    ``b ~ N(0, bias_scale^2)`` (no ``b`` without bias); ``p(s)``'s parameters are learnt
    with the ELBO when the model's ``learn_prior`` is set."""

    def __init__(self, model: Hierarchical, guide: AutoGuideList, phi: Tensor, y: Tensor):
        self.state = FullCovarianceState(guide[0])
        scale_params = dict(guide[1].named_parameters())
        if set(scale_params) != {"locs.s_unconstrained", "scales.s_unconstrained"}:
            raise Unsupported(f"the scale guide's parameters are {sorted(scale_params)}, not s's")
        self.m_q = scale_params["locs.s_unconstrained"].data
        self.u_q = scale_params["scales.s_unconstrained"].data
        self.learn_prior = model.learn_prior
        loc, scale = _log_normal_prior(model, phi, y)
        if model.learn_prior:
            store = dict(pyro.get_param_store().named_parameters())
            self.m_p, self.rho_p = store["s_prior_loc"].data, store["s_prior_scale"].data
        else:
            self.m_p, self.rho_p = loc, scale.log()
        self.bufs = [torch.zeros_like(p) for p in (self.m_q, self.u_q, self.m_p, self.rho_p)]
        self.bias, self.bias_var = model.bias, model.bias_scale**2
        self.dim = phi.shape[1]
        if self.state.dim != self.dim + int(model.bias):
            raise Unsupported(
                f"direction guide over {self.state.dim} latents, expected "
                f"{self.dim + int(model.bias)}"
            )
        self.phi, self.sign = phi, 2.0 * y - 1.0
        self.n = len(y)

    def _forward(self, f: float, batch: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Draw, and return the loss and the pieces of its gradient."""
        st = self.state
        eps, r, scale, z = st.draw()
        eps_s = torch.empty_like(self.m_q).normal_()  # Normal.rsample's draw
        sigma_q = F.softplus(self.u_q)
        t = self.m_q + sigma_q * eps_s
        s = t.exp()
        idx = minibatch(self.n, batch)
        ratio = self.n / len(idx)
        v = z[: self.dim]
        b = z[self.dim] if self.bias else z.new_zeros(())
        phi, sign = self.phi[idx], self.sign[idx]
        phi_v = torch.mv(phi, v)
        signed_activation = sign * (s * phi_v + b)
        lik = ratio * F.logsigmoid(signed_activation).sum()
        g_a = -ratio * sign * torch.sigmoid(-signed_activation)  # d(-lik)/da
        sigma_p = self.rho_p.exp()
        dt = (t - self.m_p) / sigma_p
        log_p = (
            -0.5 * v.dot(v)
            - 0.5 * self.dim * LOG_2PI
            - 0.5 * dt.square()
            - sigma_p.log()
            - t
            - 0.5 * LOG_2PI
        )
        g = torch.empty_like(z)
        g[: self.dim] = v + s * torch.mv(phi.T, g_a)
        if self.bias:
            log_p = (
                log_p
                - 0.5 * b.square() / self.bias_var
                - 0.5 * math.log(2 * math.pi * self.bias_var)
            )
            g[self.dim] = b / self.bias_var + g_a.sum()
        log_q = st.log_q(eps, scale) - 0.5 * eps_s.square() - sigma_q.log() - 0.5 * LOG_2PI - t
        loss = f * (log_q - log_p - lik)
        g_t = dt / sigma_p + s * phi_v.dot(g_a)  # the +-t of p(s) and q(s) cancel
        grad_m_q = f * g_t
        grad_u_q = f * (g_t * eps_s - 1.0 / sigma_q) * torch.sigmoid(self.u_q)
        return loss, (g, eps, r, scale, grad_m_q, grad_u_q, dt, sigma_p)

    def _scale_gradients(self, f: float, grad_m_q, grad_u_q, dt, sigma_p) -> dict[Tensor, Tensor]:
        grads = {self.m_q: grad_m_q, self.u_q: grad_u_q}
        if self.learn_prior:
            grads |= {self.m_p: -f * dt / sigma_p, self.rho_p: f * (1.0 - dt.square())}
        return grads

    def gradients(self, f: float, batch: int) -> tuple[float, dict[Tensor, Tensor]]:
        """One step's loss and gradients (per parameter tensor), nothing updated."""
        loss, (g, eps, r, scale, *rest) = self._forward(f, batch)
        grads = self.state.gradients(f, g, eps, r, scale) | self._scale_gradients(f, *rest)
        return float(loss), grads

    def __call__(self, opt: Momentum, f: float, batch: int) -> float:
        loss, (g, eps, r, scale, *rest) = self._forward(f, batch)
        self.state.update(opt, f, g, eps, r, scale)
        scale_gradients = self._scale_gradients(f, *rest).items()
        for (param, grad), buf in zip(scale_gradients, self.bufs, strict=False):
            opt.update(param, buf, grad)
        return float(loss)


def _log_normal_prior(model: SphereModel, phi: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``p(s)``'s ``(loc, scale)`` as the model samples it (its trace, the random stream left
    alone); :class:`Unsupported` unless ``s`` is a scalar log-normal."""
    with torch.random.fork_rng(devices=[phi.device] if phi.is_cuda else []):
        trace = poutine.trace(model).get_trace(phi, y, subsample_size=1)
    node = trace.nodes.get("s")
    fn = node["fn"] if node is not None else None
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
        fn = fn.base_dist
    if not isinstance(fn, dist.LogNormal) or fn.loc.numel() != 1:
        family = "no site 's'" if node is None else f"s ~ {type(node['fn']).__name__}"
        raise Unsupported(f"{model.name}: {family}; the closed-form step needs a log-normal scale")
    return fn.loc.detach().reshape(()), fn.scale.detach().reshape(())


def first_step_gap(
    step: LinearGaussianStep | HierarchicalStep,
    model: Callable,
    guide: Callable,
    f: float,
    phi: Tensor,
    y: Tensor,
    batch: int,
) -> str | None:
    """Check the closed-form step against its specification, Pyro's ``Trace_ELBO``: the loss
    and its gradient with respect to every parameter in Pyro's param store, at the current
    parameters and with the same noise (both from the current random stream, which is left
    as it was). None where they agree to ``FIRST_STEP_RTOL`` (relative to the larger value),
    else the reason."""
    devices = [phi.device] if phi.is_cuda else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        ours, our_grads = step.gradients(f, batch)
    by_storage = {param.data_ptr(): grad for param, grad in our_grads.items()}
    params = dict(pyro.get_param_store().named_parameters())
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        loss = Trace_ELBO().differentiable_loss(
            poutine.scale(model, f), poutine.scale(guide, f), phi, y, subsample_size=batch
        )
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    theirs_loss, rtol = loss.item(), FIRST_STEP_RTOL[phi.dtype]
    if not abs(ours - theirs_loss) <= rtol * max(1.0, abs(theirs_loss)):
        return f"loss {ours:.10g} against Pyro's Trace_ELBO {theirs_loss:.10g}"
    for (name, param), grad in zip(params.items(), grads, strict=True):
        theirs = torch.zeros_like(param) if grad is None else grad
        mine = by_storage.get(param.data_ptr(), torch.zeros_like(param))
        gap = float((mine - theirs).abs().max()) if param.numel() else 0.0
        if not gap <= rtol * max(1.0, float(theirs.abs().max()) if param.numel() else 0.0):
            return f"gradient of {name!r} differs from Pyro's Trace_ELBO by {gap:.3g}"
    return None


def closed_form_step(
    model: SphereModel, guide: Callable, phi: Tensor, y: Tensor
) -> Callable[[Momentum, float, int], float]:
    """The closed-form step for ``model`` and its (set-up) ``guide``: called with the
    optimiser, the loss scale and the minibatch size, it draws, updates the guide's (and a
    learnt prior's) parameters in place and returns the loss. Raises :class:`Unsupported`
    for any other pair."""
    if isinstance(guide, AutoFullCovarianceNormal):
        try:
            return LinearGaussianStep(model, guide, phi, y)
        except Unsupported:
            raise
        except ValueError as err:  # model_target: not linear, not Gaussian, not real
            raise Unsupported(
                f"no closed-form ELBO gradient for model {model.name} with a full-covariance "
                f"guide, which needs a Gaussian prior over real latents and linear "
                f"activations ({err})"
            ) from err
    if (
        isinstance(model, Hierarchical)
        and not model.centered
        and isinstance(guide, AutoGuideList)
        and len(guide) == 2
        and isinstance(guide[0], AutoFullCovarianceNormal)
        and isinstance(guide[1], AutoNormal)
    ):
        return HierarchicalStep(model, guide, phi, y)
    raise Unsupported(
        f"no closed-form ELBO gradient for model {model.name} with guide "
        f"{type(guide).__name__}; supported: full_covariance on a Gaussian-prior linear model "
        "(flat, shared_mean), direction_scale on hier_noncentered"
    )
