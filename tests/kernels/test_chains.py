"""The kernel's pure steps (``bayes_spheres/kernels/chains.py``) draw from the random generator
passed to ``init`` and from nothing else, on every path and kind of direction: the same
generator seed gives the same chain whatever torch's global stream holds, the global stream is
left untouched, and another seed gives another chain."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide.initialization import init_to_uniform

from bayes_spheres.data import load_spheres
from bayes_spheres.kernels import SliceSettings, chains
from bayes_spheres.models import Flat, Hierarchical


def skewed(scale):
    pyro.sample("s", dist.Gamma(3.0, 1.0))
    pyro.sample("x", dist.Normal(torch.zeros(2, dtype=torch.float64), scale).to_event(1))


DATA = load_spheres(6, 60, 10, 1.0, 1.3, seed=0, dtype=torch.float64, device="cpu")
SPHERES = (DATA.phi_train, DATA.y_train)
CASES = {  # name -> (model, args, settings, the path it takes)
    "fast": (Flat(), SPHERES, SliceSettings(), "fast"),
    "fast, factor": (Flat(), SPHERES, SliceSettings(directions="factor"), "fast"),
    "conditional": (Hierarchical(centered=False), SPHERES, SliceSettings(), "conditional"),
    "generic": (skewed, (2.0,), SliceSettings(), "generic"),
    "generic, no-U-turn": (skewed, (2.0,), SliceSettings(trajectory="no-u-turn"), "generic"),
    "generic, coordinate": (skewed, (2.0,), SliceSettings(directions="coordinate"), "generic"),
}


def chain(case: str, seed: int, updates: int = 12) -> tuple[str, torch.Tensor]:
    model, args, settings, _ = CASES[case]
    with torch.random.fork_rng():
        torch.manual_seed(0)  # Pyro's initialisation draws from the global stream
        problem, initial = chains.start(model, None, None, args, {}, 2, None, init_to_uniform)
    generator = torch.Generator().manual_seed(seed)
    path, state = chains.init(problem, settings, initial, updates // 2, generator)
    for _ in range(updates):
        state = chains.step(path, state)
    return path.name, state.theta


@pytest.mark.parametrize("case", list(CASES))
def test_every_draw_comes_from_the_generator_passed_in(case):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    name, first = chain(case, seed=1)
    assert name == CASES[case][3]
    assert torch.equal(torch.get_rng_state(), before), "a draw came from the global stream"
    torch.manual_seed(8)  # another global state: no effect on the chain
    _, again = chain(case, seed=1)
    _, other = chain(case, seed=2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
