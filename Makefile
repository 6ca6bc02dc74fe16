# Every target creates .venv when missing and installs what it needs: a fresh clone needs
# only python3 (>= 3.11) and make. torch==2.13.0 goes in first: that pin is the CPU wheel;
# any other torch spec downloads several GB of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: venv study study-one-seed figure scaling test test-slow docs docs-serve lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: Table 1 (7 rows at the paper's scale, 10 seeds of the cheap rows and 3 of the
# costly ones, 2 local processes), then
# table1.md and table1.csv in outputs/table1/paper/; then Figure 1's four fits and
# figure1.png in outputs/figure1/paper/. Rerunning resumes both.
study: $(STAMP)
	$(BIN)/bayes-spheres experiment=table1
	$(BIN)/bayes-spheres experiment=figure1

# One seed of Table 1 (the 10-minute version), in its own folder.
study-one-seed: $(STAMP)
	$(BIN)/bayes-spheres experiment=table1 seed=0 hydra.sweep.dir=outputs/table1/paper-seed0

figure: $(STAMP)
	$(BIN)/bayes-spheres experiment=figure1

# Beyond the paper: adversarial error against the training-set size and D (scaling.png).
scaling: $(STAMP)
	$(BIN)/bayes-spheres experiment=scaling

# The CI suite (under 15 minutes on 2 cores): lint, then every test not marked slow, one
# pytest-xdist worker per core (each test uses one torch thread: tests/conftest.py).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -n auto

# The slow tests include a sweep on a local Ray cluster: they need the ray extra.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(RAY_STAMP)

test-slow: $(RAY_STAMP)
	$(BIN)/python -m pytest -m slow

# The documentation site (mkdocs.yml) in site/, built strictly: a broken link, anchor or
# reference fails. Its packages are in the test extra, so the venv of `make test` has them.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	$(BIN)/mkdocs serve --strict

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
