# Two commands set everything up on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DATA_DIR ?=
DEVICE ?= auto
RETRAIN ?= False
SEEDS ?=

.PHONY: install test test-fast wheel-check lint reproduce sample lab clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name galaxylib --display-name "Python (galaxylib)" >/dev/null
	touch $@

install: $(VENV)/.installed

# every test, the slow end-to-end ones (papermill notebooks, training runs, torchrun) included: what CI runs
test: $(VENV)/.installed
	$(PY) -m pytest -q

# the same without the tests marked slow: for the edit-test loop
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# the package as users install it: wheel, fresh venv, `python -m galaxylib`, the API and plain papermill from
# another folder (CI runs it after the tests)
wheel-check: $(VENV)/.installed
	PYTHON=$(PYTHON) bash .ci/wheel_check.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check galaxylib tests benchmarks

reproduce: $(VENV)/.installed
	$(PY) -m galaxylib reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(filter True true 1 yes,$(RETRAIN)),--retrain) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(SEEDS),--seeds $(SEEDS))

# the baseline and CBAM, 3 seeds each, on the real Kaggle sample (100 fully labelled galaxies held out): tables
# only, into results/sample/ (no figures: the Kaggle pixels stay out of the repository)
SAMPLE_DIR ?= ../shared/data/gz_sample
SAMPLE_PROFILE ?= quick
sample: $(VENV)/.installed
	$(PY) -m galaxylib study --name sample --profile $(SAMPLE_PROFILE) --experiments baseline baseline_cbam --holdout 100 \
		--device $(DEVICE) --data-dir $(SAMPLE_DIR) $(SAMPLE_DIR)/extra_partial

# JupyterLab at the repository root (notebooks/ and results/), the project's kernel registered inside .venv
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab .
