"""The study: Table 1 row configs, the sweep config and its launchers, sweeps that resume,
and every experiment at quick scale (the table itself: tests/report/test_table1.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from bayes_spheres import report
from bayes_spheres.config import validate
from bayes_spheres.progress import BARS_OFF
from bayes_spheres.run_folder import LOCK_FILE, METRICS_FILE

CONF = Path(__file__).resolve().parents[2] / "conf"
ROWS = sorted(p.stem for p in (CONF / "experiment" / "table1").glob("*.yaml"))


def compose_hydra(overrides: list[str]):
    """The config with Hydra's own node, as a launcher would see it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=True)


def test_table1_has_the_papers_seven_rows():
    assert set(ROWS) == set(report.PAPER_ORDER)
    sweep = OmegaConf.load(CONF / "experiment" / "table1.yaml")
    swept = sweep.hydra.sweeper.params["+experiment/table1"].split(",")
    assert sorted(swept) == sorted(report.PAPER_ORDER) and len(swept) == 7
    assert swept[0] == "mcmc" and swept[-1] == "map"  # longest first (two processes)


@pytest.mark.parametrize("row", ROWS)
def test_each_row_composes_to_its_model_and_inference(compose_raw, row):
    cfg = compose_raw([f"experiment=table1/{row}"])
    expected = {
        "map": ("flat", "map"),
        "laplace": ("flat", "laplace"),
        "bootstrap": ("flat", "bootstrap"),
        "mcmc": ("flat", "mcmc"),
        "svi": ("flat", "svi"),
        "hier_svi": ("hier_noncentered", "svi"),
        "mcmc_shared_mean": ("shared_mean", "mcmc"),
    }[row]
    plan = validate(cfg)
    assert (plan.model.name.value, plan.inference_name) == expected
    assert cfg.row.id == row and cfg.row.label
    assert set(cfg.row.paper) == {"avg_confidence", "adversarial_error", "resampled_error"}


def test_hier_svi_row_gets_the_direction_scale_guide(compose_raw):
    cfg = compose_raw(["experiment=table1/hier_svi"])
    assert cfg.inference.guide == "direction_scale" and cfg.model.learn_prior


def sweeper_jobs(overrides: list[str], **settings) -> list[list[str]]:
    """The jobs Table 1's sweeper makes of these overrides (its params come first, as in
    Hydra's sweep), one batch."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate

    node = compose_hydra(["experiment=table1"]).hydra.sweeper
    sweeper = instantiate(node, **settings)
    params = [f"{k}={v}" for k, v in node.params.items()]
    parsed = OverridesParser.create().parse_overrides(params + overrides)
    (jobs,) = sweeper.split_arguments(parsed, None)
    return jobs


def seeds_of(jobs: list[list[str]]) -> dict[str, list[int]]:
    seeds: dict[str, list[int]] = {}
    for job in jobs:
        values = dict(assignment.lstrip("+").split("=", 1) for assignment in job)
        seeds.setdefault(values["experiment/table1"], []).append(int(values["seed"]))
    return seeds


def test_table1_runs_ten_seeds_of_the_cheap_rows_and_three_of_the_costly_ones():
    seeds = seeds_of(sweeper_jobs([]))
    assert set(seeds) == set(report.PAPER_ORDER)
    for row in ("map", "laplace", "bootstrap"):
        assert seeds[row] == list(range(10)), row
    for row in ("mcmc", "svi", "hier_svi", "mcmc_shared_mean"):
        assert seeds[row] == [0, 1, 2], row


def test_the_seeds_by_cost_sweeper_takes_the_first_swept_seeds_of_a_row():
    seeds = seeds_of(sweeper_jobs(["+experiment/table1=mcmc,map", "seed=7,3,5,9"]))
    assert seeds == {"mcmc": [7, 3, 5], "map": [7, 3, 5, 9]}
    assert seeds_of(sweeper_jobs(["seed=4"])) == {row: [4] for row in report.PAPER_ORDER}
    assert seeds_of(sweeper_jobs(["+experiment/table1=map"], seeds={"map": 2})) == {"map": [0, 1]}


@pytest.mark.parametrize(
    ("overrides", "cells"),
    [([], 42), (["seed=0"], 7), (["hydra.sweeper.params.seed='0,1,2,3'"], 24)],
)
def test_the_sweep_display_counts_the_cells_the_sweeper_runs(tmp_path, overrides, cells):
    """The sweep line's total ("3/42 cells finished") is what Table 1's sweeper launches (4 rows
    x 3 seeds + 3 rows x 10), not the grid of its params (70)."""
    from bayes_spheres.progress import SWEEP_CONFIG, sweep_size

    OmegaConf.save(compose_hydra(["experiment=table1", *overrides]), tmp_path / SWEEP_CONFIG)
    assert sweep_size(tmp_path) == cells


def test_the_seeds_by_cost_sweeper_refuses_a_count_that_is_not_a_positive_integer():
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match=r"seeds.mcmc=0.*integer >= 1"):
        sweeper_jobs([], seeds={"mcmc": 0})
    with pytest.raises(HydraException, match="'nonesuch', which this sweep does not set"):
        sweeper_jobs([], row="nonesuch")


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("local", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("submitit", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
        ("ray_cluster", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"),
    ],
)
def test_the_study_composes_with_each_launcher(launcher, target):
    cfg = compose_hydra(["experiment=table1", f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_ == target
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.callbacks.table1._target_ == "bayes_spheres.report.Table1Callback"


def test_slurm_launcher_settings():
    cfg = compose_hydra(["experiment=table1", "hydra/launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["cpus_per_task"] == 2 and launcher["timeout_min"] > 0
    assert launcher["submitit_folder"].startswith("${hydra.sweep.dir}")


def test_slurm_differs_from_the_local_submitit_launcher_only_in_scheduler_keys():
    """What runs through submitit locally (the slow test below) is what goes to SLURM: the
    same task settings; SLURM's file adds only what a scheduler needs."""
    local, slurm = (
        OmegaConf.to_container(
            compose_hydra(["experiment=table1", f"hydra/launcher={name}"]).hydra.launcher,
            resolve=False,
        )
        for name in ("submitit", "slurm")
    )
    shared = set(local) - {"_target_"}
    assert {k: slurm[k] for k in shared} == {k: local[k] for k in shared}
    ours = set(OmegaConf.load(CONF / "hydra" / "launcher" / "slurm.yaml")) - {"defaults"}
    assert ours - shared == {"partition", "account", "array_parallelism", "setup"}


@pytest.mark.slow
def test_a_sweep_through_submitit_runs_and_resumes(tmp_path):
    """Table 1 (two rows) through submitit's local executor: each cell pickled and run as
    its own job with its own log folder; every cell finished, the table built; a rerun
    submits again and every cell is skipped as finished, byte for byte."""
    res = sweep(tmp_path, launcher=["hydra/launcher=submitit"])
    assert res.returncode == 0, res.stderr[-3000:]
    root = tmp_path / "sweep"
    cells = sorted(root.glob("*/seed*/" + METRICS_FILE))
    assert len(cells) == 4 and "| MAP | 2 |" in (root / "table1.md").read_text()
    jobs = list((root / ".submitit").glob("*/*_log.out"))
    assert len(jobs) == 4, jobs  # one log per cell, in per-task folders
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cells}
    res = sweep(tmp_path, launcher=["hydra/launcher=submitit"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cells} == before
    assert len(list((root / ".submitit").glob("*/*_log.out"))) == 8


# Ray servers listen on the node's address; with this switch Ray takes 127.0.0.1 as the
# node's address, so a test cluster listens on the loopback interface only.
RAY_ON_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def ray_head(log: Path) -> Iterator[tuple[str, Path]]:
    """A one-node Ray cluster on 127.0.0.1 (``ray start --head --block`` in its own process
    group): yields its address and temp folder; stops the processes it started, by their
    process group, and nothing else."""
    ray = Path(sys.executable).with_name("ray")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    command = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--ray-client-server-port", str(_free_port()), "--num-cpus", "2",
        "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp),
        "--object-store-memory", str(200 * 2**20)]  # fmt: skip
    with log.open("w") as out:
        head = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **RAY_ON_LOOPBACK},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp
    finally:
        head.send_signal(signal.SIGTERM)  # ray start drains and stops its servers
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if _group_alive(head.pid):
            os.killpg(head.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _group_alive(head.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_through_a_ray_cluster_runs_every_cell_on_it(tmp_path, monkeypatch):
    """Table 1 (two rows) through ``hydra/launcher=ray_cluster`` on a Ray cluster started
    here: every cell ran as a Ray task (its log lines are in the cluster's worker logs),
    finished, and the table was built; the cluster is stopped afterwards."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the ray extra")
    with ray_head(tmp_path / "head.log") as (address, temp):
        for name, value in {**RAY_ON_LOOPBACK, "RAY_ADDRESS": address}.items():
            monkeypatch.setenv(name, value)
        res = sweep(tmp_path, launcher=["hydra/launcher=ray_cluster"])
        assert res.returncode == 0, res.stderr[-3000:]
        worker_logs = "".join(p.read_text() for p in temp.glob("session_*/logs/worker-*"))
    root = tmp_path / "sweep"
    cells = sorted(root.glob("*/seed*/" + METRICS_FILE))
    assert len(cells) == 4 and "| MAP | 2 |" in (root / "table1.md").read_text()
    assert f"'address': '{address}'" in res.stdout + res.stderr
    for cell in cells:
        assert f"wrote {cell}" in worker_logs


def test_ray_launcher_keys_are_the_plugins_schema():
    """hydra-ray-launcher (the ``ray`` extra; ``make test-slow`` installs it) takes
    ``ray.init`` and ``ray.remote`` (its RayLauncherConf); nothing else may be set."""
    cfg = compose_hydra(["experiment=table1", "hydra/launcher=ray_cluster"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert set(launcher) == {"_target_", "ray"}
    assert set(launcher["ray"]) == {"init", "remote"}


LOCAL_ONE_JOB = ("hydra.launcher.n_jobs=1",)


def sweep_command(tmp_path: Path, *extra: str, launcher=LOCAL_ONE_JOB) -> list[str]:
    return [sys.executable, "-m", "bayes_spheres.app",
        "experiment=table1",
        "scale=quick",
        "+experiment/table1=map,laplace",
        "seed=0,1",
        "data.n_val=500",
        "members=10",
        "restarts=4",
        "progress=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *launcher,
        "extra_attacks.simplex.vertex_starts=2",
        *extra,
    ]  # fmt: skip


def sweep(tmp_path: Path, *extra: str, launcher=LOCAL_ONE_JOB) -> subprocess.CompletedProcess:
    """The sweep in a process of its own, without this one's ``TQDM_DISABLE`` (the tests'
    own, tests/conftest.py), so that its config alone switches its bars."""
    return subprocess.run(
        sweep_command(tmp_path, *extra, launcher=launcher),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != BARS_OFF},
    )


def test_sweep_builds_the_table_and_a_rerun_only_finishes_missing_cells(tmp_path):
    # seeds by cost through the CLI: MAP takes the first two of the three swept seeds
    seeds_by_cost = ("seed=0,1,2", "+hydra.sweeper.seeds.map=2")
    res = sweep(tmp_path, *seeds_by_cost)
    assert res.returncode == 0, res.stderr[-3000:]
    root = tmp_path / "sweep"
    cells = sorted(root.glob("*/seed*/" + METRICS_FILE))
    assert [c.parent.relative_to(root).as_posix() for c in cells] == [
        "laplace/seed0", "laplace/seed1", "laplace/seed2", "map/seed0", "map/seed1"
    ]  # fmt: skip
    table = (root / "table1.md").read_text()
    assert "| MAP | 2 |" in table and "| Laplace | 3 |" in table
    assert "| simplex attack | strongest attack | best vertex | certified bound |" in table

    # A sweep killed midway: one cell never finished (no metrics.json), another finished.
    killed = root / "laplace" / "seed1" / METRICS_FILE
    killed.unlink()
    kept = root / "map" / "seed0" / METRICS_FILE
    before = {p: p.read_bytes() for p in cells if p != killed}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    res = sweep(tmp_path, *seeds_by_cost)
    assert res.returncode == 0, res.stderr[-3000:]
    assert killed.is_file()  # the missing cell was run again
    for p, content in before.items():  # finished cells were skipped, byte for byte
        assert p.read_bytes() == content and p.stat().st_mtime_ns == mtimes[p]
    assert kept.is_file()


def test_two_sweeps_on_one_folder_run_each_cell_once(tmp_path):
    """Two processes start the same sweep on one folder at once (two shells, or a resume
    while the first still runs): each cell is computed by one of them, the other waits for
    it and skips it; nothing finished is rewritten, and both build the same table."""
    command = sweep_command(tmp_path)
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=tmp_path) for _ in range(2)]  # fmt: skip
    logs = [p.communicate(timeout=600)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    root = tmp_path / "sweep"
    cells = sorted(p.parent for p in root.glob("*/seed*/" + METRICS_FILE))
    assert len(cells) == 4
    for cell in cells:
        written = sum(log.count(f"wrote {cell / METRICS_FILE}") for log in logs)
        assert written == 1, f"{cell} was computed {written} times"
    # the run's own files; Hydra appends each launch's log lines to app.log and saves the
    # job's config in .hydra/ at every launch, a skip included
    finished = {p: (p.read_bytes(), p.stat().st_mtime_ns) for c in cells for p in c.iterdir()
                if p.is_file() and p.name not in {LOCK_FILE, "app.log"}}  # fmt: skip
    assert {p.name for p in finished} >= {METRICS_FILE, "ensemble.npz", "posterior.nc"}
    res = sweep(tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished} == finished
    assert "sweep:" not in logs[0] + logs[1]  # progress=false silences the sweep's lines


def test_a_two_process_sweep_shows_lines_not_bars(tmp_path):
    """Two local processes share the terminal: no tqdm bars (their carriage returns), a line
    per stage naming its cell, and one sweep line per finished cell with the count."""
    res = sweep(tmp_path, "progress=true", "hydra.launcher.n_jobs=2",
                "+experiment/table1=map,svi", "seed=0")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "\r" not in out
    for cell in ("map/seed0", "svi/seed0"):
        assert f"{cell}: inference done in" in out
        assert re.search(rf"sweep: [12]/2 cells finished .* elapsed.*; {cell} took", out)
    assert re.search(r"sweep: 2/2 cells finished \(2 in this sweep\)", out)


EXPERIMENTS = sorted(
    str(p.relative_to(CONF / "experiment").with_suffix(""))
    for p in (CONF / "experiment").rglob("*.yaml")
)
TINY = [
    "scale=quick",
    "data.dim=6",
    "data.n_train=60",
    "data.n_val=200",
    "members=5",
    "restarts=3",
    "progress=false",
]


# Per sweep: its own values of keys (in place of TINY's). Figure 1's MCMC keeps every draw
# (at least 4 per chain for R-hat), and its middle and right panels are the 2-D problem.
EXTRA = {
    "table1": {"extra_attacks.simplex.vertex_starts": "extra_attacks.simplex.vertex_starts=1"},
    "figure1": {"members": "members=40", "data.dim": "data.dim=2"},
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_runs_at_quick_scale(tmp_path, experiment):
    """Each experiment config runs end to end at scale=quick (conf/scale_inference/ shrinks
    the iterative methods) and tiny data: a row as one run, a sweep (hydra.mode MULTIRUN)
    through the CLI with its swept sizes shrunk, callback included."""
    cfg = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")
    if OmegaConf.select(cfg, "hydra.mode") == "MULTIRUN":
        shrink = {"data.n_train": "data.n_train=40,80", "data.dim": "data.dim=4,6"}
        swept = [shrink[k] for k in cfg.hydra.sweeper.params if k in shrink]
        tiny = [a for a in TINY if a.split("=")[0] not in EXTRA.get(experiment, {})]
        args = [
            f"experiment={experiment}",
            *tiny,
            *swept,
            "seed=0",
            *EXTRA.get(experiment, {}).values(),
        ]
        args += [f"hydra.sweep.dir={tmp_path}", "hydra.launcher.n_jobs=1"]
        res = subprocess.run(
            [sys.executable, "-m", "bayes_spheres.app", *args],
            capture_output=True,
            text=True,
            timeout=1800,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert list(tmp_path.rglob(METRICS_FILE))
        written = "figure1.png" if experiment == "figure1" else "*.md"
        assert list(tmp_path.glob(written)), "the sweep's callback wrote nothing"
        return
    from bayes_spheres.pipeline import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        members = ["members=40"] if experiment.startswith("figure1/") else []
        cfg = hydra_compose("config", overrides=[f"experiment={experiment}", *TINY, *members])
    metrics = run(cfg, out_dir=tmp_path)
    assert metrics["row"]["id"] == experiment.split("/")[-1]
