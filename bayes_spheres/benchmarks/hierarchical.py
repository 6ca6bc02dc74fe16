"""Hierarchical models from the Inference Gym 0.0.5: eight schools (``targets/eight_schools.py``;
Rubin 1981, Gelman et al. 2013) in the gym's centred form and, through Pyro's
``LocScaleReparam``, non-centred (one model, two parameterisations, as NumPyro's
``examples/funnel.py`` does it); the radon model with contextual effects on the Minnesota
houses (``targets/radon_contextual_effects.py``; Gelman & Hill 2007, the Stan case study's
"correlations among levels" model).
"""

from __future__ import annotations

import functools

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.reparam import LocScaleReparam
from torch import Tensor

from bayes_spheres.benchmarks.datasets import Radon, radon_minnesota
from bayes_spheres.benchmarks.gym import references
from bayes_spheres.benchmarks.target import Samples, Target, identity

TREATMENT_EFFECTS = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
TREATMENT_STDDEVS = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)
EIGHT_SCHOOLS_QUANTITIES = ("avg_effect", "log_stddev", "school_effects")


def eight_schools(effects: Tensor, stddevs: Tensor) -> None:
    """``avg_effect ~ N(0, 10)``, ``log_stddev ~ N(5, 1)``, ``school_effects[i] ~
    N(avg_effect, exp(log_stddev))``, ``treatment_effects[i] ~ N(school_effects[i],
    treatment_stddevs[i])`` (the gym's prior on ``log_stddev``, not Pyro example's
    half-Cauchy)."""
    zero = effects.new_zeros(())
    avg_effect = pyro.sample("avg_effect", dist.Normal(zero, 10.0))
    log_stddev = pyro.sample("log_stddev", dist.Normal(zero + 5.0, 1.0))
    shape = (*avg_effect.shape, effects.shape[-1])
    school_effects = pyro.sample(
        "school_effects",
        dist.Normal(
            avg_effect.unsqueeze(-1).expand(shape), log_stddev.exp().unsqueeze(-1).expand(shape)
        ).to_event(1),
    )
    pyro.sample("treatment_effects", dist.Normal(school_effects, stddevs).to_event(1), obs=effects)


def _eight_schools_data() -> tuple[Tensor, Tensor]:
    return (
        torch.as_tensor(TREATMENT_EFFECTS, dtype=torch.float64),
        torch.as_tensor(TREATMENT_STDDEVS, dtype=torch.float64),
    )


def eight_schools_centered() -> Target:
    """EightSchools as the gym writes it (centred): 10-D."""
    return Target(
        name="eight_schools",
        gym="EightSchools",
        model=functools.partial(eight_schools, *_eight_schools_data()),
        quantities=identity(*EIGHT_SCHOOLS_QUANTITIES),
        reference=references("eight_schools", *EIGHT_SCHOOLS_QUANTITIES),
    )


def school_effects(samples: Samples) -> dict[str, np.ndarray]:
    """The gym's quantities from the non-centred draws: ``school_effects = avg_effect +
    exp(log_stddev) * school_effects_decentered``, LocScaleReparam's map at ``centered=0``."""
    avg, log_sd = np.asarray(samples["avg_effect"]), np.asarray(samples["log_stddev"])
    z = np.asarray(samples["school_effects_decentered"])
    return {
        "avg_effect": avg,
        "log_stddev": log_sd,
        "school_effects": avg[..., None] + np.exp(log_sd)[..., None] * z,
    }


def eight_schools_noncentered() -> Target:
    """The same posterior in non-centred coordinates (``school_effects_decentered``): 10-D."""
    model = poutine.reparam(
        functools.partial(eight_schools, *_eight_schools_data()),
        config={"school_effects": LocScaleReparam(centered=0.0)},
    )
    return Target(
        name="eight_schools_noncentered",
        gym="EightSchools",
        model=model,
        quantities=school_effects,
        reference=references("eight_schools", *EIGHT_SCHOOLS_QUANTITIES),
        notes="LocScaleReparam(centered=0) on school_effects; same ground truth",
    )


def radon_contextual_effects(data: dict[str, Tensor], num_counties: int) -> None:
    """``county_effect_mean ~ N(0, 1)``, ``county_effect_scale ~ U(0, 100)``,
    ``county_effect[c] ~ N(county_effect_mean, county_effect_scale)``, ``weight[j] ~ N(0, 1)``
    (j < 3), ``log_radon_scale ~ U(0, 100)``; ``log_radon[k] ~ N(log_uranium[k] weight[0] +
    floor[k] weight[1] + floor_by_county[k] weight[2] + county_effect[county[k]],
    log_radon_scale)`` (the gym's ``prior_scale='uniform'``, its default)."""
    y = data["log_radon"]
    zero = y.new_zeros(())
    mean = pyro.sample("county_effect_mean", dist.Normal(zero, 1.0))
    scale = pyro.sample("county_effect_scale", dist.Uniform(zero, 100.0))
    shape = (*mean.shape, num_counties)
    county_effect = pyro.sample(
        "county_effect",
        dist.Normal(mean.unsqueeze(-1).expand(shape), scale.unsqueeze(-1).expand(shape)).to_event(
            1
        ),
    )
    weight = pyro.sample("weight", dist.Normal(zero, 1.0).expand([3]).to_event(1))
    log_radon_scale = pyro.sample("log_radon_scale", dist.Uniform(zero, 100.0))
    loc = (
        data["log_uranium"] * weight[..., 0:1]
        + data["floor"] * weight[..., 1:2]
        + data["floor_by_county"] * weight[..., 2:3]
        + county_effect[..., data["county"]]
    )
    pyro.sample("log_radon", dist.Normal(loc, log_radon_scale.unsqueeze(-1)).to_event(1), obs=y)


def radon_tensors(radon: Radon) -> dict[str, Tensor]:
    """The data as float64 tensors (the county index as a long tensor)."""
    data = {
        k: torch.as_tensor(getattr(radon, k), dtype=torch.float64)
        for k in ("log_uranium", "floor", "floor_by_county", "log_radon")
    }
    return data | {"county": torch.as_tensor(radon.county, dtype=torch.long)}


RADON_QUANTITIES = (
    "county_effect",
    "county_effect_mean",
    "county_effect_scale",
    "log_radon_scale",
    "weight",
)


def radon_contextual_effects_minnesota() -> Target:
    """RadonContextualEffectsMinnesota: 91-D (85 county effects), N = 919."""
    radon = radon_minnesota()
    return Target(
        name="radon_minnesota",
        gym="RadonContextualEffectsMinnesota",
        model=functools.partial(radon_contextual_effects, radon_tensors(radon), radon.num_counties),
        quantities=identity(*RADON_QUANTITIES),
        reference=references("radon_contextual_effects_minnesota", *RADON_QUANTITIES),
        notes="scales in (0, 100) through Pyro's sigmoid transform (the gym's bijector)",
    )
