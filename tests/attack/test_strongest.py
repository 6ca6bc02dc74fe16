"""The strongest attack's polish (``bayes_spheres/attack/strongest.py``): smoothed stages that
climb the staircase objective of an ensemble of nearly step-like members, never lowering a
restart, never past the certified bound, and the run's own polish read back from its config."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bayes_spheres import attack as A
from bayes_spheres import metrics as M
from bayes_spheres.attack.strongest import PolishSettings, best_of, polish, polish_of_run
from bayes_spheres.branch_bound import CertificateSettings
from bayes_spheres.checks import SettingError
from bayes_spheres.data import INNER, OUTER
from bayes_spheres.ensemble import Ensemble
from tests.attack.test_attack_simplex import ensemble

RADII = (1.0, 1.3)
PLAIN = PolishSettings(temperatures=())


def step_like(seed: int, members: int | None = None, sharpness: float = 100.0) -> Ensemble:
    """``test_attack_simplex.ensemble``'s members (D = 20, 50 of them, or the first
    ``members``) with ``sharpness`` times their activations: each is nearly a step function
    on the spheres, as a sampled posterior's members are (median ``|a|`` about 400 at the flat
    MCMC row's strongest points), so the ensemble's objective is a staircase."""
    moderate = ensemble(seed)
    keep = slice(None, members)
    return Ensemble(sharpness * moderate.w[keep], sharpness * moderate.b[keep], moderate.features)


def attacked(ens: Ensemble, seed: int) -> A.AdversarialPoints:
    """Per restart the best point of PGD and the simplex attack, as the pipeline takes it."""
    found = [
        A.pgd(ens, RADII, seed, restarts_per_sphere=10),
        A.simplex(ens, RADII, seed, restarts_per_sphere=10),
    ]
    return best_of(found)


def worst(points: A.AdversarialPoints) -> list[float]:
    return [float(points.wrong_prob[points.label == s].max()) for s in (INNER, OUTER)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_smoothed_stages_climb_where_the_plain_polish_stops(seed):
    """On a staircase the plain polish stops on the first plateau; the smoothed stages lift
    the restarts by 0.04-0.06 on average (measured over seeds 0-5) and no restart falls."""
    ens = step_like(seed)
    start = attacked(ens, seed)
    plain, smoothed = polish(ens, start, PLAIN), polish(ens, start)
    assert (smoothed.wrong_prob >= start.wrong_prob).all()
    assert (plain.wrong_prob >= start.wrong_prob).all()
    assert float((smoothed.wrong_prob - plain.wrong_prob).mean()) > 0.02
    assert sum(worst(smoothed)) > sum(worst(plain))


def test_polished_points_are_real_points_below_the_certified_bound():
    """Each point lies on its sphere and is scored by the real ensemble (not the smoothed
    one); no sphere's worst point is above the branch and bound's certified bound."""
    ens = step_like(0)
    points = polish(ens, attacked(ens, 0))
    torch.testing.assert_close(points.x.norm(dim=-1), points.radius, rtol=1e-12, atol=0)
    torch.testing.assert_close(points.wrong_prob, ens.wrong_prob(points.x, points.label))
    bounds = M.worst_case_by_sphere(
        ens, RADII, found=points, settings=CertificateSettings(time_limit_s=2.0)
    )
    for name, value in zip(("inner", "outer"), worst(points), strict=True):
        assert value <= bounds[name]["certified_bound"] + 1e-12


def test_one_model_does_not_depend_on_the_temperatures():
    """One model's polish ends where it ends without smoothing: its logit is linear in ``u``
    (dividing it by T moves no maximiser), and the module skips those stages for it."""
    ens = step_like(1, members=1)
    start = attacked(ens, 1)
    a, b = polish(ens, start, PLAIN), polish(ens, start)
    assert torch.equal(a.x, b.x) and torch.equal(a.wrong_prob, b.wrong_prob)


def test_no_steps_returns_the_points():
    ens = step_like(2)
    start = attacked(ens, 2)
    assert polish(ens, start, PolishSettings(steps=0)) is start


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (dict(steps=-1), "steps=-1"),
        (dict(temperatures=(10.0, 0.0)), "temperatures[1]=0.0"),
        (dict(temperatures="10"), "temperatures='10'"),
        (dict(patience=0), "patience=0"),
    ],
)
def test_polish_settings_check_themselves(settings, fragment):
    with pytest.raises(SettingError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        PolishSettings(**settings)


def test_polish_of_run_reads_the_node_or_the_old_key():
    """A run folder's config gives the polish it ran; one written before the ``polish`` node
    existed ran ``polish_steps`` steps without smoothing."""
    node = {"_target_": "bayes_spheres.attack.strongest.PolishSettings", "steps": 50,
            "temperatures": [30, 3], "step_size": 0.1, "tol": 1e-9, "patience": 10}  # fmt: skip
    assert polish_of_run(OmegaConf.create({"polish": node})) == PolishSettings(
        steps=50, temperatures=(30.0, 3.0)
    )
    old = polish_of_run(OmegaConf.create({"polish_steps": 80}))
    assert old == PolishSettings(steps=80, temperatures=())
