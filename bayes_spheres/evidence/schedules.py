"""Where the temperatures ``0 = beta_0 < ... < beta_K = 1`` of annealed importance sampling
lie: a power schedule, or equal steps of thermodynamic length measured by a pilot run."""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor


def temperature_schedule(temperatures: int, power: float = 4.0) -> Tensor:
    """``beta_k = (k / K)^power``, k = 0..K: dense near the prior, where the likelihood's
    power changes the target most (``power = 1``: evenly spaced)."""
    if not (isinstance(temperatures, int) and temperatures >= 1):
        raise ValueError(f"temperatures={temperatures!r}: must be an integer >= 1")
    if not (power > 0 and math.isfinite(power)):
        raise ValueError(f"power={power!r}: must be a positive finite number")
    # on the CPU: the schedule is read as Python floats
    return torch.linspace(0.0, 1.0, temperatures + 1, dtype=torch.float64) ** power


class Schedule(StrEnum):
    """``power``: :func:`temperature_schedule`; ``adaptive``: :func:`thermodynamic_schedule`
    from a pilot run along the power schedule."""

    POWER = "power"
    ADAPTIVE = "adaptive"


def thermodynamic_schedule(betas: Tensor, spread: Tensor, temperatures: int) -> Tensor:
    """``temperatures`` steps from 0 to 1 at equal increments of the thermodynamic length
    ``integral sd_beta(log p(y | theta)) dbeta`` (Gelman & Meng 1998; the spread ``sd`` [K]
    measured at ``betas[1:]`` by a pilot run, linear in between). With well-mixed moves the
    variance of a particle's log weight is about ``length^2 / temperatures``, the least any
    schedule of that many steps gives. A floor of 1e-3 of the largest spread keeps some
    steps in every stretch of the pilot's path."""
    if not (isinstance(temperatures, int) and temperatures >= 1):
        raise ValueError(f"temperatures={temperatures!r}: must be an integer >= 1")
    spread = spread.double().cpu().nan_to_num(0.0)
    spread = torch.cat([spread[:1], spread]).clamp_min(1e-3 * float(spread.max()) + 1e-12)
    betas = betas.double().cpu()
    length = torch.cat([betas.new_zeros(1), torch.cumsum(
        0.5 * (spread[1:] + spread[:-1]) * torch.diff(betas), 0
    )])  # fmt: skip
    # on the CPU: the schedule is read as Python floats
    at = torch.linspace(0.0, float(length[-1]), temperatures + 1, dtype=torch.float64)
    schedule = torch.from_numpy(np.interp(at.numpy(), length.numpy(), betas.numpy()))
    schedule[0], schedule[-1] = 0.0, 1.0
    return schedule
