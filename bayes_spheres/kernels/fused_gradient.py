"""Pyro's potential and its gradient as one recorded graph, for one chain's leapfrog steps.

The compiled potential (:func:`~bayes_spheres.kernels.potential.compiled_potential`, Pyro's
``jit_compile``) replays the model's tensor operations without its Python code, but its
gradient still runs through autograd: the graph is recorded on every call and walked back by
the autograd engine, which for a small model costs more than the arithmetic (eight schools:
0.65 ms a gradient, most of it dispatch). Here the whole computation, the potential and
``torch.autograd.grad`` of it, is recorded once as operations on tensors by PyTorch's
proxy-tensor tracer (:func:`torch.fx.experimental.proxy_tensor.make_fx`, which writes the
backward pass out as ordinary operations) and replayed through ``torch.jit.trace``: one call,
no autograd at run time. Measured, one thread, per value and gradient (the replay of Pyro's
compiled potential plus autograd against this): eight schools non-centred 1.12 against 0.74
ms, German credit probit 0.90 against 0.54, Brownian motion 0.68 against 0.33, stochastic
volatility 1.84 against 1.08, radon 1.80 against 0.90 (the 2-core machine shared with two
other runs).

What cannot be recorded is refused, with the reason: a model whose code branches in Python
on a latent value (the tracer cannot read values; the model's argument checks, which do, are
off while it records), and one whose recording would check a matrix factorisation (Cholesky,
a solve): the replay drops such checks, so a matrix that is not positive definite would give
numbers where Pyro's potential raises, which the kernel reads as an undefined potential
(:data:`~bayes_spheres.kernels.potential.UNDEFINED`). Such models keep the compiled potential
with autograd. What is recorded is used only where its values and gradients equal Pyro's
(with its gradient by autograd) at the chain's starting point and random points about it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pyro
import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx

from bayes_spheres.kernels.potential import ValueAndGradient, mismatch, probe_points

# operations whose recording checks a matrix factorisation, which the replay would drop
CHECKED_FACTORISATIONS = ("check_errors",)


def value_and_gradient(potential: Callable[[Tensor], Tensor]) -> ValueAndGradient:
    """``theta [P] -> (potential, its gradient)`` by autograd (the reference)."""

    def both(theta: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            point = theta.detach().requires_grad_(True)
            value = potential(point)
            (grad,) = torch.autograd.grad(value, point)
        return value.detach(), grad

    return both


def fused_gradient(
    potential: Callable[[Tensor], Tensor], like: Tensor
) -> tuple[ValueAndGradient | None, str]:
    """``potential`` ([P] -> scalar, Pyro's, uncompiled) and its gradient recorded as one graph
    at ``like[0]``, where a check at ``like``'s rows [C, P] and random points about them finds
    its values and gradients equal to Pyro's (module docstring); else None. Also the reason."""
    reference = value_and_gradient(potential)
    try:
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracers' notes on constants and checks
            graph = make_fx(reference)(like[0].detach().clone())
            checked = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
            if any(c in op for op in checked for c in CHECKED_FACTORISATIONS):
                return None, "no fused gradient: the replay would drop a factorisation's checks"
            fused = torch.jit.trace(graph, like[0].detach().clone(), check_trace=False)
    except Exception as err:  # the tracer cannot record this model
        return None, f"fused gradient failed: {type(err).__name__}: {str(err).splitlines()[0]}"
    try:
        points = probe_points(like)
        got, pyros = [fused(p) for p in points], [reference(p) for p in points]
    except Exception as err:  # either raised at a probe point: no comparison there
        return None, f"fused gradient not checked: {type(err).__name__} at a probe point"

    def stacked(results: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        values, grads = zip(*results, strict=True)
        return torch.stack(values), torch.stack(grads)

    why = mismatch("fused gradient", stacked(got), stacked(pyros))
    return (None, why) if why else (fused, "fused gradient: equal to Pyro's per point")
