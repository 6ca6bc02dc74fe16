"""A user adds a model and an attack with one Python file and one YAML each, outside the
package, and runs them through the CLI (README, "Adding your own")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

MODEL = '''
import pyro
import pyro.distributions as dist

from bayes_spheres.models import SphereModel


class StudentT(SphereModel):
    """w_i ~ StudentT(df, 0, scale): a heavy-tailed prior."""

    name = "student_t"

    def __init__(self, df=3.0, scale=1.0, bias=True, bias_scale=10.0):
        super().__init__(bias, bias_scale)
        self.df, self.scale = df, scale

    def weights(self, dim, like):
        loc = like.new_zeros(dim)
        return pyro.sample("w", dist.StudentT(self.df, loc, self.scale).to_event(1))
'''

ATTACK = '''
from bayes_spheres.attack import AdversarialPoints, random_starts
import torch


def random_points(ensemble, radii, restarts_per_sphere=5, seed=0):
    """No ascent at all: the ensemble's wrong-class probability at random points."""
    gen = torch.Generator().manual_seed(seed)
    x, radius, label = random_starts(restarts_per_sphere, ensemble.dim, radii, gen,
                                     ensemble.w.dtype)
    return AdversarialPoints(x, radius, label, ensemble.wrong_prob(x, label))
'''


def test_a_model_and_an_attack_added_in_one_file_and_one_yaml_each(tmp_path: Path):
    code, conf = tmp_path / "code", tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "attack").mkdir(parents=True)
    code.mkdir()
    (code / "my_prior.py").write_text(MODEL)
    (code / "my_attack.py").write_text(ATTACK)
    (conf / "model" / "student_t.yaml").write_text(
        "_target_: my_prior.StudentT\ndf: 3.0\nscale: 1.0\nbias: true\n"
    )
    (conf / "attack" / "random_points.yaml").write_text(
        textwrap.dedent(
            """\
            _target_: my_attack.random_points
            _partial_: true
            restarts_per_sphere: 4
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "run"
    args = [
        f"hydra.searchpath=[file://{conf}]",
        "model=student_t",
        "inference=map",
        "attack=random_points",
        "scale=quick",
        "data.n_val=500",
        "progress=false",
        f"hydra.run.dir={out}",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "bayes_spheres.app", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "student_t" and metrics["attack"] == "random_points"
    assert 0.0 <= metrics["adversarial_error"] <= 1.0
    assert metrics["validation_error"] < 0.5  # the heavy-tailed MAP still classifies
