"""The fast path's forms (``kernels/fast/fast_cost.py``): each gives the generic integrator's chain
for the same random stream, the rule picks by counts (deterministically) and never holds an
``A A'`` beyond its limit, and declines where the model's own arithmetic is cheaper."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor

from bayes_spheres.kernels.fast import fast_cost, gram
from bayes_spheres.kernels.fast import linear_trajectory as integrator
from bayes_spheres.kernels.fast.fast_cost import Form, Sizes, choose_form
from bayes_spheres.kernels.fast.gram import LinearLogistic, LowRankGram, StoredGram
from bayes_spheres.kernels.fast.linear_products import LinearProducts
from bayes_spheres.kernels.fast.logistic import LogisticTarget, NotLinearLogistic
from bayes_spheres.kernels.fast.logistic_model import linear_logistic_target
from bayes_spheres.kernels.slice_trajectory import MAX_ENERGY, slice_trajectory

DT = torch.float64


def _separable(prior: str = "diagonal", sparse: bool = False) -> tuple[LogisticTarget, Tensor]:
    """200 separable points in 4-D with large activations (most points drop out), a
    diagonal or a correlated prior; ``sparse``: each row of the design has 2 non-zeros.
    Returns the target and a true parameter."""
    g = torch.Generator().manual_seed(1)
    x = 30.0 * torch.randn(200, 4, generator=g, dtype=DT)
    if sparse:
        keep = torch.rand(200, 4, generator=g).argsort(1) < 2
        x = x * keep
    truth = torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=DT)
    y = (x @ truth > 0).to(DT)
    if prior == "diagonal":
        precision, shift = torch.diag(torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=DT)), 0.0
    else:
        a = torch.randn(4, 4, generator=g, dtype=DT)
        precision, shift = a @ a.T / 4 + torch.eye(4, dtype=DT), 0.1
    shifts = shift * torch.ones(4, dtype=DT)
    return LogisticTarget(x, y, precision, shifts, torch.zeros(200, dtype=DT)), truth


def _same_chain(target: LogisticTarget, truth: Tensor, form: str, beta: float, tol: float):
    """``form``'s trajectory against the generic leapfrog on the ``gram`` form's rest, from
    the same state and random stream."""
    generic = target.with_form(Form.GRAM).splitting(beta=beta)
    split = target.with_form(form).splitting(beta=beta)
    g = torch.Generator().manual_seed(2)
    z = generic.to_z(truth + 0.05 * torch.randn(2, 4, generator=g, dtype=DT))
    torch.testing.assert_close(split.to_z(generic.to_theta(z)), z)
    lp, grad = generic.rest(z)
    lp_form, grad_form = split.rest(z)
    torch.testing.assert_close(lp_form, lp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_form, grad, rtol=1e-12, atol=1e-12)
    eps = 0.01 / math.sqrt(beta)
    torch.manual_seed(3)
    a = slice_trajectory(z, lp, grad, generic.rest, eps, 40, True, MAX_ENERGY)
    torch.manual_seed(3)
    b = split.trajectory(z, lp, grad, eps, 40, MAX_ENERGY)
    for u, w in zip((a.z, a.logp_rest, a.grad, a.accept, a.in_slice, a.diverging),
                    (b.z, b.logp_rest, b.grad, b.accept, b.in_slice, b.diverging),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(u, w, rtol=tol, atol=tol)
    assert not torch.equal(a.z, z) and float(a.in_slice.min()) > 0.2


@pytest.mark.parametrize("beta", [1.0, 0.3], ids=["posterior", "tempered"])
@pytest.mark.parametrize(
    ("form", "prior", "sparse"),
    [(Form.PRODUCTS, "diagonal", False), (Form.PRODUCTS, "correlated", False),
     (Form.SPARSE, "diagonal", True), (Form.SPARSE, "correlated", True),
     (Form.SPARSE, "diagonal", False)],
)  # fmt: skip
def test_plain_forms_are_the_generic_leapfrog(form, prior, sparse, beta):
    """``products`` and ``sparse`` (``L`` folded into the design where diagonal, kept apart
    where not) step as the generic integrator does: equal to rounding."""
    target, truth = _separable(prior, sparse)
    _same_chain(target, truth, form, beta, 1e-9)
    products = target.with_form(form).splitting(beta=beta).trajectory.keywords["products"]
    assert products.sparse == (form == Form.SPARSE)
    assert (products.chol is None) == (prior == "diagonal" or form == Form.PRODUCTS)


@pytest.mark.parametrize("beta", [1.0, 0.3], ids=["posterior", "tempered"])
@pytest.mark.parametrize(
    ("kick_below", "candidates_max"),
    [(36.0, 1 << 17), (15.0, 1 << 17), (36.0, 0), (15.0, 0)],
    ids=["all-forces", "default", "dense-steps-all-forces", "dense-steps"],
)
def test_rows_form_is_the_generic_leapfrog(monkeypatch, kick_below, candidates_max, beta):
    """The block integrator with ``A A'`` computed row by row (``rows``): the same chain as
    the generic one, as ``gram`` (``tests/kernels/test_hamiltonian.py``): to rounding with every
    force, to 1e-5 with kicks from ``a < 15`` only (gradients of ~10 differ by ~5e-5); also
    with every step dense (products with ``A``, never gathered rows). And ``gram``'s chain
    to rounding whatever the forces."""
    monkeypatch.setattr(integrator, "KICK_BELOW", kick_below)
    monkeypatch.setattr(integrator, "CANDIDATE_ELEMENTS", candidates_max)
    target, truth = _separable()
    _same_chain(target, truth, Form.ROWS, beta, 1e-9 if kick_below == 36.0 else 1e-5)
    rows, held = (target.with_form(form).splitting(beta=beta) for form in (Form.ROWS, Form.GRAM))
    assert isinstance(rows.trajectory.keywords["linear"].gram, LowRankGram)
    z = held.to_z(truth.expand(2, 4))
    lp, grad = held.rest(z)
    torch.manual_seed(3)
    a = held.trajectory(z, lp, grad, 0.01, 40, MAX_ENERGY)
    torch.manual_seed(3)
    b = rows.trajectory(z, lp, grad, 0.01, 40, MAX_ENERGY)
    torch.testing.assert_close(b.z, a.z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)


def test_low_rank_gram_is_the_stored_one():
    a_z = torch.randn(30, 5, dtype=DT)
    stored, rows = StoredGram(a_z), LowRankGram(a_z)
    index = torch.tensor([[3, 7, 7], [0, 29, 11]])
    torch.testing.assert_close(rows.rows(index), stored.rows(index))
    torch.testing.assert_close(rows.block(index), stored.block(index))
    torch.testing.assert_close(stored.block(index)[1, 2, 0], a_z[11] @ a_z[0])


def test_no_gram_beyond_its_limit(monkeypatch):
    """Built without a form, the block integrator holds ``A A'`` only up to
    ``MAX_GRAM_BYTES`` (here 8 numbers' worth: N = 3 fits, N = 4 does not)."""
    monkeypatch.setattr(gram, "MAX_GRAM_BYTES", 9 * 8)
    assert isinstance(LinearLogistic(torch.ones(3, 2), torch.zeros(3)).gram, StoredGram)
    assert isinstance(LinearLogistic(torch.ones(4, 2), torch.zeros(4)).gram, LowRankGram)


@pytest.mark.parametrize("n", [100, 1_000, 5_000, 10_000, 30_012, 100_000])
@pytest.mark.parametrize("p", [5, 101, 501, 2_001])
@pytest.mark.parametrize("density", [1.0, 0.05, 3 / 501])
@pytest.mark.parametrize("limit", [2**20, 256 * 2**20])
def test_rule_never_holds_a_gram_beyond_the_limit(n, p, density, limit):
    sizes = Sizes(n, p, int(density * n * p), True, 8, 4)
    form, reason = choose_form(sizes, None, limit)
    assert form is not None
    assert form != Form.GRAM or n * n * 8 <= limit
    assert f"N = {n}, P = {p}" in reason
    assert (form, reason) == choose_form(sizes, None, limit)  # counts, not timings


def test_rule_at_the_measured_sizes():
    """As ``bench/fast_path.py`` measured: the study's posterior at the paper's scale keeps
    ``A A'`` (0.54 ms a step for 8 chains against 2.6 ms for products; 0.13 against 0.69 for
    one chain); the item response model (3 non-zeros a row, N = 30,012) takes CSR products
    (2.8 ms against 45 for dense ones and 89 for rows); a dense 25-D regression (German
    credit) and the study at N = 16,000, P = 101 plain products (0.13 ms against 0.69 for
    ``gram``; 8.8 ms against 17 and 20)."""
    for chains in (1, 8):
        study = Sizes(1000, 501, 1000 * 501, True, 8, chains)
        assert choose_form(study, 2 * 1000 * 500)[0] == Form.GRAM
    irt = Sizes(30_012, 501, 3 * 30_012, True, 8, 4)
    assert choose_form(irt, 0.0)[0] == Form.SPARSE
    assert choose_form(Sizes(1000, 25, 1000 * 25, True, 8, 4), 2 * 1000 * 25)[0] == Form.PRODUCTS
    large = Sizes(16_000, 101, 16_000 * 101, True, 8, 8)
    assert choose_form(large, 2 * 16_000 * 101)[0] == Form.PRODUCTS


def _low_rank_model(u: Tensor, v: Tensor, y: Tensor) -> None:
    """Logits ``u (v' theta)``: rank 2, cheap for the model, a dense design for the probe."""
    theta = pyro.sample("theta", dist.Normal(torch.zeros(len(v), dtype=DT), 1.0).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=u @ (v.T @ theta)), obs=y)


def _irt_model(student: Tensor, question: Tensor, y: Tensor) -> None:
    mean = pyro.sample("mean", dist.Normal(torch.tensor(0.75, dtype=DT), 1.0))
    with pyro.plate("students", 30):
        ability = pyro.sample("ability", dist.Normal(torch.tensor(0.0, dtype=DT), 1.0))
    with pyro.plate("questions", 20):
        difficulty = pyro.sample("difficulty", dist.Normal(torch.tensor(0.0, dtype=DT), 2.0))
    with pyro.plate("data", len(y)):
        logits = ability[student] - difficulty[question] + mean
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def _probe(model, *args, **options) -> LogisticTarget:
    with torch.random.fork_rng():
        init, potential_fn, _, prototype = initialize_model(model, model_args=args)
    shapes = {k: v.shape for k, v in init.items()}
    like = next(iter(init.values()))
    return linear_logistic_target(model, args, {}, shapes, potential_fn, like, prototype, **options)


def test_probe_exposes_the_form_and_its_reason():
    """An item response model: a sparse design (3 non-zeros a row of 51), the form and the
    numbers behind it readable after probing, the same every time; ``form=`` overrides."""
    g = torch.Generator().manual_seed(0)
    student, question = torch.randint(0, 30, (400,), generator=g), torch.arange(400) % 20
    y = (torch.rand(400, generator=g) < 0.6).to(DT)
    target = _probe(_irt_model, student, question, y, chains=4)
    assert target.form == Form.SPARSE
    assert "N = 400, P = 51" in target.form_reason and "generic" in target.form_reason
    assert _probe(_irt_model, student, question, y, chains=4).form_reason == target.form_reason
    forced = _probe(_irt_model, student, question, y, form="gram")
    assert forced.form == Form.GRAM and isinstance(
        forced.splitting().trajectory.keywords["linear"].gram, StoredGram
    )
    # the sparse form's log density is the target's, up to its constant
    split = target.splitting()
    theta = torch.randn(3, 51, generator=g, dtype=DT)
    lp, _ = split.rest(split.to_z(theta))
    total = lp - 0.5 * (split.to_z(theta) ** 2).sum(-1) - target.log_density(theta)
    torch.testing.assert_close(total, total[:1].expand(3))


def test_declined_where_the_model_is_cheaper():
    """Logits of rank 2 through a 6,000 x 1,500 design: every form costs O(N P) per step at
    least now and then, where the model costs O(2 (N + P)); the generic path is taken."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(6000, 2, generator=g, dtype=DT), torch.randn(1500, 2, generator=g, dtype=DT)
    y = (torch.rand(6000, generator=g) < 0.5).to(DT)
    with pytest.raises(NotLinearLogistic, match="would cost more than the generic one"):
        _probe(_low_rank_model, u, v, y, chains=4)
    generic = fast_cost.generic_cost(Sizes(6000, 1500, 6000 * 1500, True, 8, 4), 1e4)
    assert choose_form(Sizes(6000, 1500, 6000 * 1500, True, 8, 4), 1e4)[0] is None
    # the same design where the model pays for it: taken
    assert choose_form(Sizes(6000, 1500, 6000 * 1500, True, 8, 4), 2 * 6000 * 1500)[0]
    assert generic < fast_cost.generic_cost(Sizes(6000, 1500, 1, True, 8, 4), 2 * 6000 * 1500)


def test_product_counter_counts_multiply_adds():
    """Matrix products, ``einsum`` and ``addmm`` counted; elementwise work and gathers not."""
    a, w = torch.randn(7, 5, dtype=DT), torch.randn(5, dtype=DT)
    with fast_cost.ProductCounter() as counter:
        _ = a @ w, torch.einsum("nd,d->n", a, w)
        _ = torch.addmm(torch.zeros(7, 3, dtype=DT), a, torch.ones(5, 3, dtype=DT))
        _ = torch.einsum("...d,cd->...c", torch.ones(4, 7, 5), torch.ones(2, 5))
        _ = (a * 2).sum(), a[torch.tensor([0, 3])]
    assert counter.madds == 35 + 35 + 105 + 4 * 7 * 2 * 5


def test_products_tempered_shares_the_design():
    target, _ = _separable(sparse=True)
    products = target.with_form(Form.SPARSE).splitting().trajectory.keywords["products"]
    assert isinstance(products, LinearProducts)
    tempered = products.tempered(0.3)
    assert tempered.design is products.design and tempered.power == 0.3
