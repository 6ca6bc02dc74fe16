"""Closed-form ELBO gradients: the same seed follows Pyro's SVI path to rounding, for every
pair they cover; any other pair runs on Pyro's engine, or is refused by name."""

from __future__ import annotations

import logging
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_spheres.data import load_spheres
from bayes_spheres.guides import GUIDES, GuideName
from bayes_spheres.inference import svi
from bayes_spheres.inference.elbo_gradients import Unsupported, closed_form_step
from bayes_spheres.models import Flat, Hierarchical, SharedMean

STEPS = 200
PAIRS = {
    "flat": (lambda: Flat(), "full_covariance"),
    "flat_no_bias": (lambda: Flat(bias=False), "full_covariance"),
    "shared_mean": (lambda: SharedMean(), "full_covariance"),
    "hier_learnt_prior": (
        lambda: Hierarchical(centered=False, learn_prior=True),
        "direction_scale",
    ),
    "hier_fixed_prior": (
        lambda: Hierarchical(centered=False, learn_prior=False, bias=False),
        "direction_scale",
    ),
}


@pytest.fixture(scope="module")
def tiny_spheres():
    return load_spheres(dim=5, n_train=60, n_val=100, seed=0)


def fit_on(engine: str, make_model, guide: str, data, batch_size: int = 20, **kwargs):
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    post = svi.fit(
        make_model(), data, members=30, guide=guide, num_steps=STEPS, batch_size=batch_size,
        engine=engine, **kwargs,
    )  # fmt: skip
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters()}
    return post, params


@pytest.mark.parametrize(
    ("pair", "batch_size"),
    [*((pair, 20) for pair in PAIRS), ("flat", 60), ("hier_learnt_prior", 100)],
    ids=[*PAIRS, "flat-full-batch", "hier-batch-over-n"],
)
def test_closed_form_steps_follow_pyros_svi_path_for_the_same_seed(tiny_spheres, pair, batch_size):
    """Every minibatch size: below N (a random subsample each step), N and above (all the
    data, no draw)."""
    make_model, guide = PAIRS[pair]
    kw = dict(batch_size=batch_size)
    pyro_post, pyro_params = fit_on("pyro", make_model, guide, tiny_spheres, jit=False, **kw)
    ours, our_params = fit_on("closed_form", make_model, guide, tiny_spheres, **kw)
    assert pyro_post.info["svi"]["engine"] == "pyro"
    assert ours.info["svi"]["engine"] == "closed_form"
    # every loss of the 200 steps, every parameter (the learnt prior's too) after them
    torch.testing.assert_close(
        torch.as_tensor(ours.elbo), torch.as_tensor(pyro_post.elbo), rtol=1e-10, atol=1e-12
    )
    assert set(our_params) == set(pyro_params)
    for name, value in pyro_params.items():
        torch.testing.assert_close(our_params[name], value, rtol=1e-9, atol=1e-11, msg=name)
        if "strict_lower" in name:
            assert (our_params[name].triu() == 0).all()
    # the fit moved, so the comparison is not between two starting points
    loc = next(v for k, v in our_params.items() if k.endswith(".loc"))
    assert loc.abs().max() > 1e-2
    # and the guide draws the same ensemble afterwards
    torch.testing.assert_close(ours.ensemble.w, pyro_post.ensemble.w, rtol=1e-9, atol=1e-11)


def test_auto_takes_the_closed_form_where_it_exists_and_pyro_elsewhere(tiny_spheres):
    post, _ = fit_on("auto", *PAIRS["flat"], tiny_spheres)
    assert post.info["svi"]["engine"] == "closed_form"
    centred = lambda: Hierarchical(centered=True)  # noqa: E731
    post, _ = fit_on("auto", centred, "full_covariance", tiny_spheres, jit=False)
    assert post.info["svi"]["engine"] == "pyro"
    post, _ = fit_on("auto", *PAIRS["flat"], tiny_spheres, pyro_mvn=True, jit=False)
    assert post.info["svi"]["engine"] == "pyro"


def test_closed_form_on_a_pair_without_one_is_refused_by_name(tiny_spheres):
    centred = lambda: Hierarchical(centered=True)  # noqa: E731
    with pytest.raises(ValueError, match=r"closed_form.*hier_centered.*use pyro or auto"):
        fit_on("closed_form", centred, "full_covariance", tiny_spheres)
    with pytest.raises(ValueError, match="pyro_mvn"):
        fit_on("closed_form", *PAIRS["flat"], tiny_spheres, pyro_mvn=True)
    with pytest.raises(ValueError, match="nope"):
        fit_on("nope", *PAIRS["flat"], tiny_spheres)


def test_a_guide_over_other_latents_is_unsupported(tiny_spheres):
    d = tiny_spheres
    model = Hierarchical(centered=False)
    q = GUIDES[GuideName.FULL_COVARIANCE](model)  # one Gaussian over (log s, v, b)
    q(d.phi_train, d.y_train)
    with pytest.raises(Unsupported, match="hier_noncentered"):
        closed_form_step(model, q, d.phi_train, d.y_train)


def test_a_diverging_closed_form_fit_raises_naming_the_learning_rate(tiny_spheres):
    pyro.set_rng_seed(0)
    with pytest.raises(svi.DivergedError, match=r"inference\.optim\.lr"):
        svi.fit(
            Flat(), tiny_spheres, members=5, optim=svi.SGDSettings(lr=1e3, momentum=0.99),
            loss_scale="sum", num_steps=300, batch_size=20, engine="closed_form",
        )  # fmt: skip


class GammaScale(Hierarchical):
    """A user's hierarchical model: ``s ~ Gamma(2, 0.2)`` instead of the log-normal, the
    rest inherited (one file, as the README's "add a model" asks)."""

    def weights(self, dim, like):
        s = pyro.sample("s", dist.Gamma(like.new_tensor(2.0), like.new_tensor(0.2)))
        return pyro.sample("w", dist.Normal(like.new_zeros(dim), s[..., None]).to_event(1))


class NarrowLogNormalScale(Hierarchical):
    """A log-normal scale whose parameters are written in ``weights`` and not in the
    attributes (``scale_median`` stays 10): ``s ~ LogNormal(log 3, 0.5)``."""

    def weights(self, dim, like):
        s = pyro.sample("s", dist.LogNormal(like.new_tensor(math.log(3.0)), 0.5))
        return pyro.sample("w", dist.Normal(like.new_zeros(dim), s[..., None]).to_event(1))


@pytest.mark.parametrize(
    ("make_model", "engine"),
    [(lambda: GammaScale(centered=False), "pyro"),
     (lambda: NarrowLogNormalScale(centered=False), "closed_form")],
    ids=["gamma-scale", "log-normal-scale-in-weights"],
)  # fmt: skip
def test_user_hierarchical_models_get_pyros_elbo_through_the_default_engine(
    tiny_spheres, make_model, engine, caplog
):
    """The default engine follows Pyro's ``Trace_ELBO`` for models the closed form was not
    written for: a Gamma scale runs on Pyro's engine (refused by the step, which reads
    ``p(s)`` off the trace), a log-normal scale with its own parameters on the closed form,
    reading them off the trace; either way the same losses as ``engine=pyro``."""
    reference, _ = fit_on("pyro", make_model, "direction_scale", tiny_spheres, jit=False)
    with caplog.at_level(logging.INFO, logger="bayes_spheres.inference.svi"):
        ours, _ = fit_on("auto", make_model, "direction_scale", tiny_spheres, jit=False)
    assert ours.info["svi"]["engine"] == engine
    if engine == "pyro":
        assert "log-normal scale" in caplog.text
    torch.testing.assert_close(
        torch.as_tensor(ours.elbo), torch.as_tensor(reference.elbo), rtol=1e-9, atol=1e-11
    )


def test_a_closed_form_step_that_disagrees_with_pyro_falls_back(tiny_spheres, caplog, monkeypatch):
    """The first-step check is what stands between a wrong closed form and a fit: a step
    whose prior is off (the hierarchical step told a scale median of 3 where the model
    samples 10) falls back to Pyro's engine with one warning naming the gap, and
    ``engine=closed_form`` refuses."""
    from bayes_spheres.inference import elbo_gradients

    monkeypatch.setattr(
        elbo_gradients, "_log_normal_prior",
        lambda model, phi, y: (phi.new_tensor(math.log(3.0)), phi.new_tensor(1.0)),
    )  # fmt: skip
    make_model, guide = PAIRS["hier_fixed_prior"]
    reference, _ = fit_on("pyro", make_model, guide, tiny_spheres, jit=False)
    with caplog.at_level(logging.WARNING, logger="bayes_spheres.inference.svi"):
        ours, _ = fit_on("auto", make_model, guide, tiny_spheres, jit=False)
    assert ours.info["svi"]["engine"] == "pyro"
    assert "differs from Pyro's Trace_ELBO" in caplog.text or "against Pyro's" in caplog.text
    torch.testing.assert_close(torch.as_tensor(ours.elbo), torch.as_tensor(reference.elbo))
    with pytest.raises(ValueError, match="closed_form: the first step"):
        fit_on("closed_form", make_model, guide, tiny_spheres)
