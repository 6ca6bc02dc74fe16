"""Config checks: every bad value is one ConfigError naming the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.utils import instantiate

from bayes_spheres import attack as A
from bayes_spheres.config import ConfigError, validate
from bayes_spheres.inference import map as map_fit
from bayes_spheres.inference import svi
from bayes_spheres.pipeline import run


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_default_quick_config_validates(compose):
    plan = validate(compose([]))
    assert plan.inference_name == "map" and plan.attack_name == "pgd"
    assert plan.attack.restarts_per_sphere == 10  # conf/scale/quick.yaml's restarts
    assert plan.fit_settings == {} and plan.attack_settings == {}


def test_quick_scale_sets_its_own_sizes(compose_raw):
    """conf/scale/quick.yaml sets members: 100 (and data sizes); choosing scale=quick must give
    them. The primary config lists ``_self_`` after ``scale``, so its own ``members: 1000``
    silently wins over the scale group's value."""
    cfg = compose_raw(["scale=quick"])
    assert cfg.data.dim == 50 and cfg.data.n_val == 5000
    assert cfg.attack.restarts_per_sphere == 10
    assert cfg.members == 100


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["data.dim=0"], ["data.dim=0", ">= 1"]),
        (["data.n_train=-5"], ["data.n_train=-5", ">= 2"]),
        (["data.n_val=0"], ["data.n_val=0", ">= 1"]),
        (
            ["data.r_inner=1.5", "data.r_outer=1.3"],
            ["data.r_inner=1.5", "r_outer=1.3", "smaller"],
        ),
        (["data.r_inner=1.3", "data.r_outer=1.3"], ["data.r_inner=1.3", "smaller"]),
        (["data.r_inner=-1.0"], ["data.r_inner=-1.0", "> 0"]),
        (["data.n_val=abc"], ["data.n_val='abc'", ">= 1"]),
        (["members=0"], ["members=0", ">= 1"]),
        (["seed=-1"], ["seed=-1", ">= 0"]),
        (["dtype=float16"], ["float16", "float64", "float32"]),
        (["device=tpu"], ["tpu", "cpu", "cuda"]),
        (["log_likelihood=int8"], ["log_likelihood='int8'", "float64", "float32", "none"]),
        (
            ["model=hier_centered", "inference=map"],
            ["hier_centered", "map", "flat", "hier_noncentered", "shared_mean"],
        ),
        (
            ["+attack.stepsize=0.1"],
            ["attack.stepsize", "unknown", "step_size", "restarts_per_sphere"],
        ),
        (["+model.sgima=3"], ["model.sgima", "unknown", "sigma", "bias"]),
        (["+inference.maxiter=3"], ["inference.maxiter", "unknown", "allowed"]),
        # instantiate's own keys that the plan could not honour are refused, not dropped
        (["+attack._args_=[5]"], ["attack._args_", "unknown"]),
        (["+inference._recursive_=false"], ["inference._recursive_", "unknown"]),
        (["model.sigma=-1"], ["model.sigma=-1", "> 0"]),
        (["model=shared_mean", "model.sigma_mu=0"], ["model.sigma_mu=0", "> 0"]),
        (["attack.step_size=0"], ["attack.step_size=0", "> 0"]),
        (["attack.restarts_per_sphere=0"], ["attack.restarts_per_sphere=0", ">= 1"]),
        # each attack's settings object checks itself
        (["attack.max_steps=0"], ["attack.max_steps=0", ">= 1"]),
        (["attack.patience=0"], ["attack.patience=0", ">= 1"]),
        (["attack.warmup_steps=-1"], ["attack.warmup_steps=-1", ">= 0"]),
        (["attack.step_size=inf"], ["attack.step_size=inf", "finite number > 0"]),
        (
            ["+attack@extra_attacks.simplex=simplex", "extra_attacks.simplex.vertex_starts=11"],
            ["extra_attacks.simplex.vertex_starts=11", "restarts_per_sphere=10"],
        ),
        (
            ["+attack@extra_attacks.simplex=simplex", "extra_attacks.simplex.step_growth=0.5"],
            ["extra_attacks.simplex.step_growth=0.5", ">= 1"],
        ),
        # the nodes instantiate builds, and the method's metadata beside the inference node
        (["~inference._target_"], ["inference", "no _target_"]),
        (["attack=vertex", "attack._partial_=false"], ["attack._partial_=False", "must be true"]),
        (["inference._target_=nowhere.fit"], ["inference._target_='nowhere.fit'", "import"]),
        (["+method.resmple=false"], ["method.resmple", "unknown", "resample", "models"]),
        (
            ["inference=svi", "~inference.optim._target_"],
            ["inference.optim", "SGDSettings", "_target_: bayes_spheres.inference.svi"],
        ),
        # inference settings: each method's settings object checks itself when made
        (["inference=mcmc", "inference.num_chains=0"], ["inference.num_chains=0", ">= 1"]),
        (["inference=mcmc", "inference.thin=0"], ["inference.thin=0", ">= 1"]),
        (["inference=mcmc", "inference.warmup=abc"], ["inference.warmup='abc'", ">= 0"]),
        (
            ["inference=mcmc", "inference.slice.trajectory=-1"],
            ["inference.slice.trajectory=-1", "> 0", "no-u-turn"],
        ),
        (["inference=svi", "inference.optim.lr=abc"], ["inference.optim.lr='abc'", "> 0"]),
        (["inference=svi", "inference.num_steps=-5"], ["inference.num_steps=-5", ">= 1"]),
        (["inference=svi", "inference.batch_size=0"], ["inference.batch_size=0", ">= 1"]),
        (
            ["inference=svi", "inference.optim.momentum=1"],
            ["inference.optim.momentum=1", "[0, 1)"],
        ),
        (["inference.lbfgs.max_iter=0"], ["inference.lbfgs.max_iter=0", ">= 1"]),
        (
            ["inference.lbfgs.line_search=armijo"],
            ["inference.lbfgs.line_search='armijo'", "strong_wolfe"],
        ),
        (["inference=bootstrap", "inference.init=nope"], ["inference.init='nope'", "map, zero"]),
        (
            ["inference=bootstrap", "inference.tolerance_grad=0"],
            ["inference.tolerance_grad=0", "> 0"],
        ),
        (
            ["inference=svi", "inference.guide=nope"],
            ["inference.guide='nope'", "full_covariance", "direction_scale"],
        ),
        (
            ["inference=svi", "inference.loss_scale=mean"],
            ["inference.loss_scale='mean'", "per_datum", "sum"],
        ),
        (
            ["inference=svi", "+inference.optim.lrr=0.1"],
            ["inference.optim.lrr", "unknown", "lr", "momentum"],
        ),
        (
            ["model=hier_centered", "inference=bootstrap"],
            ["hier_centered", "bootstrap", "not supported", "flat", "shared_mean"],
        ),
        (
            ["model=hier_centered", "inference=svi"],
            ["hier_centered", "svi", "not supported", "hier_noncentered"],
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and "=" in v[0] else None,
)
def test_config_errors(compose, overrides, fragments, tmp_path):
    cfg = compose(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    # run() checks first and writes nothing
    with pytest.raises(ConfigError):
        run(cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_unknown_setting_for_the_vertex_attack_is_an_error(compose):
    """``vertex`` takes no settings (the pipeline passes it only the ensemble, radii and
    seed); the check of unknown keys must still catch a misspelled setting under
    attack=vertex."""
    with pytest.raises(ConfigError, match=r"attack\.stepsize"):
        validate(compose(["attack=vertex", "+attack.stepsize=0.1"]))


def test_unknown_nested_lbfgs_setting_is_an_error(compose):
    """inference=map keeps the L-BFGS settings in a nested ``lbfgs`` dict; a misspelled key
    there must be caught before any work, not as a TypeError deep inside the fit."""
    cfg = compose(["+inference.lbfgs.maxiter=3"])
    with pytest.raises(ConfigError, match="maxiter"):
        validate(cfg)


def test_instantiate_builds_the_settings_object_that_fits(compose):
    """conf/inference/*.yaml build each method's settings object with Hydra's instantiate,
    nested settings by their own ``_target_``; the plan's fit is that object (calling it fits)
    and the method's metadata stays beside it in ``method``."""
    cfg = compose(["inference=svi", "inference.optim.lr=0.003", "inference.num_steps=7"])
    settings = instantiate(cfg.inference)
    assert settings == svi.SVISettings(optim=svi.SGDSettings(lr=0.003), num_steps=7)
    plan = validate(cfg)
    assert plan.fit == settings and plan.fit_settings == {}
    assert "models" not in cfg.inference and list(cfg.method.models)
    lbfgs = map_fit.LBFGSSettings(max_iter=5)
    assert validate(compose(["inference.lbfgs.max_iter=5"])).fit == map_fit.MAPSettings(lbfgs)


def test_attacks_are_settings_objects_and_names_come_from_them(compose):
    cfg = compose(["+attack@extra_attacks.vertex=vertex", "inference=mcmc"])
    plan = validate(cfg)
    assert plan.attack == instantiate(cfg.attack) == A.PGDSettings(10, step_size=1e-4)
    assert (plan.inference_name, plan.attack_name) == ("mcmc", "pgd")
    assert plan.extra_attacks == {"vertex": (A.vertex, {})}  # no settings: a function
    assert plan.resample is True and validate(compose([])).resample is False


@pytest.mark.parametrize(
    ("kind", "settings", "fragment"),
    [
        (A.PGDSettings, dict(max_steps=0), "max_steps=0"),
        (A.PGDSettings, dict(step_size=float("nan")), "step_size=nan"),
        (A.PGDSettings, dict(patience=2.0), "patience=2.0"),
        (A.SimplexSettings, dict(vertex_blend=1.0), "vertex_blend=1.0"),
        (A.SimplexSettings, dict(restarts_per_sphere=4, vertex_starts=5), "vertex_starts=5"),
    ],
)
def test_each_attack_checks_its_own_settings(kind, settings, fragment):
    kind()  # the defaults pass
    with pytest.raises(ValueError, match=fragment):
        kind(**settings)


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bayes_spheres.app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_unknown_group_option_lists_the_available_ones(tmp_path):
    res = cli("model=nope", "scale=quick", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "nope" in out
    for option in ("flat", "hier_centered", "hier_noncentered", "shared_mean"):
        assert option in out
    assert not list(tmp_path.rglob("metrics.json"))


def test_cli_config_error_exits_2_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    res = cli(
        "data.dim=0", "scale=quick", "progress=false", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "data.dim=0" in lines[0] and "config error" in lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("*.npz"))


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("attack.max_steps=0", ["attack.max_steps=0", ">= 1"]),
        ("+inference.maxiter=3", ["inference.maxiter", "unknown", "lbfgs"]),
        ("inference.lbfgs.history_size=0", ["inference.lbfgs.history_size=0", ">= 1"]),
        ("inference=svi inference.optim.lr=abc", ["inference.optim.lr='abc'", "> 0"]),
        ("polish.temperatures=[30,0]", ["polish.temperatures[1]=0", "> 0"]),
        ("polish.temperatures=abc", ["polish.temperatures='abc'", "list of numbers"]),
    ],
)
def test_cli_config_errors_are_one_line_and_exit_2(tmp_path, override, fragments):
    overrides = override.split()
    res = cli(
        *overrides, "scale=quick", "progress=false", f"hydra.run.dir={tmp_path}", cwd=tmp_path
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bayes-spheres: config error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not list(tmp_path.rglob("metrics.json"))
