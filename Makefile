# Every target creates .venv when missing and installs what it needs: a fresh clone needs
# only python3 (>= 3.11) and make. torch==2.13.0 goes in first: that pin is the CPU wheel;
# any other torch spec downloads several GB of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv study test test-slow lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: for now the MAP row at the paper's scale (D = 500, 1,000 / 100,000 points).
study: $(STAMP)
	$(BIN)/bayes-spheres inference=map scale=paper

# The CI suite (under 15 minutes on 2 cores): lint, then every test not marked slow.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
