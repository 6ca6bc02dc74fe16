"""Approximate posteriors through ``pipeline.run``: posterior.nc, the ELBO trace, the
resampled error (paper, Table 1), and the configs that pair a model with an inference."""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest
import torch

from bayes_spheres.attack import AdversarialPoints
from bayes_spheres.config import validate
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.inference.svi import SVISettings
from bayes_spheres.pipeline import RESAMPLE_SEED_OFFSET, run
from bayes_spheres.progress import BARS_OFF
from bayes_spheres.run_folder import LOCK_FILE, METRICS_FILE

SMALL = [
    "members=20",
    "data.dim=5",
    "data.n_train=60",
    "data.n_val=200",
    "restarts=2",
    "attack.max_steps=300",
]
SVI_SMALL = ["inference=svi", "inference.num_steps=200", *SMALL]


def run_recording_fits(cfg, out) -> tuple[dict, list]:
    """``run(cfg)``, recording every ``(seed, posterior)`` that the configured method's
    settings object returns when the pipeline calls it (a fit, and the resampled fit)."""
    fits = []
    method = type(validate(cfg).fit)
    fit = method.__call__

    def recording(self, model, data, members=1000, seed=0):
        posterior = fit(self, model, data, members, seed)
        fits.append((seed, posterior))
        return posterior

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(method, "__call__", recording)
        mp.setenv(BARS_OFF, "1")  # run switches bars off for the process: undone on leaving
        metrics = run(cfg, out_dir=out)
    return metrics, fits


@pytest.fixture(scope="module")
def svi_run(tmp_path_factory, compose_session):
    """One small SVI run (flat model, full-covariance guide), shared by read-only tests."""
    out = tmp_path_factory.mktemp("svi")
    cfg = compose_session(SVI_SMALL)
    metrics, fits = run_recording_fits(cfg, out)
    return cfg, out, metrics, fits


def test_svi_run_writes_posterior_and_elbo(svi_run):
    _, out, metrics, _ = svi_run
    assert {p.name for p in out.iterdir()} == {
        "ensemble.npz",
        "adversarial_points.npz",
        "adversarial_points_best.npz",
        "posterior.nc",
        "elbo.csv",
        "elbo.png",
        METRICS_FILE,
        LOCK_FILE,
    }
    assert metrics["inference"] == "svi" and metrics["members"] == 20
    assert metrics["inference_info"]["svi"]["steps"] == 200
    assert metrics["inference_info"]["svi"]["guide"] == "full_covariance"
    assert (out / "elbo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_posterior_nc_is_arviz_inference_data(svi_run):
    _, out, _, fits = svi_run
    idata = az.from_netcdf(out / "posterior.nc")
    assert "posterior" in idata.groups()
    post = idata.posterior
    assert set(post.data_vars) == {"w", "b"}
    assert post["w"].dims[:2] == ("chain", "draw") and len(post["w"].dims) == 3
    assert post["w"].shape == (1, 20, 5)
    assert post["b"].dims == ("chain", "draw") and post["b"].shape == (1, 20)
    # the draws are the first fit's ensemble
    _, first = fits[0]
    np.testing.assert_array_equal(post["w"].values[0], first.ensemble.w.numpy())
    np.testing.assert_array_equal(post["b"].values[0], first.ensemble.b.numpy())
    summary = az.summary(idata, kind="stats", round_to="none")
    assert len(summary) == 5 + 1
    np.testing.assert_allclose(
        summary["mean"].to_numpy()[:5], first.ensemble.w.mean(0).numpy(), rtol=1e-12
    )


def test_posterior_nc_has_the_pointwise_log_likelihood_that_az_loo_reads(svi_run):
    """log_likelihood [chain, draw, N] over the training points and observed_data, stored in
    float64 (conf/config.yaml): az.loo and az.waic run on the saved file."""
    cfg, out, _, fits = svi_run
    idata = az.from_netcdf(out / "posterior.nc")
    assert {"log_likelihood", "observed_data"} <= set(idata.groups())
    log_lik = idata.log_likelihood["y"]
    assert log_lik.shape == (1, 20, 60) and log_lik.dtype == np.float64
    from bayes_spheres.data import load_spheres

    d = cfg.data
    data = load_spheres(d.dim, d.n_train, d.n_val, d.r_inner, d.r_outer, seed=d.seed)
    np.testing.assert_array_equal(idata.observed_data["y"].values, data.y_train.numpy())
    _, first = fits[0]
    logits = data.phi_train @ first.ensemble.w.T + first.ensemble.b  # [N, draws]
    expected = torch.distributions.Bernoulli(logits=logits.T).log_prob(data.y_train)
    np.testing.assert_allclose(log_lik.values[0], expected.numpy(), rtol=1e-12, atol=1e-300)
    with pytest.warns(UserWarning):  # separable data: Pareto k is high (docs/)
        loo = az.loo(idata)
    assert np.isfinite(loo["elpd_loo"]) and loo["elpd_loo"] <= 0
    assert np.isfinite(az.waic(idata)["elpd_waic"])


@pytest.mark.parametrize(("value", "stored"), [("float32", np.float32), ("none", None)])
def test_log_likelihood_config_sets_its_dtype_or_leaves_it_out(compose, tmp_path, value, stored):
    run(compose(["inference=map", f"log_likelihood={value}", *SMALL]), out_dir=tmp_path)
    idata = az.from_netcdf(tmp_path / "posterior.nc")
    if stored is None:
        assert "log_likelihood" not in idata.groups()
    else:
        assert idata.log_likelihood["y"].dtype == stored


def test_elbo_csv_is_the_trace(svi_run):
    _, out, _, fits = svi_run
    lines = (out / "elbo.csv").read_text().splitlines()
    assert lines[0] == "step,elbo"
    assert len(lines) == 1 + 200
    table = np.loadtxt(out / "elbo.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], np.arange(1, 201))
    np.testing.assert_allclose(table[:, 1], fits[0][1].elbo, rtol=1e-7, atol=0)  # %.8g


def test_resampled_error_rescores_the_first_points_with_a_second_seed(svi_run):
    cfg, out, metrics, fits = svi_run
    assert [seed for seed, _ in fits] == [cfg.seed, cfg.seed + RESAMPLE_SEED_OFFSET]
    (_, first), (_, second) = fits
    assert not torch.equal(first.ensemble.w, second.ensemble.w)
    saved = Ensemble.load(out / "ensemble.npz")
    assert torch.equal(saved.w, first.ensemble.w)  # the first ensemble is the one saved
    points = AdversarialPoints.load(out / "adversarial_points.npz")
    # the saved points are the first ensemble's attack...
    torch.testing.assert_close(
        points.wrong_prob, first.ensemble.wrong_prob(points.x, points.label), rtol=1e-12, atol=0
    )
    # ...and the resampled error is the second ensemble's wrong-class probability there
    expected = float(second.ensemble.wrong_prob(points.x, points.label).mean())
    assert isinstance(metrics["resampled_error"], float)
    assert metrics["resampled_error"] == pytest.approx(expected, rel=1e-12)
    assert metrics["resampled_error"] != pytest.approx(metrics["adversarial_error"], rel=1e-6)


@pytest.mark.parametrize(
    ("inference", "resampled", "draws"),
    [("map", False, 1), ("laplace", False, 20), ("bootstrap", True, 20)],
)
def test_resampled_error_only_for_resampling_methods(
    compose, tmp_path, inference, resampled, draws
):
    metrics, fits = run_recording_fits(compose([f"inference={inference}", *SMALL]), tmp_path)
    assert metrics["inference"] == inference
    assert len(fits) == (2 if resampled else 1)
    if resampled:
        assert isinstance(metrics["resampled_error"], float)
        assert 0.0 <= metrics["resampled_error"] <= 1.0
        assert fits[1][0] == RESAMPLE_SEED_OFFSET
    else:
        assert metrics["resampled_error"] is None
    assert not (tmp_path / "elbo.csv").exists() and not (tmp_path / "elbo.png").exists()
    idata = az.from_netcdf(tmp_path / "posterior.nc")
    assert idata.posterior["w"].shape == (1, draws, 5)
    assert idata.posterior["b"].shape == (1, draws)


def test_hierarchical_svi_run_keeps_scale_and_direction(compose, tmp_path):
    metrics, _ = run_recording_fits(compose(["model=hier_noncentered", *SVI_SMALL]), tmp_path)
    assert metrics["model"] == "hier_noncentered"
    assert metrics["inference_info"]["svi"]["guide"] == "direction_scale"
    post = az.from_netcdf(tmp_path / "posterior.nc").posterior
    assert set(post.data_vars) == {"s", "w_decentered", "w", "b"}
    s, v, w = post["s"].values, post["w_decentered"].values, post["w"].values
    assert s.shape == (1, 20) and (s > 0).all()
    np.testing.assert_allclose(w, s[..., None] * v, rtol=1e-14, atol=0)


# --- configs -----------------------------------------------------------------------------


MODELS = ("flat", "shared_mean")


def test_hier_noncentered_svi_gets_its_specialisation(compose):
    """conf/model_inference/hier_noncentered_svi.yaml applies to that pair only: the
    direction x scale guide with a learnt prior there, the settings' defaults elsewhere."""
    plan = validate(compose(["model=hier_noncentered", "inference=svi"]))
    flat, shared_mean = (validate(compose([f"model={m}", "inference=svi"])) for m in MODELS)
    assert flat.fit == shared_mean.fit and flat.fit.guide == SVISettings().guide
    assert plan.fit == dataclasses.replace(flat.fit, guide="direction_scale")
    assert plan.model.learn_prior is True and plan.model.centered is False
    laplace = validate(compose(["model=hier_noncentered", "inference=laplace"]))
    assert laplace.model.learn_prior is False


@pytest.mark.parametrize(
    ("inference", "step_size"),
    [("svi", 1e-4), ("map", 0.01), ("laplace", 0.01), ("bootstrap", 0.01)],
)
def test_attack_step_size_follows_the_inference(compose, inference, step_size):
    plan = validate(compose([f"inference={inference}"]))
    assert plan.attack.step_size == step_size
    assert "attack_step_size" not in plan.fit_settings
    override = validate(compose([f"inference={inference}", "attack.step_size=0.003"]))
    assert override.attack.step_size == 0.003


def test_report_compare_runs_az_compare_over_run_folders(svi_run, compose, tmp_path, capsys):
    """``bayes-spheres-report --compare`` on two run folders: az.compare's table and each
    run's Pareto k, read from posterior.nc; a folder without log-likelihood is refused."""
    from bayes_spheres.report import main
    from bayes_spheres.report.compare import compare_runs

    _, svi_dir, _, _ = svi_run
    laplace_dir = tmp_path / "laplace"
    run(compose(["inference=laplace", *SMALL]), out_dir=laplace_dir)
    comparison, diagnostics = compare_runs([svi_dir, laplace_dir])
    assert len(comparison) == 2 and comparison["rank"].tolist() == [0, 1]
    assert set(diagnostics["points"]) == {60}
    by_folder = {f"[{d.name}]": d for d in (svi_dir, laplace_dir)}
    for _, row in diagnostics.iterrows():
        (folder,) = [d for key, d in by_folder.items() if row["run"].endswith(key)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(az.from_netcdf(folder / "posterior.nc"))
        assert row["elpd_loo"] == pytest.approx(float(loo.elpd_loo), rel=1e-12)
    main(["--compare", str(svi_dir), str(laplace_dir)])
    out = capsys.readouterr().out
    assert "az.compare" in out and "Pareto k per run" in out and "[laplace]" in out
    bare = tmp_path / "bare"
    run(compose(["inference=map", "log_likelihood=none", *SMALL]), out_dir=bare)
    with pytest.raises(SystemExit, match="no log_likelihood group"):
        main(["--compare", str(svi_dir), str(bare)])
