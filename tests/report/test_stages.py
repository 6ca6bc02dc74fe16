"""``bayes-spheres-report DIR --stages``: seconds per stage and row from the runs' timings."""

from __future__ import annotations

import json
import subprocess
import sys

from bayes_spheres.report import collect
from bayes_spheres.report.stages import stages_table


def write_run(folder, row, seed, timings):
    folder.mkdir(parents=True)
    run = {"model": "flat", "inference": row, "seed": seed, "row": {"id": row, "label": row},
           "timings": timings}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(run))


def test_stages_are_the_mean_over_a_rows_cells_and_the_sum_over_all(tmp_path):
    write_run(
        tmp_path / "mcmc" / "seed0", "mcmc", 0, {"inference": 10.0, "attack": 2.0, "total": 12.5}
    )
    write_run(
        tmp_path / "mcmc" / "seed1", "mcmc", 1, {"inference": 20.0, "attack": 4.0, "total": 24.5}
    )
    write_run(tmp_path / "map" / "seed0", "map", 0, {"inference": 1.0, "total": 1.5})
    lines = stages_table(collect(tmp_path)).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["row", "cells", "attack", "inference", "total"]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in lines[2:]}  # fmt: skip
    assert cells["mcmc"][1:] == ["2", "3.0", "15.0", "18.5"]
    assert cells["map"][1:] == ["1", "0.0", "1.0", "1.5"]  # a stage a row never ran: 0
    assert cells["all cells (sum)"][1:] == ["3", "6", "31", "38"]


def test_the_command_prints_it_and_names_an_empty_folder(tmp_path):
    write_run(tmp_path / "map" / "seed0", "map", 0, {"inference": 1.0, "total": 1.5})
    command = [sys.executable, "-m", "bayes_spheres.report", "--stages"]
    res = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "| map | 1 | 1.0 | 1.5 |" in res.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    res = subprocess.run([*command, str(empty)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and str(empty) in res.stderr
