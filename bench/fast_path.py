"""Time and memory per leapfrog step of each form of the fast path
(``bayes_spheres/kernels/fast/fast_cost.py``) at several N and P, against the baselines: the
``gram`` form (the fast path as it was: ``A A'`` held whatever N) and the generic path
(``Slice(model, fast=False)``: Pyro's potential and its gradient, batched over the chains).

Problems, each a Pyro model probed by ``linear_logistic_target`` as ``Slice`` probes it:

- ``study``: the flat model on the spheres (``bayes_spheres.models.Flat``), P = D + 1,
  separable: few points pull (the block integrator's best case);
- ``irt``: item response theory, ``logit = ability[student] - difficulty[question] + mean``
  (Inference Gym's synthetic IRT has N = 30,012, P = 501): the design has 3 non-zeros per
  row, the data are not separable (every point pulls: the block integrator's worst case);
- ``credit``: a dense logistic regression, German-credit-like (N = 1,000, P = 25), not
  separable;
- ``gym``: Inference Gym's German credit logistic regression and synthetic item response
  theory themselves (``bayes_spheres.benchmarks``).

Per size: the probe's time and the rule's choice (its reason line); a short warm-up with
the chosen form; then from the same state, step size and random stream, ``--updates``
trajectories of every form: set-up time (whitening, ``A A'``), bytes held, ms per leapfrog
step (all chains), and the largest difference of the final state from the first form's
(the same chain to rounding; ``gram`` and ``rows`` leave out kicks below 3e-7, so ~1e-6).
The generic path is timed per gradient of Pyro's batched potential (one per leapfrog step).
``gram`` is skipped where ``A A'`` would exceed ``--gram-limit-gib``.

Run (about twenty minutes on the study's 2-core machine shared with other jobs; `gram` at
N = 15,000 and 16,000 holds 1.7 and 1.9 GiB)::

    python bench/fast_path.py            # all sizes
    python bench/fast_path.py --quick    # small sizes only, a smoke test
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.mcmc.util import initialize_model

from bayes_spheres import benchmarks
from bayes_spheres.data import load_spheres
from bayes_spheres.kernels.fast import linear_trajectory as integrator
from bayes_spheres.kernels.fast.fast_cost import Form
from bayes_spheres.kernels.fast.gram import LinearLogistic, StoredGram
from bayes_spheres.kernels.fast.linear_products import LinearProducts
from bayes_spheres.kernels.fast.logistic import LogisticTarget, NotLinearLogistic
from bayes_spheres.kernels.fast.logistic_model import linear_logistic_target
from bayes_spheres.kernels.hamiltonian import MAX_ENERGY, HamiltonianSliceSampler
from bayes_spheres.kernels.potential import (
    BatchedPotential,
    PotentialTarget,
    batched_potential,
    unravel,
)
from bayes_spheres.models import Flat

DT = torch.float64


def irt_data(students: int, questions: int, observed: int, seed: int = 0):
    """``observed`` of the students x questions responses, drawn from the IRT model."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(students * questions, generator=g)[:observed].sort().values
    student, question = pick // questions, pick % questions
    ability = torch.randn(students, generator=g, dtype=DT)
    difficulty = torch.randn(questions, generator=g, dtype=DT)
    p = torch.sigmoid(ability[student] - difficulty[question] + 0.75)
    y = (torch.rand(observed, generator=g, dtype=DT) < p).to(DT)
    return (student, question, y, students, questions)


def irt(student, question, y, students, questions) -> None:
    mean = pyro.sample("mean", dist.Normal(torch.tensor(0.75, dtype=DT), 1.0))
    with pyro.plate("students", students):
        ability = pyro.sample("ability", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
    with pyro.plate("questions", questions):
        difficulty = pyro.sample("difficulty", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
    with pyro.plate("data", len(y)):
        # batched over points (the generic path's batched potential): mean is [B, 1]
        logits = ability[..., student] - difficulty[..., question] + mean
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def credit_data(n: int, p: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=DT)
    beta = 0.5 * torch.randn(p, generator=g, dtype=DT)
    y = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(x @ beta - 1.0)).to(DT)
    return (x, y)


def credit(x, y) -> None:
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1], dtype=DT), 1.0).to_event(1))
    b = pyro.sample("b", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
    with pyro.plate("data", len(y)):
        # batched over points (the generic path's batched potential): w [B, 1, P], b [B, 1]
        logits = (x @ w[..., None])[..., 0] + b[..., None]
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def study_data(dim: int, n: int, seed: int = 0):
    data = load_spheres(dim, n, 10, seed=seed, dtype=DT)
    return (data.phi_train, data.y_train)


def gym(name: str) -> tuple:
    """An Inference Gym target as ``bayes_spheres.benchmarks`` writes it (data bound)."""
    return (benchmarks.load(name).model,)


def gym_model(model: Callable[[], None]) -> None:
    model()


# (problem, model, data maker, sizes, chains); --quick keeps the first size of each
SIZES: list[tuple[str, Callable, Callable, list[tuple], int]] = [
    ("study", Flat(), study_data, [(50, 200), (500, 1000), (100, 4000), (100, 16000)], 8),
    ("irt", irt, irt_data, [(100, 50, 3750), (200, 100, 15000), (400, 100, 30012)], 4),
    ("credit", credit, credit_data, [(1000, 24)], 4),
    ("gym", gym_model, gym, [("german_credit_logistic",), ("item_response_theory",)], 4),
]


def held_bytes(integrand: LinearLogistic | LinearProducts) -> int:
    """Bytes of the tensors a form holds for its trajectories."""
    if isinstance(integrand, LinearProducts):
        tensors = [integrand.a_0, integrand.chol, integrand.design, integrand.design_t]
    else:
        tensors = [integrand.a_z, integrand.a_0]
        if isinstance(integrand.gram, StoredGram):
            tensors.append(integrand.gram.matrix)
    total = 0
    for t in (t for t in tensors if t is not None):
        if t.layout == torch.sparse_csr:
            parts = (t.values(), t.col_indices(), t.crow_indices())
            total += sum(p.numel() * p.element_size() for p in parts)
        else:
            total += t.numel() * t.element_size()
    return total


def probe(model, args: tuple, chains: int) -> tuple[LogisticTarget, float, PotentialTarget]:
    with torch.random.fork_rng():
        init, potential_fn, transforms, prototype = initialize_model(model, model_args=args)
    shapes = {k: v.shape for k, v in init.items()}
    like = next(iter(init.values()))
    start = time.perf_counter()
    try:
        target = linear_logistic_target(
            model, args, {}, shapes, potential_fn, like, prototype, chains=chains
        )
    except NotLinearLogistic as err:  # declined: time the forms anyway
        print(f"  declined: {err}")
        target = linear_logistic_target(
            model, args, {}, shapes, potential_fn, like, prototype, form=Form.PRODUCTS
        )
    seconds = time.perf_counter() - start
    generic = PotentialTarget(lambda t: potential_fn(unravel(t, shapes)))
    batched = BatchedPotential(model, args, {}, transforms, shapes, prototype)
    initial = torch.stack([like.new_zeros(target.signed_x.shape[1])] * chains)
    with torch.random.fork_rng():  # as Slice does: batched where it equals Pyro's per point
        if batched_potential(batched, generic.potential, initial) is None:
            generic.batched = batched
    return target, seconds, generic


def time_form(target: LogisticTarget, theta, eps: float, steps: int, updates: int, repeats: int):
    start = time.perf_counter()
    split = target.splitting()
    setup = time.perf_counter() - start
    held = held_bytes(next(iter(split.trajectory.keywords.values())))
    per_step = math.inf
    for _ in range(repeats):  # the same work each time: the least disturbed run counts
        z = split.to_z(theta)
        lp, grad = split.rest(z)
        torch.manual_seed(1)
        start = time.perf_counter()
        for _ in range(updates):
            step = split.trajectory(z, lp, grad, eps, steps, MAX_ENERGY)
            z, lp, grad = step.z, step.logp_rest, step.grad
        per_step = min(per_step, (time.perf_counter() - start) / (updates * steps))
    return setup, held, per_step, split.to_theta(z)


def time_generic(generic: PotentialTarget, theta, repeats: int = 5) -> float:
    rest = generic.splitting(theta[0]).rest
    rest(theta)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        rest(theta)
        best = min(best, time.perf_counter() - start)
    return best


def run_size(name: str, model, args: tuple, chains: int, options) -> None:
    target, probe_s, generic = probe(model, args, chains)
    n, p = target.signed_x.shape
    print(f"{name}: N = {n}, P = {p}, {chains} chains; probe {probe_s:.2f} s; rule: "
          f"{target.form}  ({target.form_reason})", flush=True)  # fmt: skip
    torch.manual_seed(0)
    sampler = HamiltonianSliceSampler(options.warmup, trajectory=1.5, init_step=0.05)
    theta = 0.1 * torch.randn(chains, p, dtype=DT)
    logp = target.log_density(theta)
    for _ in range(options.warmup):
        theta, logp = sampler.sweep(target, theta, logp)
    eps = sampler.step_size
    steps = min(max(1, round(1.5 / eps)), 64)
    print(f"  after {options.warmup} warm-up updates: step {eps:.3g}, {steps} steps/update")
    first = None
    forms = [Form.GRAM, Form.ROWS, Form.PRODUCTS, Form.SPARSE]
    for form in forms:
        gram_gib = n * n * 8 / 2**30
        if form == Form.GRAM and gram_gib > options.gram_limit_gib:
            print(f"  {form:>8}: skipped, A A' {gram_gib:.2f} GiB > --gram-limit-gib")
            continue
        setup, held, per_step, end = time_form(
            target.with_form(form), theta, eps, steps, options.updates, options.repeats
        )
        diff = "" if first is None else f", max |d theta| {float((end - first).abs().max()):.1e}"
        first = end if first is None else first
        mark = " *" if form == target.form else ""
        print(f"  {form:>8}: set-up {setup:7.3f} s, held {held / 2**20:8.2f} MiB, "
              f"{per_step * 1e3:8.3f} ms/step{diff}{mark}", flush=True)  # fmt: skip
    seconds = time_generic(generic, theta)
    how = "batched" if generic.batched is not None else "per point"
    print(f"  {'generic':>8}: Pyro potential + gradient at {chains} points ({how}) "
          f"{seconds * 1e3:8.3f} ms/step (fast=False)", flush=True)  # fmt: skip


def best_time(fn: Callable[[], object], repeats: int = 7) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _floor(form: Form, n: int, chains: int, dense_steps: bool = False) -> float:
    """Seconds per step of ``form`` (P = 2) where no point pulls (offsets 60)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g, dtype=DT)
    offset = torch.full((n,), 60.0, dtype=DT)
    eye, zero = torch.eye(2, dtype=DT), torch.zeros(2, dtype=DT)
    far = LogisticTarget(x, torch.ones(n, dtype=DT), eye, zero, offset, form=form)
    split = far.splitting()
    z = torch.randn(chains, 2, generator=g, dtype=DT)
    lp, grad = split.rest(z)
    limit = integrator.CANDIDATE_ELEMENTS
    integrator.CANDIDATE_ELEMENTS = 0 if dense_steps else limit
    try:
        return best_time(lambda: split.trajectory(z, lp, grad, 0.05, 64), 3) / 64
    finally:
        integrator.CANDIDATE_ELEMENTS = limit


def calibrate() -> None:
    """The weights of ``kernels/fast/fast_cost.py`` on this machine (least of repeated timings):
    products per matrix entry and per multiply-add (1 and 8 chains, ``A z`` and ``A' w``
    averaged), the same for CSR; a plain step's and a block step's work per point and chain
    and per step where no point pulls (the block integrator's floor), and a dense block
    step's (fits at N = 2,000 and 30,000); Pyro's overhead per gradient and its work per
    point (item response model, 4 chains)."""
    g = torch.Generator().manual_seed(0)
    n, p = 4000, 501
    a = torch.randn(n, p, generator=g, dtype=DT)
    zs = {c: torch.randn(c, p, generator=g, dtype=DT) for c in (1, 8)}
    ws = {c: torch.randn(c, n, generator=g, dtype=DT) for c in (1, 8)}
    one, eight = (
        0.5 * best_time(lambda c=c: zs[c] @ a.T) + 0.5 * best_time(lambda c=c: ws[c] @ a)
        for c in (1, 8)
    )
    madd = (eight - one) / 7 / (n * p)
    print(f"DENSE_MADD {madd:.3g}, DENSE_ENTRY {one / (n * p) - madd:.3g}")
    n_sp = 30_000
    student = torch.randint(0, 400, (n_sp,), generator=g)
    x = torch.zeros(n_sp, p, dtype=DT)
    x[torch.arange(n_sp), student] = 1.0
    x[torch.arange(n_sp), 400 + student % 100] = -1.0
    x[:, -1] = 1.0
    csr = LinearProducts.build(x, torch.zeros(n_sp, dtype=DT), None, True)
    zs = {c: torch.randn(p, c, generator=g, dtype=DT) for c in (1, 8)}
    ws = {c: torch.randn(n_sp, c, generator=g, dtype=DT) for c in (1, 8)}
    one, eight = (
        0.5 * best_time(lambda c=c: csr.design @ zs[c])
        + 0.5 * best_time(lambda c=c: csr.design_t @ ws[c])
        for c in (1, 8)
    )
    madd = (eight - one) / 7 / (3 * n_sp)
    print(f"SPARSE_MADD {madd:.3g}, SPARSE_ENTRY {one / (3 * n_sp) - madd:.3g}")
    chains, small, large = 8, 2000, 30_000
    for name, form, dense in (("PLAIN", Form.PRODUCTS, False), ("BLOCK", Form.ROWS, False),
                              ("DENSE_STEP", Form.ROWS, True)):  # fmt: skip
        low, high = (_floor(form, n, chains, dense) for n in (small, large))
        point = (high - low) / (large - small) / chains
        print(f"{name}_POINT {point:.3g}, {name}_CALL {low - point * chains * small:.3g}")
    generic = probe(irt, irt_data(400, 100, 30_012), 4)[2]
    theta = torch.randn(4, 501, dtype=DT)
    rest = generic.splitting(theta[0]).rest
    tiny = probe(irt, irt_data(5, 2, 10), 4)[2]
    call = best_time(lambda: tiny.splitting(theta[0, :8]).rest(theta[:, :8]))
    point = (best_time(lambda: rest(theta)) - call) / (4 * 30_012)
    print(f"GENERIC_CALL {call:.3g}, GENERIC_POINT {point:.3g} (IRT, gathers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first size of each problem")
    parser.add_argument("--problems", default="study,irt,credit,gym")
    parser.add_argument("--sizes", default="", help="e.g. 1,2: these sizes of each problem")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timings: the least of these")
    parser.add_argument("--gram-limit-gib", type=float, default=2.0)
    parser.add_argument("--calibrate", action="store_true", help="fast_cost.py's weights")
    parser.add_argument("--chains", type=int, default=0, help="instead of each problem's")
    options = parser.parse_args()
    torch.set_num_threads(1)
    if options.calibrate:
        calibrate()
        return
    for name, model, make, sizes, chains in SIZES:
        if name not in options.problems.split(","):
            continue
        if options.sizes:
            sizes = [sizes[int(i)] for i in options.sizes.split(",") if int(i) < len(sizes)]
        for size in sizes[:1] if options.quick else sizes:
            run_size(name, model, make(*size), options.chains or chains, options)


if __name__ == "__main__":
    main()
