"""The fast path's cost: which form of it to take, or none, decided at set-up from counts.

The fast path (:mod:`~bayes_spheres.kernels.fast.logistic`) integrates Hamiltonian trajectories of
a logistic likelihood with activations ``a = A z + a_0``, ``A`` [N, P] (the signed design
whitened by the prior). Its forms differ in what they hold and what one leapfrog step costs,
per chain (``K``: the points whose kicks count, ``a < 15``):

- ``gram``: the block integrator of
  :func:`~bayes_spheres.kernels.fast.linear_trajectory.slice_trajectory_linear` with ``A A'``
  held: N^2 numbers, O(N^2 P) to build; per step O((3 + K) N) when few points pull
  (separable data, the study's posterior: K a few), O(N P) when many do (a dense step);
- ``rows``: the same integrator with the rows of ``A A'`` computed when needed
  (:class:`~bayes_spheres.kernels.fast.gram.LowRankGram`): N P numbers, O(K N P) per block of
  up to 32 steps on top of ``gram``'s;
- ``products`` and ``sparse``: the generic leapfrog with ``X (L z)`` and ``L' (X' w)``
  (:mod:`~bayes_spheres.kernels.fast.linear_products`): O(N P), or O(nnz(X)) with ``X`` in CSR,
  per step whatever the data (2 nnz + 2 P^2 where the prior is not diagonal);
- the generic path (Pyro's potential and autograd) costs what the model's own arithmetic
  costs, counted once by :class:`ProductCounter` (its products, twice for the gradient;
  gathers and elementwise work are charged per point), plus Pyro's overhead per call.

:func:`choose_form` turns the sizes into seconds per step with the weights below (fitted to
``bench/fast_path.py`` on the study's 2-core machine, one torch thread, float64) and takes
the cheapest: a plain form at its cost; a block form (``gram`` only where ``A A'`` fits
``max_gram_bytes``) at the geometric mean of its best case (few points pull) and its worst
(every step dense: data that are not separable), since which holds is not known before
sampling, plus its set-up spread over ``SETUP_STEPS``; none (the generic path) where even
that costs more than the generic path. Counts, not timings: the same model and data give the
same choice. Measurements and misses: ``docs/mcmc.md``, "Cost of the fast path".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch.overrides import TorchFunctionMode

# the largest Gram matrix A A' [N, N] the fast path holds, in bytes (N = 5,792 in float64,
# 8,192 in float32); beyond it the block integrator computes rows on demand (form "rows")
MAX_GRAM_BYTES = 256 * 2**20
# points whose kicks count, per chain, in a block form's best case (separable data: on the
# study's posterior at the paper's scale a few per step)
BEST_CASE_KICKERS = 4
# Weights in seconds, fitted to bench/fast_path.py's per-form timings (least of 3 runs, one
# torch thread, float64, on the study's 2-core machine shared with other jobs); its
# --calibrate timings in tight loops, where the matrices stay in cache, are about half these
# for products and equal for the rest. Products: per matrix entry once per product and per
# multiply-add per chain (the study's posterior, N = 1,000, P = 501: 0.59 ns an entry for one
# chain, 1.7 ns for 8).
DENSE_ENTRY = 0.43e-9
DENSE_MADD = 0.163e-9
# CSR products (item response design, 3 non-zeros a row): per stored entry per chain, once
SPARSE_MADD = 0.55e-9
SPARSE_ENTRY = 1.8e-9
# a plain step's elementwise work (log sigmoid, sigmoid, the leapfrog) per point and chain
# (--calibrate: 18 ns), and its fixed cost
PLAIN_POINT = 18e-9
PLAIN_CALL = 60e-6
# a block form's best case per point and chain and per step (the study's posterior at the
# paper's scale, blocks cut short near its constraints: 0.134 ms per step for one chain and
# 0.54 ms for 8 at N = 1,000; where no point pulls at all, 18 ns a point), and the extra of
# a dense step (every kick through products, the lowest point of every path tried first:
# 140 ns on the item response design at N = 3,750)
BLOCK_POINT = 55e-9
BLOCK_CALL = 0.08e-3
DENSE_STEP_POINT = 150e-9
# the generic path: Pyro's trace and autograd per call (batched over the chains; 1.2 to
# 1.4 ms), and its elementwise work per point and chain (the item response model: gathers,
# sums, the Bernoulli log probability and their backward; 4.6 to 5.0 ms a gradient for
# 4 chains at N = 30,012)
GENERIC_CALL = 1.2e-3
GENERIC_POINT = 30e-9
# block steps (linear_trajectory.BLOCK_STEPS): the rows form's products are paid once a block
BLOCK_STEPS = 32
# the steps over which building A A' is weighed (a run of a few hundred updates of tens of
# steps, all chains together, has 10^4 or more)
SETUP_STEPS = 10_000


class Form(StrEnum):
    """The fast path's forms (module docstring)."""

    GRAM = "gram"
    ROWS = "rows"
    PRODUCTS = "products"
    SPARSE = "sparse"


@dataclass(frozen=True)
class Sizes:
    """What the choice depends on: N points, P latents, the non-zeros of the design ``X``,
    whether the prior's precision is diagonal (whitening keeps zeros), the bytes of a number
    and the chains stepped together."""

    points: int
    latents: int
    nonzeros: int
    diagonal: bool
    itemsize: int = 8
    chains: int = 1


@dataclass(frozen=True)
class Cost:
    """One form's estimate: seconds per leapfrog step of all chains in the best and the worst
    case (equal for the plain forms), bytes held, seconds to set up."""

    form: Form
    best: float
    worst: float
    bytes: int
    setup: float


def plain_costs(sizes: Sizes) -> dict[Form, Cost]:
    """``products`` (``A`` dense) and ``sparse`` (``X`` in CSR, twice: for ``X z`` and
    ``X' w``; ``L`` apart unless diagonal)."""
    n, p, c = sizes.points, sizes.latents, sizes.chains
    points = c * PLAIN_POINT * n + PLAIN_CALL
    dense = 2 * n * p * (DENSE_ENTRY + c * DENSE_MADD) + points
    chol = 0 if sizes.diagonal else 2 * p * p * (DENSE_ENTRY + c * DENSE_MADD)
    sparse = 2 * sizes.nonzeros * (SPARSE_ENTRY + c * SPARSE_MADD) + chol + points
    # CSR: values, column indices (8 bytes) and row offsets, for X and X'
    sparse_bytes = 2 * sizes.nonzeros * (sizes.itemsize + 8) + 8 * (n + p + 2)
    return {
        Form.PRODUCTS: Cost(Form.PRODUCTS, dense, dense, n * p * sizes.itemsize, 0.0),
        Form.SPARSE: Cost(Form.SPARSE, sparse, sparse, sparse_bytes, 0.0),
    }


def block_cost(sizes: Sizes, stored: bool) -> Cost:
    """``gram`` (``stored``) or ``rows``: best case ``BEST_CASE_KICKERS`` points pulling per
    chain, worst case a dense step (every kick through products with ``A``) each step."""
    n, p, c = sizes.points, sizes.latents, sizes.chains
    k = BEST_CASE_KICKERS
    best = c * ((3 + k) * n * DENSE_MADD + BLOCK_POINT * n) + BLOCK_CALL
    if not stored:  # the kickers' rows of A A', once per block
        best += k * n * p * (DENSE_ENTRY + c * DENSE_MADD) / BLOCK_STEPS
    products = 2 * n * p * (DENSE_ENTRY + c * DENSE_MADD)
    worst = products + c * (PLAIN_POINT + DENSE_STEP_POINT) * n + BLOCK_CALL
    held = (n * n if stored else 0) + n * p
    setup = n * n * p * DENSE_MADD if stored else 0.0
    form = Form.GRAM if stored else Form.ROWS
    return Cost(form, best, worst, held * sizes.itemsize, setup)


def generic_cost(sizes: Sizes, madds: float) -> float:
    """Seconds per leapfrog step of the generic path for all chains: the model's counted
    multiply-adds (value and gradient, one point; as products over all chains at once, a
    batched potential) and its elementwise work per point and chain, and Pyro's overhead
    once."""
    c = sizes.chains
    return GENERIC_CALL + madds * (DENSE_ENTRY + c * DENSE_MADD) + c * sizes.points * GENERIC_POINT


def expected(cost: Cost) -> float:
    """Seconds per step to weigh forms by: a plain form's cost; a block form's geometric mean
    of its best and worst case (taken where it gains more on separable data than it loses
    on other data, in ratio), plus its set-up spread over ``SETUP_STEPS``."""
    return math.sqrt(cost.best * cost.worst) + cost.setup / SETUP_STEPS


def describe(cost: Cost) -> str:
    if cost.best == cost.worst:
        step = f"{_ms(cost.worst)}/step"
    else:
        step = f"{_ms(cost.best)}-{_ms(cost.worst)}/step (~{_ms(expected(cost))})"
    setup = f", set-up {cost.setup:.3g} s" if cost.setup > 1e-3 else ""
    return f"{cost.form} {step}, {_bytes(cost.bytes)}{setup}"


def choose_form(
    sizes: Sizes, generic_madds: float | None = None, max_gram_bytes: int = MAX_GRAM_BYTES
) -> tuple[Form | None, str]:
    """The form to take, or None for the generic path, and one line with the numbers
    (module docstring): the cheapest by :func:`expected` of ``products``, ``sparse``, ``rows``
    and, where ``A A'`` fits ``max_gram_bytes``, ``gram``. ``generic_madds``: the model's
    multiply-adds in one value and gradient (None: not counted, the fast path not declined)."""
    gram_bytes = sizes.points**2 * sizes.itemsize
    candidates = [*plain_costs(sizes).values(), block_cost(sizes, stored=False)]
    if gram_bytes <= max_gram_bytes:
        candidates.append(block_cost(sizes, stored=True))
    chosen = min(candidates, key=expected)
    numbers = (
        f"N = {sizes.points}, P = {sizes.latents}, {sizes.nonzeros} non-zeros "
        f"({sizes.nonzeros / max(1, sizes.points * sizes.latents):.1%}), {sizes.chains} chains, "
        f"A A' {_bytes(gram_bytes)} (limit {_bytes(max_gram_bytes)}); "
        + "; ".join(describe(cost) for cost in candidates)
    )
    if generic_madds is not None:
        generic = generic_cost(sizes, generic_madds)
        numbers += f"; generic {_ms(generic)}/step"
        if expected(chosen) > generic:
            return None, f"fast path would cost more than the generic one: {numbers}"
    return chosen.form, f"{chosen.form}: {numbers}"


# torch functions whose first two tensor arguments are multiplied as matrices (addmm & co.:
# the second and third)
_PRODUCTS = {
    torch.matmul: 0, torch.Tensor.matmul: 0, torch.Tensor.__matmul__: 0,
    torch.Tensor.__rmatmul__: 0, torch.mm: 0, torch.Tensor.mm: 0, torch.mv: 0,
    torch.Tensor.mv: 0, torch.bmm: 0, torch.Tensor.bmm: 0, torch.dot: 0, torch.Tensor.dot: 0,
    torch.nn.functional.linear: 0, torch.addmm: 1, torch.Tensor.addmm: 1, torch.addmv: 1,
    torch.baddbmm: 1,
}  # fmt: skip


class ProductCounter(TorchFunctionMode):
    """Counts the multiply-adds of the matrix products and ``einsum`` contractions run inside
    it (``madds``), at the level of torch functions: a count, not a timing. Gathers and
    elementwise operations are not counted (charged per point by :func:`generic_cost`)."""

    def __init__(self) -> None:
        super().__init__()
        self.madds = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.einsum:
            self.madds += _einsum_madds(args)
        elif func in _PRODUCTS and isinstance(out, torch.Tensor):
            left = args[_PRODUCTS[func]]
            if func is torch.Tensor.__rmatmul__:
                left = args[1]
            inner = left.shape[-1] if left.dim() > 0 else 1
            self.madds += out.numel() * inner
        return out


def _einsum_madds(args: tuple) -> int:
    """Every index's size once (the output's and the contracted ones), times the largest
    part an ``...`` stands for."""
    equation, *operands = args
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = list(operands[0])
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    batch = 1
    for spec, operand in zip(inputs, operands, strict=False):
        head, dots, tail = spec.partition("...")
        shape = list(operand.shape)
        end = len(shape) - len(tail)
        sizes.update(zip(head, shape[: len(head)], strict=False))
        sizes.update(zip(tail, shape[end:], strict=False))
        if dots:
            batch = max(batch, math.prod(shape[len(head) : end]))
    return math.prod(sizes.values()) * batch


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError
