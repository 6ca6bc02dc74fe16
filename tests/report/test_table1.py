"""The report: Table 1 from run folders (means, standard errors, the paper's numbers, the
bound gap, readings), its files and command, and the scaling table and plot."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_spheres import report
from bayes_spheres.run_folder import METRICS_FILE


def fake_run(root: Path, row: str, seed: int, adv: float, conf: float, resampled=None) -> None:
    paper = {"map": (1.0, 0.999, None), "mcmc": (0.976, 0.558, 0.205)}[row]
    out = root / row / f"seed{seed}"
    out.mkdir(parents=True)
    metrics = {
        "model": "flat",
        "inference": row,
        "seed": seed,
        "avg_confidence": conf,
        "adversarial_error": adv,
        "adversarial_error_max": adv + 0.2,
        "resampled_error": resampled,
        "adversarial_error_by_sphere": {
            "inner": {"mean": adv - 0.1, "max": adv},
            "outer": {"mean": adv + 0.1, "max": adv + 0.2},
        },
        "timings": {"data": 1.0, "inference": 2.0, "total": 3.5 + seed},
        "row": {
            "id": row,
            "label": row.upper(),
            "paper": dict(
                zip(("avg_confidence", "adversarial_error", "resampled_error"), paper, strict=True)
            ),
        },
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics))


def test_table1_rows_mean_standard_error_and_difference_from_the_paper(tmp_path):
    fake_run(tmp_path, "mcmc", 0, adv=0.5, conf=0.97, resampled=0.2)
    fake_run(tmp_path, "mcmc", 1, adv=0.7, conf=0.99, resampled=0.3)
    fake_run(tmp_path, "map", 0, adv=0.8, conf=1.0)
    rows = report.table1_rows(report.collect(tmp_path))
    assert [r["row"] for r in rows] == ["map", "mcmc"]  # the paper's order, not the folder's
    mcmc = rows[1]
    assert mcmc["seeds"] == [0, 1]
    assert mcmc["adversarial_error"] == pytest.approx(0.6)
    assert mcmc["adversarial_error_se"] == pytest.approx(0.1)  # sd 0.1414 / sqrt 2
    assert mcmc["diff_adversarial_error"] == pytest.approx(0.6 - 0.558)
    assert mcmc["resampled_error"] == pytest.approx(0.25)
    assert mcmc["adv_inner"] == pytest.approx(0.5) and mcmc["adv_outer"] == pytest.approx(0.7)
    assert mcmc["time_s"] == pytest.approx(4.0)
    map_row = rows[0]
    assert map_row["adversarial_error_se"] is None  # one seed: no error bar
    assert map_row["resampled_error"] is None and map_row["diff_resampled_error"] is None


def test_the_bound_gap_is_the_certified_bound_less_the_worst_point_found(tmp_path):
    fake_run(tmp_path, "mcmc", 0, adv=0.5, conf=0.97)
    path = tmp_path / "mcmc" / "seed0" / METRICS_FILE
    metrics = json.loads(path.read_text())
    metrics["adversarial_error_best"] = {
        "mean": 0.55,
        "max": 0.7,
        "by_sphere": {"inner": {"mean": 0.5, "max": 0.6}, "outer": {"mean": 0.6, "max": 0.7}},
    }
    metrics["worst_case_by_sphere"] = {
        sphere: {"best_vertex": 0.5, "certified_bound": bound, "members_bound": 1.0}
        for sphere, bound in (("inner", 0.9), ("outer", 1.0))
    }
    path.write_text(json.dumps(metrics))
    (row,) = report.table1_rows(report.collect(tmp_path))
    assert row["adv_best"] == pytest.approx(0.55)
    assert row["adv_best_max"] == pytest.approx(0.65)  # (0.6 + 0.7) / 2
    assert row["certified_bound"] == pytest.approx(0.95)
    assert row["bound_gap"] == pytest.approx(0.95 - 0.65)
    table = report.table1_markdown([row])
    assert "| strongest, worst point | bound - worst point |" in table and "| 0.300 |" in table


def test_readings_fit_measures_each_reading_against_the_paper(tmp_path):
    fake_run(tmp_path, "mcmc", 0, adv=0.5, conf=0.97)  # inner 0.4, outer 0.6, max 0.7
    fake_run(tmp_path, "map", 0, adv=0.8, conf=1.0)  # inner 0.7, outer 0.9, max 1.0
    fits = report.readings_fit(report.table1_rows(report.collect(tmp_path)))
    paper = {"map": 0.999, "mcmc": 0.558}
    expected = {
        "mean over both spheres (reported)": (abs(0.8 - paper["map"]) + abs(0.5 - 0.558)) / 2,
        "inner sphere": (abs(0.7 - paper["map"]) + abs(0.4 - 0.558)) / 2,
        "outer sphere": (abs(0.9 - paper["map"]) + abs(0.6 - 0.558)) / 2,
        "max over restarts": (abs(1.0 - paper["map"]) + abs(0.7 - 0.558)) / 2,
    }
    assert set(fits) == set(expected)
    for name, value in expected.items():
        assert fits[name] == (pytest.approx(value), 2)


def test_write_table1_makes_markdown_and_csv(tmp_path):
    fake_run(tmp_path, "mcmc", 0, adv=0.5, conf=0.97, resampled=0.2)
    fake_run(tmp_path, "mcmc", 1, adv=0.7, conf=0.99, resampled=0.3)
    text = report.write_table1(tmp_path)
    assert (tmp_path / "table1.md").read_text() == text
    line = next(ln for ln in text.splitlines() if ln.startswith("| MCMC"))
    assert "0.600 ± 0.100" in line and "0.558" in line and "+0.042" in line
    with open(tmp_path / "table1.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["row"] == "mcmc" and float(row["adversarial_error"]) == pytest.approx(0.6)
    assert row["seeds"] == "0 1"


def test_report_command_rebuilds_the_table_and_fails_clearly_on_an_empty_folder(tmp_path):
    fake_run(tmp_path, "map", 0, adv=0.8, conf=1.0)
    res = subprocess.run(
        [sys.executable, "-m", "bayes_spheres.report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "| MAP" in res.stdout and (tmp_path / "table1.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "bayes_spheres.report", str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "no finished run" in res.stderr


def test_scaling_rows_and_plot(tmp_path):
    """A row per (inference, D, N) with the mean and standard error over its seeds."""
    cells = (
        ("map", 250, 0, 0.9),
        ("map", 1000, 0, 0.5),
        ("map", 1000, 1, 0.7),
        ("mcmc", 250, 0, 0.4),
    )
    for inference, n, seed, adv in cells:
        out = tmp_path / inference / f"n{n}" / f"seed{seed}"
        out.mkdir(parents=True)
        metrics = {
            "model": "flat",
            "inference": inference,
            "seed": seed,
            "dim": 50,
            "n_train": n,
            "avg_confidence": 0.99,
            "adversarial_error": adv,
            "extra_attacks": {"simplex": {"adversarial_error": adv + 0.01}},
            "adversarial_error_best": {"mean": adv + 0.02},
            "worst_case_by_sphere": {
                "inner": {"best_vertex": adv, "certified_bound": 1.0},
                "outer": {"best_vertex": adv, "certified_bound": 0.9},
            },
        }
        (out / METRICS_FILE).write_text(json.dumps(metrics))
    rows = report.scaling_rows(report.collect(tmp_path))
    assert [(r["inference"], r["n_train"], r["seeds"]) for r in rows] == [
        ("map", 250, 1),
        ("map", 1000, 2),
        ("mcmc", 250, 1),
    ]
    assert rows[1]["adversarial_error"] == pytest.approx(0.6)
    assert rows[1]["adversarial_error_se"] == pytest.approx(0.1)  # stdev 0.1414 / sqrt(2)
    assert rows[1]["adv_simplex"] == pytest.approx(0.61)
    assert rows[1]["adv_best"] == pytest.approx(0.62)
    assert rows[0]["adversarial_error_se"] is None  # one seed: no standard error
    assert rows[0]["certified_bound"] == pytest.approx(0.95)
    md, png = report.write_scaling(tmp_path)
    text = md.read_text()
    assert "| map | 50 | 250 | 1 | 0.990 | 0.900 | 0.910 | 0.920 |" in text
    assert (
        "| map | 50 | 1000 | 2 | 0.990 ± 0.000 | 0.600 ± 0.100 | 0.610 ± 0.100 | 0.620 ± 0.100 |"
        in text
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
