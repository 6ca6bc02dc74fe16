"""Progress bars are switched once, in the environment (bayes_spheres/progress.py): every bar
reads tqdm's ``TQDM_DISABLE`` as it is drawn, no function takes a ``progress`` argument, and
``switch_bars(False)`` (the pipeline's, for ``progress=false`` or a sweep) sets it."""

from __future__ import annotations

import os

import pyro
import pytest

from bayes_spheres.attack import pgd
from bayes_spheres.data import load_spheres
from bayes_spheres.inference import svi
from bayes_spheres.models import Flat
from bayes_spheres.pipeline import run
from bayes_spheres.progress import BARS_OFF, bars_disabled, switch_bars


@pytest.fixture(scope="module")
def tiny_data():
    return load_spheres(dim=3, n_train=20, n_val=10, seed=0)


def fit(data):
    pyro.set_rng_seed(0)
    return svi.fit(Flat(), data, members=3, num_steps=3, batch_size=10)


def attack(data):
    return pgd(fit(data).ensemble, data.radii, restarts_per_sphere=2, warmup_steps=2, max_steps=3)


@pytest.mark.parametrize("draw", [fit, attack], ids=["svi", "pgd"])
def test_no_bar_is_drawn_when_tqdm_disable_is_set(tiny_data, draw, monkeypatch, capsys):
    monkeypatch.setenv(BARS_OFF, "1")
    draw(tiny_data)
    assert "%|" not in capsys.readouterr().err  # tqdm's "SVI:   0%|" and "100%|"
    monkeypatch.delenv(BARS_OFF)
    draw(tiny_data)
    assert "%|" in capsys.readouterr().err  # drawn without it: the check above can fail


@pytest.mark.parametrize(
    ("value", "off"),
    [(None, False), ("", False), ("0", False), ("false", False), ("False", False),
     ("1", True), ("true", True), ("yes", True)],
)  # fmt: skip
def test_bars_disabled_reads_tqdm_disable_at_call_time(monkeypatch, value, off):
    monkeypatch.setenv(BARS_OFF, "0")  # recorded, so that the test's changes are undone
    if value is None:
        monkeypatch.delenv(BARS_OFF)
    else:
        monkeypatch.setenv(BARS_OFF, value)
    assert bars_disabled() is off


def test_switch_bars_sets_tqdm_disable_and_leaves_a_users_own(monkeypatch):
    monkeypatch.setenv(BARS_OFF, "0")
    monkeypatch.delenv(BARS_OFF)
    switch_bars(True)
    assert BARS_OFF not in os.environ
    switch_bars(False)
    assert os.environ[BARS_OFF] == "1" and bars_disabled()
    switch_bars(True)  # never turns bars back on: a user's TQDM_DISABLE=1 wins
    assert bars_disabled()


def test_a_run_with_progress_false_switches_bars_off(compose, monkeypatch, tmp_path):
    monkeypatch.setenv(BARS_OFF, "0")
    monkeypatch.delenv(BARS_OFF)
    run(compose(["attack=vertex", "progress=true"]), out_dir=tmp_path / "on")
    assert not bars_disabled()
    run(compose(["attack=vertex", "progress=false"]), out_dir=tmp_path / "off")
    assert bars_disabled()
