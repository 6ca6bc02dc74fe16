"""Tables from run folders: collect ``metrics.json`` files and summarise them over seeds.

``bayes-spheres-report SWEEP_DIR`` (or the Hydra callback :class:`Table1Callback` at the end
of ``experiment=table1``) writes ``table1.md`` and ``table1.csv`` into the sweep folder;
:class:`Figure1Callback` draws Figure 1 at the end of ``experiment=figure1``. Nothing here
runs inference: every module reads run folders (``bayes_spheres/run_folder.py``).

Modules: ``runs.py`` (finding runs and grouping them), ``columns.py`` (what is read from a
run), ``summary.py`` (mean and standard error over seeds), ``markdown.py`` (a DataFrame as a
markdown table), ``table1.py``, ``readings.py``, ``scaling.py`` and ``stages.py`` (the tables),
``figure1.py`` (Figure 1), ``callbacks.py`` (Hydra callbacks) and ``cli.py`` (the command).
"""

from bayes_spheres.report.callbacks import Figure1Callback, ScalingCallback, Table1Callback
from bayes_spheres.report.cli import main
from bayes_spheres.report.columns import ATTACK_COLUMNS, COLUMNS
from bayes_spheres.report.readings import READINGS, readings_table
from bayes_spheres.report.runs import collect, group_by_setting, row_key
from bayes_spheres.report.scaling import scaling_rows, write_scaling
from bayes_spheres.report.summary import mean_se
from bayes_spheres.report.table1 import (
    PAPER_COLUMNS,
    PAPER_ORDER,
    READING_KEYS,
    readings_fit,
    table1_csv,
    table1_markdown,
    table1_rows,
    write_table1,
)

__all__ = [
    "ATTACK_COLUMNS",
    "COLUMNS",
    "PAPER_COLUMNS",
    "PAPER_ORDER",
    "READINGS",
    "READING_KEYS",
    "Figure1Callback",
    "ScalingCallback",
    "Table1Callback",
    "collect",
    "group_by_setting",
    "main",
    "mean_se",
    "readings_fit",
    "readings_table",
    "row_key",
    "scaling_rows",
    "table1_csv",
    "table1_markdown",
    "table1_rows",
    "write_scaling",
    "write_table1",
]
