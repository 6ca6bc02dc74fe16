"""Regressions on the German Credit (numeric) data, written from the Inference Gym 0.0.5's
``targets/logistic_regression.py``, ``sparse_logistic_regression.py`` and
``probit_regression.py``: 24 standardised features and a constant 1 appended last (the gym's
``_add_bias``), N = 1,000 labels (1 = bad credit).

The models broadcast over leading batch dimensions of their latents (``einsum`` as the gym
writes it), so that a kernel may evaluate many points at once.
"""

from __future__ import annotations

import functools

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from bayes_spheres.benchmarks.datasets import german_credit_numeric
from bayes_spheres.benchmarks.gym import references
from bayes_spheres.benchmarks.target import Target, identity, renamed


def with_bias(features: np.ndarray) -> Tensor:
    """``concat([features, 1])`` [N, D + 1] in float64 (on the CPU: the targets are CPU
    models, as the gym's data are numpy arrays)."""
    x = torch.as_tensor(features, dtype=torch.float64)
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=-1)


def linear(x: Tensor, weights: Tensor) -> Tensor:
    """``einsum('nd,...d->...n')``: one row of predictors per batch point of ``weights``."""
    return torch.einsum("nd,...d->...n", x, weights)


def logistic_regression(x: Tensor, labels: Tensor) -> None:
    """``weights[i] ~ N(0, 1)``; ``labels[j] ~ Bernoulli(logit = x[j] @ weights)``."""
    weights = pyro.sample(
        "weights", dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[-1]]).to_event(1)
    )
    pyro.sample("labels", dist.Bernoulli(logits=linear(x, weights)).to_event(1), obs=labels)


def sparse_logistic_regression(x: Tensor, labels: Tensor) -> None:
    """The gym's sparse (horseshoe-like) prior: ``global_scale ~ Gamma(0.5, 0.5)``, per
    weight ``local_scales[i] ~ Gamma(0.5, 0.5)`` and ``unscaled_weights[i] ~ N(0, 1)``,
    ``weights = unscaled_weights * local_scales * global_scale`` (TFP's ``Gamma`` takes
    concentration and rate, as Pyro's does)."""
    half = x.new_full((), 0.5)
    d = x.shape[-1]
    global_scale = pyro.sample("global_scale", dist.Gamma(half, half))
    local_scales = pyro.sample("local_scales", dist.Gamma(half, half).expand([d]).to_event(1))
    unscaled = pyro.sample(
        "unscaled_weights", dist.Normal(x.new_zeros(()), 1.0).expand([d]).to_event(1)
    )
    weights = unscaled * local_scales * global_scale.unsqueeze(-1)
    pyro.sample("labels", dist.Bernoulli(logits=linear(x, weights)).to_event(1), obs=labels)


def probit_regression(x: Tensor, labels: Tensor) -> None:
    """``weights[i] ~ N(0, 1)``; ``labels[j] ~ Bernoulli(Phi(x[j] @ weights))``, written as
    logits ``log Phi(z) - log Phi(-z)`` so that both tails keep float64 precision (TFP's
    ``ProbitBernoulli`` works with ``log_ndtr`` too)."""
    weights = pyro.sample(
        "weights", dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[-1]]).to_event(1)
    )
    z = linear(x, weights)
    logits = torch.special.log_ndtr(z) - torch.special.log_ndtr(-z)
    pyro.sample("labels", dist.Bernoulli(logits=logits).to_event(1), obs=labels)


def _german_credit() -> tuple[Tensor, Tensor]:
    features, labels = german_credit_numeric()
    return with_bias(features), torch.as_tensor(labels, dtype=torch.float64)


def german_credit_logistic() -> Target:
    """GermanCreditNumericLogisticRegression: 25-D."""
    return Target(
        name="german_credit_logistic",
        gym="GermanCreditNumericLogisticRegression",
        model=functools.partial(logistic_regression, *_german_credit()),
        quantities=renamed("weights"),
        reference=references("german_credit_numeric_logistic_regression", "identity"),
    )


def german_credit_sparse_logistic() -> Target:
    """GermanCreditNumericSparseLogisticRegression: 51-D, 25 local scales."""
    names = ("global_scale", "local_scales", "unscaled_weights")
    return Target(
        name="german_credit_sparse_logistic",
        gym="GermanCreditNumericSparseLogisticRegression",
        model=functools.partial(sparse_logistic_regression, *_german_credit()),
        quantities=identity(*names),
        reference=references("german_credit_numeric_sparse_logistic_regression", *names),
        notes="scales positive through Pyro's exp transform (the gym's default bijector)",
    )


def german_credit_probit() -> Target:
    """GermanCreditNumericProbitRegression: 25-D."""
    return Target(
        name="german_credit_probit",
        gym="GermanCreditNumericProbitRegression",
        model=functools.partial(probit_regression, *_german_credit()),
        quantities=renamed("weights"),
        reference=references("german_credit_numeric_probit_regression", "identity"),
    )
