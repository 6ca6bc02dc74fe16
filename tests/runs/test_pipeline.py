"""One run of the study through ``pipeline.run`` with a composed, shrunk config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bayes_spheres.attack import AdversarialPoints
from bayes_spheres.config import ConfigError
from bayes_spheres.ensemble import Ensemble
from bayes_spheres.pipeline import run
from bayes_spheres.progress import BARS_OFF
from bayes_spheres.run_folder import LOCK_FILE, METRICS_FILE, finished_metrics

METRIC_KEYS = {
    "model", "inference", "attack", "seed", "dim", "n_train", "n_val", "members",
    "avg_confidence", "validation_error", "adversarial_error", "adversarial_error_max",
    "adversarial_error_by_sphere", "worst_case_by_sphere", "resampled_error",
    "inference_info", "timings", "row", "config_digest", "extra_attacks",
    "adversarial_error_best",
}  # fmt: skip


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "timings"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, compose_session):
    """One default quick run (flat model, MAP, PGD), shared by the read-only tests. Module
    scope runs it outside the per-test fixtures, so undo here what ``run`` changes for the
    process: the default dtype, and ``TQDM_DISABLE`` (bars off with ``progress=false``)."""
    out = tmp_path_factory.mktemp("quick")
    cfg = compose_session([])
    old = torch.get_default_dtype()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(BARS_OFF, "1")  # recorded, so leaving the block restores the old value
            return cfg, out, run(cfg, out_dir=out)
    finally:
        torch.set_default_dtype(old)


def test_run_writes_artifacts_and_documented_metrics(quick_run):
    cfg, out, metrics = quick_run
    assert {p.name for p in out.iterdir()} == {
        "ensemble.npz",
        "posterior.nc",
        "adversarial_points.npz",
        "adversarial_points_best.npz",  # the strongest attack's points
        METRICS_FILE,
        LOCK_FILE,  # the claim on the folder, left unlocked
    }
    on_disk = json.loads((out / METRICS_FILE).read_text())
    assert on_disk == metrics
    assert set(metrics) == METRIC_KEYS
    assert metrics["model"] == "flat" and metrics["inference"] == "map"
    assert metrics["attack"] == "pgd" and metrics["seed"] == 0
    assert metrics["dim"] == cfg.data.dim == 50
    assert metrics["n_train"] == 200 and metrics["n_val"] == 2000
    assert metrics["members"] == 1  # MAP: an ensemble of one whatever `members` says
    assert metrics["resampled_error"] is None
    assert set(metrics["timings"]) >= {"data", "inference", "attack", "metrics"}
    for key in ("avg_confidence", "validation_error", "adversarial_error", "adversarial_error_max"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["adversarial_error"] <= metrics["adversarial_error_max"]
    assert set(metrics["adversarial_error_by_sphere"]) == {"inner", "outer"}
    assert set(metrics["worst_case_by_sphere"]) == {"inner", "outer"}


def test_run_artifacts_are_consistent_with_metrics(quick_run):
    cfg, out, metrics = quick_run
    ens = Ensemble.load(out / "ensemble.npz")
    assert ens.size == 1 and ens.dim == 50
    pts = AdversarialPoints.load(out / "adversarial_points.npz")
    k = cfg.attack.restarts_per_sphere
    assert pts.x.shape == (2 * k, 50)
    assert pts.radius.shape == pts.label.shape == pts.wrong_prob.shape == (2 * k,)
    torch.testing.assert_close(pts.x.norm(dim=-1), pts.radius, rtol=0, atol=1e-12)
    # the saved scores are the saved ensemble's at the saved points, and the metrics are theirs
    torch.testing.assert_close(
        ens.wrong_prob(pts.x, pts.label), pts.wrong_prob, rtol=1e-12, atol=1e-15
    )
    assert metrics["adversarial_error"] == pytest.approx(float(pts.wrong_prob.mean()), rel=1e-12)
    assert metrics["adversarial_error_max"] == pytest.approx(float(pts.wrong_prob.max()), rel=1e-12)
    # one model: PGD gets to the exact worst case on each sphere (within the attack's tol)
    for sphere in ("inner", "outer"):
        found = metrics["adversarial_error_by_sphere"][sphere]["max"]
        exact = metrics["worst_case_by_sphere"][sphere]
        assert exact["best_vertex"] == exact["certified_bound"]
        assert found <= exact["best_vertex"] + 1e-12
        assert found == pytest.approx(exact["best_vertex"], abs=1e-3), sphere
    # the strongest attack: per restart at least PGD, and polished to the exact worst case
    best = AdversarialPoints.load(out / "adversarial_points_best.npz")
    assert torch.equal(best.label, pts.label) and (best.wrong_prob >= pts.wrong_prob).all()
    assert metrics["adversarial_error_best"]["mean"] == pytest.approx(
        float(best.wrong_prob.mean()), rel=1e-12
    )
    for sphere in ("inner", "outer"):
        strongest = metrics["adversarial_error_best"]["by_sphere"][sphere]["max"]
        exact = metrics["worst_case_by_sphere"][sphere]["best_vertex"]
        assert exact - 1e-6 <= strongest <= exact + 1e-12


def test_same_seed_same_metrics_different_seed_different(compose, quick_run, tmp_path):
    _, out, first = quick_run
    again = run(compose([]), out_dir=tmp_path / "again")
    assert without_timings(again) == without_timings(first)
    with np.load(out / "ensemble.npz") as a, np.load(tmp_path / "again" / "ensemble.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])

    other = run(compose(["seed=1"]), out_dir=tmp_path / "other")
    assert other["seed"] == 1
    assert other["avg_confidence"] != first["avg_confidence"]
    assert other["adversarial_error"] != first["adversarial_error"]


def test_finished_folder_is_left_alone_unless_forced(compose, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    sentinel = {"finished": "earlier"}
    (out / METRICS_FILE).write_text(json.dumps(sentinel))
    old = 1_000_000_000
    os.utime(out / METRICS_FILE, (old, old))

    assert run(compose([]), out_dir=out) == sentinel
    assert json.loads((out / METRICS_FILE).read_text()) == sentinel
    assert (out / METRICS_FILE).stat().st_mtime == old
    assert {p.name for p in out.iterdir()} == {METRICS_FILE}  # nothing else was computed

    forced = run(compose(["force=true"]), out_dir=out)
    assert set(forced) == METRIC_KEYS
    assert json.loads((out / METRICS_FILE).read_text()) == forced
    assert (out / METRICS_FILE).stat().st_mtime > old
    assert (out / "ensemble.npz").is_file()


def test_finished_run_with_another_config_is_refused_not_reused(compose, tmp_path):
    """A resumed sweep skips its finished cells, but a cell finished under another config
    must not be passed off as this config's result."""
    out = tmp_path / "run"
    first = run(compose([]), out_dir=out)
    assert run(compose(["progress=true", "threads=1"]), out_dir=out) == first  # same numbers
    before = (out / METRICS_FILE).read_bytes()
    with pytest.raises(ConfigError, match=r"another config .*force=true"):
        run(compose(["model.sigma=3.0"]), out_dir=out)
    assert (out / METRICS_FILE).read_bytes() == before


def test_threads_setting_is_checked_and_restored(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"threads=0.*>= 1"):
        run(compose(["threads=0"]), out_dir=tmp_path / "bad")
    before = torch.get_num_threads()
    run(compose(["threads=2", "attack=vertex"]), out_dir=tmp_path / "ok")
    assert torch.get_num_threads() == before


def test_a_killed_cell_leaves_no_claim_that_blocks_a_rerun(compose, tmp_path):
    """A process that holds a run folder and dies by SIGKILL (no cleanup runs) leaves its
    lock file behind, but not its claim: the rerun starts at once and finishes."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from bayes_spheres.run_folder import claim\n"
         "with claim(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)",
         str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / LOCK_FILE).exists() and finished_metrics(out) is None
    assert set(run(compose([]), out_dir=out)) == METRIC_KEYS


def test_half_written_metrics_do_not_count_as_finished(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"avg_confidence": 0.9')  # truncated
    assert finished_metrics(tmp_path) is None
    assert finished_metrics(tmp_path / "missing") is None


@pytest.mark.parametrize("model", ["shared_mean", "hier_noncentered"])
def test_other_models_with_map(compose, tmp_path, model):
    metrics = run(compose([f"model={model}", "inference=map"]), out_dir=tmp_path)
    assert metrics["model"] == model and metrics["inference"] == "map"
    assert metrics["members"] == 1
    assert metrics["validation_error"] == 0.0
    assert (tmp_path / METRICS_FILE).is_file()


def test_vertex_attack_run(compose, tmp_path):
    metrics = run(compose(["attack=vertex"]), out_dir=tmp_path)
    assert metrics["attack"] == "vertex"
    pts = AdversarialPoints.load(tmp_path / "adversarial_points.npz")
    assert pts.x.shape == (2, 50)
    # for one model the vertex attack is the exact worst case
    for sphere, i in (("inner", 0), ("outer", 1)):
        assert float(pts.wrong_prob[i]) == pytest.approx(
            metrics["worst_case_by_sphere"][sphere]["best_vertex"], rel=1e-12
        )


def test_float32_run(compose, tmp_path):
    metrics = run(compose(["dtype=float32", "attack=vertex"]), out_dir=tmp_path)
    assert metrics["validation_error"] == 0.0
    with np.load(tmp_path / "ensemble.npz") as f:
        assert f["w"].dtype == np.float32


CONF = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("attack", group_options("attack"))
@pytest.mark.parametrize("inference", group_options("inference"))
@pytest.mark.parametrize("model", group_options("model"))
def test_every_config_combination_runs_at_tiny_scale(compose, tmp_path, model, inference, attack):
    """Every model x inference x attack in conf/ either runs end to end at a tiny scale or is
    refused up front as an unsupported pair."""
    tiny = ["data.dim=5", "data.n_train=40", "data.n_val=100", "members=3"]
    if attack in ("pgd", "simplex"):
        tiny += ["attack.restarts_per_sphere=2", "attack.max_steps=50"]
    if attack == "simplex":
        tiny += ["attack.vertex_starts=1"]
    if inference == "svi":
        tiny += ["inference.num_steps=50"]
    cfg = compose([f"model={model}", f"inference={inference}", f"attack={attack}", *tiny])
    supported = cfg.method.get("models")
    if supported is not None and model not in supported:
        with pytest.raises(ConfigError, match="not supported"):
            run(cfg, out_dir=tmp_path)
        return
    metrics = run(cfg, out_dir=tmp_path)
    convergence = {"rhat_max", "ess_bulk_min", "ess_bulk_median", "ess_tail_min"}
    assert set(metrics) == METRIC_KEYS | (convergence if inference == "mcmc" else set())
    assert metrics["model"] == model and metrics["attack"] == attack
    for key in ("ensemble.npz", "adversarial_points.npz", METRICS_FILE):
        assert (tmp_path / key).is_file()


def test_a_sweeps_callbacks_see_their_own_folders_as_cells(tmp_path):
    """In a sweep's parent process (where Table1Callback makes Figure 1's fits) Hydra's job
    folder is unset: a run folder is named by its place under the sweep folder, and a
    folder elsewhere is not a sweep cell (it keeps its bars and prints its metrics)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from bayes_spheres.run_folder import sweep_cell

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        overrides = ["experiment=table1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert sweep_cell(tmp_path) is None  # no Hydra
    HydraConfig.instance().set_config(cfg)
    try:
        assert sweep_cell(tmp_path / "sweep" / "figure1_fits" / "mcmc") == "figure1_fits/mcmc"
        assert sweep_cell(tmp_path / "elsewhere") is None
    finally:
        HydraConfig.instance().cfg = None
