"""Time series from the Inference Gym 0.0.5: Brownian motion with its 10 middle observations
missing (``targets/brownian_motion.py``) and stochastic volatility on the last 100 daily S&P
500 returns (``targets/stochastic_volatility.py``, the ``_small`` variant; the Stan users'
guide's model, in the gym's centred form).

Each latent path is one vector site of :class:`AR1` below: the Brownian motion
(``x[0] ~ N(0, s)``, ``x[t] ~ N(x[t-1], s)``: the gym's chain exactly) and the log
volatility.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor

from bayes_spheres.benchmarks.datasets import brownian_motion_missing_middle, sp500_returns
from bayes_spheres.benchmarks.gym import references
from bayes_spheres.benchmarks.target import Target, identity, renamed


class AR1(dist.TorchDistribution):
    """An order-1 autoregression of ``num_steps`` values, the gym's ``autoregressive_series_fn``:
    ``x[0] ~ N(loc, initial_scale)``, ``x[t] ~ N(loc + persistence (x[t-1] - loc), scale)``,
    with ``initial_scale = scale / sqrt(1 - persistence^2)`` (stationary) unless given; at
    ``loc = 0``, ``persistence = 1``, ``initial_scale = scale`` it is the gym's Brownian
    motion (Pyro has no ``GaussianRandomWalk``). Parameters broadcast over leading batch
    dimensions; the event is the whole path ``[num_steps]``."""

    arg_constraints: ClassVar[dict] = {
        "loc": constraints.real,
        "persistence": constraints.real,
        "scale": constraints.positive,
        "initial_scale": constraints.positive,
    }
    support = constraints.real_vector

    def __init__(
        self,
        loc: Tensor,
        persistence: Tensor,
        scale: Tensor,
        num_steps: int,
        initial_scale: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if initial_scale is None:
            initial_scale = scale / torch.sqrt(1.0 - persistence**2)
        self.loc, self.persistence, self.scale, self.initial_scale = torch.broadcast_tensors(
            loc, persistence, scale, initial_scale
        )
        self.num_steps = num_steps
        super().__init__(self.loc.shape, torch.Size([num_steps]), validate_args)

    def expand(self, batch_shape, _instance=None) -> AR1:
        shape = torch.Size(batch_shape)
        params = (self.loc, self.persistence, self.scale, self.initial_scale)
        mean, rho, scale, initial = (p.expand(shape) for p in params)
        return AR1(mean, rho, scale, self.num_steps, initial)

    def log_prob(self, value: Tensor) -> Tensor:
        mean = self.loc.unsqueeze(-1)
        rho, scale = self.persistence.unsqueeze(-1), self.scale.unsqueeze(-1)
        first = dist.Normal(self.loc, self.initial_scale).log_prob(value[..., 0])
        rest = dist.Normal(mean + rho * (value[..., :-1] - mean), scale)
        return first + rest.log_prob(value[..., 1:]).sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)[:-1]
        params = (self.loc, self.persistence, self.scale, self.initial_scale)
        mean, rho, scale, initial = (p.expand(shape) for p in params)
        with torch.no_grad():
            x = [mean + initial * torch.randn_like(mean)]
            for _ in range(self.num_steps - 1):
                x.append(mean + rho * (x[-1] - mean) + scale * torch.randn_like(mean))
        return torch.stack(x, dim=-1)


def brownian_motion(observed: Tensor, mask: Tensor, innovation: float, noise: float) -> None:
    """``locs`` [30]: a Gaussian random walk from 0 with step sd ``innovation``;
    ``observed_locs[t] ~ N(locs[t], noise)`` where observed (``mask``)."""
    zero, scale = observed.new_zeros(()), observed.new_full((), innovation)
    walk = AR1(zero, zero + 1.0, scale, num_steps=observed.shape[-1], initial_scale=scale)
    locs = pyro.sample("locs", walk)
    pyro.sample(
        "observed_locs", dist.Normal(locs[..., mask], noise).to_event(1), obs=observed[mask]
    )


def brownian_motion_missing_middle_observations() -> Target:
    """BrownianMotionMissingMiddleObservations: 30-D, 20 observations."""
    observed, innovation, noise = brownian_motion_missing_middle()
    locs = torch.as_tensor(observed, dtype=torch.float64)
    return Target(
        name="brownian_motion",
        gym="BrownianMotionMissingMiddleObservations",
        model=functools.partial(brownian_motion, locs, ~torch.isnan(locs), innovation, noise),
        quantities=renamed("locs"),
        reference=references("brownian_motion_missing_middle_observations", "identity"),
    )


def stochastic_volatility(returns: Tensor) -> None:
    """``persistence_of_volatility ~ 2 Beta(20, 1.5) - 1``, ``mean_log_volatility ~
    Cauchy(0, 5)``, ``white_noise_shock_scale ~ HalfCauchy(2)``, ``log_volatility ~
    AR1(mean_log_volatility, persistence, shock scale)``, ``returns[t] ~ N(0,
    exp(log_volatility[t] / 2))`` (the gym's code: the docstring's version, with the mean
    added in the likelihood, is not what its ground truth samples)."""
    zero = returns.new_zeros(())
    persistence = pyro.sample(
        "persistence_of_volatility",
        dist.AffineBeta(zero + 20.0, zero + 1.5, -1.0, 2.0),  # support (-1, 1), not Real
    )
    mean = pyro.sample("mean_log_volatility", dist.Cauchy(zero, 5.0))
    shock = pyro.sample("white_noise_shock_scale", dist.HalfCauchy(zero + 2.0))
    log_vol = pyro.sample(
        "log_volatility", AR1(mean, persistence, shock, num_steps=returns.shape[-1])
    )
    pyro.sample("returns", dist.Normal(0.0, torch.exp(log_vol / 2.0)).to_event(1), obs=returns)


SV_QUANTITIES = (
    "log_volatility",
    "mean_log_volatility",
    "persistence_of_volatility",
    "white_noise_shock_scale",
)


def stochastic_volatility_sp500_small() -> Target:
    """StochasticVolatilitySP500Small: 103-D (100 log volatilities)."""
    returns = torch.as_tensor(sp500_returns(100), dtype=torch.float64)
    return Target(
        name="stochastic_volatility",
        gym="StochasticVolatilitySP500Small",
        model=functools.partial(stochastic_volatility, returns),
        quantities=identity(*SV_QUANTITIES),
        reference=references("stochastic_volatility_sp500_small", *SV_QUANTITIES),
        notes=(
            "persistence in (-1, 1) through Pyro's sigmoid transform (the gym's too), the shock "
            "scale through exp (the gym: softplus; the same posterior in other coordinates)"
        ),
    )
