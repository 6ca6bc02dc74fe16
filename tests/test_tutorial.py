"""docs/tutorial.md runs: its Python code blocks, in order, at a small budget in the default
suite and at the page's own budget in the slow suite (so the page cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BUDGET = "chains, warmup, draws = 4, 500, 1500"


def tutorial_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    return "\n".join(blocks)


def test_the_page_sets_its_budget_once():
    """The quick run below replaces this line: if the page changes it, the test must too."""
    assert tutorial_code().count(BUDGET) == 1


def run_tutorial(budget: str, capsys) -> str:
    code = tutorial_code().replace(BUDGET, budget)
    exec(compile(code, str(PAGE), "exec"), {"__name__": "tutorial"})
    return capsys.readouterr().out


def test_the_tutorial_runs_at_a_small_budget(capsys):
    out = run_tutorial("chains, warmup, draws = 2, 5, 5", capsys)
    assert "R-hat at most" in out and "standard errors" in out
    assert "target_accept=1.5: must be a number in (0, 1)" in out


@pytest.mark.slow
def test_the_tutorial_runs_and_matches_the_reference(capsys):
    out = run_tutorial(BUDGET, capsys)
    worst = max(float(z) for z in re.findall(r"= ([0-9.]+) standard errors", out))
    assert worst < 5.0, out
    rhat = float(re.search(r"R-hat at most ([0-9.]+)", out)[1])
    assert rhat < 1.01, out
