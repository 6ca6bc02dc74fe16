"""Published benchmark posteriors with ground truth nobody here wrote: Pyro versions of
Inference Gym targets (Inference Gym 0.0.5, the TensorFlow Probability authors; Apache 2.0),
each written from the gym's own model definition, with the gym's reference posterior means,
standard deviations and the references' standard errors (long Stan runs).

``load(name)`` builds one :class:`~bayes_spheres.benchmarks.target.Target` (reading its
data); ``TARGETS`` lists them all::

    from pyro.infer import MCMC
    from bayes_spheres.benchmarks import load
    from bayes_spheres.kernels import Slice

    target = load("eight_schools_noncentered")
    mcmc = MCMC(Slice(target.model), num_samples=1000, warmup_steps=500, num_chains=4)
    mcmc.run()
    quantities = target.quantities(
        {k: v.numpy() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    )  # compare with target.reference[q].mean, .sd

See docs/published-targets.md for where each model, data set and ground truth comes from and
how the log densities were checked.
"""

from __future__ import annotations

from collections.abc import Callable

from bayes_spheres.benchmarks.hierarchical import (
    eight_schools_centered,
    eight_schools_noncentered,
    radon_contextual_effects_minnesota,
)
from bayes_spheres.benchmarks.latent_fields import synthetic_irt, synthetic_lgcp
from bayes_spheres.benchmarks.regression import (
    german_credit_logistic,
    german_credit_probit,
    german_credit_sparse_logistic,
)
from bayes_spheres.benchmarks.target import Reference, Target
from bayes_spheres.benchmarks.time_series import (
    brownian_motion_missing_middle_observations,
    stochastic_volatility_sp500_small,
)

# name -> factory, cheapest first (roughly: dimension times data size)
TARGETS: dict[str, Callable[[], Target]] = {
    "eight_schools_noncentered": eight_schools_noncentered,
    "eight_schools": eight_schools_centered,
    "brownian_motion": brownian_motion_missing_middle_observations,
    "german_credit_logistic": german_credit_logistic,
    "german_credit_probit": german_credit_probit,
    "german_credit_sparse_logistic": german_credit_sparse_logistic,
    "radon_minnesota": radon_contextual_effects_minnesota,
    "stochastic_volatility": stochastic_volatility_sp500_small,
    "log_gaussian_cox_process": synthetic_lgcp,
    "item_response_theory": synthetic_irt,
}


def load(name: str) -> Target:
    """The target ``name`` (one of :data:`TARGETS`), its data read now."""
    try:
        factory = TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown target {name!r}: one of {', '.join(TARGETS)}") from None
    return factory()


__all__ = ["TARGETS", "Reference", "Target", "load"]
