"""Models with one latent value per unit of the data, from the Inference Gym 0.0.5: the
one-parameter logistic item response theory model on its synthetic data (400 students, 100
questions, 30,012 answers; ``targets/item_response_theory.py``) and the log-Gaussian Cox
process on its synthetic 10 x 10 grid of counts (``targets/log_gaussian_cox_process.py``;
Diggle et al. 2013).
"""

from __future__ import annotations

import functools
import math

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from bayes_spheres.benchmarks.datasets import (
    synthetic_item_response_theory,
    synthetic_log_gaussian_cox_process,
)
from bayes_spheres.benchmarks.gym import references
from bayes_spheres.benchmarks.target import Target, identity

JITTER = 1e-6  # the gym's GaussianProcess(jitter=1e-6)
KERNEL_OFFSET = 1e-3  # the gym adds .001 to the kernel's amplitude and length scale


def item_response_theory(
    students: Tensor, questions: Tensor, correct: Tensor, num_students: int, num_questions: int
) -> None:
    """``mean_student_ability ~ N(0.75, 1)``, ``centered_student_ability[i] ~ N(0, 1)``,
    ``question_difficulty[j] ~ N(0, 1)``; each answer ``correct ~ Bernoulli(logit =
    mean_student_ability + centered_student_ability[i] - question_difficulty[j])``."""
    zero = correct.new_zeros(())
    mean = pyro.sample("mean_student_ability", dist.Normal(zero + 0.75, 1.0))
    ability = pyro.sample(
        "centered_student_ability", dist.Normal(zero, 1.0).expand([num_students]).to_event(1)
    )
    difficulty = pyro.sample(
        "question_difficulty", dist.Normal(zero, 1.0).expand([num_questions]).to_event(1)
    )
    logits = mean.unsqueeze(-1) + ability[..., students] - difficulty[..., questions]
    pyro.sample("correct", dist.Bernoulli(logits=logits).to_event(1), obs=correct)


IRT_QUANTITIES = ("centered_student_ability", "mean_student_ability", "question_difficulty")


def synthetic_irt() -> Target:
    """SyntheticItemResponseTheory: 501-D, N = 30,012."""
    students, questions, correct = synthetic_item_response_theory()
    return Target(
        name="item_response_theory",
        gym="SyntheticItemResponseTheory",
        model=functools.partial(
            item_response_theory,
            torch.as_tensor(students, dtype=torch.long),
            torch.as_tensor(questions, dtype=torch.long),
            torch.as_tensor(correct, dtype=torch.float64),
            int(students.max()) + 1,
            int(questions.max()) + 1,
        ),
        quantities=identity(*IRT_QUANTITIES),
        reference=references("synthetic_item_response_theory", *IRT_QUANTITIES),
    )


def matern32(distances: Tensor, amplitude: Tensor, length_scale: Tensor) -> Tensor:
    """TFP's ``MaternThreeHalves``: ``a^2 (1 + sqrt(3) r / l) exp(-sqrt(3) r / l)``, batched
    over the leading dimensions of ``amplitude`` and ``length_scale``."""
    r = math.sqrt(3.0) * distances / length_scale[..., None, None]
    return amplitude[..., None, None] ** 2 * (1.0 + r) * torch.exp(-r)


def log_gaussian_cox_process(distances: Tensor, log_extents: Tensor, counts: Tensor) -> None:
    """``amplitude ~ LogNormal(-1, 0.5)``, ``length_scale ~ LogNormal(-1, 1)``,
    ``log_intensity ~ N(m, K + 1e-6 I)`` with ``K`` the Matern-3/2 kernel of amplitude and
    length scale each plus 0.001 and ``m`` the mean of ``log(counts) - log(extents)``;
    ``counts[i] ~ Poisson(extents[i] exp(log_intensity[i]))``."""
    zero = log_extents.new_zeros(())
    amplitude = pyro.sample("amplitude", dist.LogNormal(zero - 1.0, 0.5))
    length_scale = pyro.sample("length_scale", dist.LogNormal(zero - 1.0, 1.0))
    n = counts.shape[-1]
    cov = matern32(distances, amplitude + KERNEL_OFFSET, length_scale + KERNEL_OFFSET)
    cov = cov + JITTER * torch.eye(n, dtype=cov.dtype, device=cov.device)
    mean = (torch.log(counts) - log_extents).mean()
    log_intensity = pyro.sample(
        "log_intensity", dist.MultivariateNormal(mean.expand(cov.shape[:-1]), cov)
    )
    rate = torch.exp(log_extents + log_intensity)
    pyro.sample("counts", dist.Poisson(rate).to_event(1), obs=counts)


LGCP_QUANTITIES = ("amplitude", "length_scale", "log_intensity")


def synthetic_lgcp() -> Target:
    """SyntheticLogGaussianCoxProcess: 102-D (100 log intensities)."""
    locations, extents, counts = synthetic_log_gaussian_cox_process()
    x = torch.as_tensor(locations, dtype=torch.float64)
    return Target(
        name="log_gaussian_cox_process",
        gym="SyntheticLogGaussianCoxProcess",
        model=functools.partial(
            log_gaussian_cox_process,
            torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist"),
            torch.log(torch.as_tensor(extents, dtype=torch.float64)),
            torch.as_tensor(counts, dtype=torch.float64),
        ),
        quantities=identity(*LGCP_QUANTITIES),
        reference=references("synthetic_log_gaussian_cox_process", *LGCP_QUANTITIES),
        notes="amplitude and length scale positive through Pyro's exp transform (the gym's)",
    )
