# Two commands on a fresh machine:
#   make lab    set up the environment if missing, then open the course in JupyterLab
#   make test   set up the environment if missing, then run every test (unit tests + all notebooks)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Installed before the rest so pip does not pick the newest torch (several GB of CUDA wheels
# on Linux).  Any torch >= 2.4 works: `make lab TORCH=torch` takes the newest.
TORCH  ?= torch==2.13.0

.PHONY: lab test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Extra JupyterLab options, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`.  As root (in
# a container, say) JupyterLab refuses to start unless told --allow-root; we tell it only then.
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(ROOT_ARG) $(LAB_ARGS)

# Unit tests (full-budget learning claims included), then every notebook top to bottom in
# fast mode, in this environment's own interpreter.  One pytest run, one summary line.
test: $(STAMP)
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks --ignore=tests/colab --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

# The same without the slow full-budget tests: for quick iteration.
test-fast: $(STAMP)
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks --ignore=tests/colab -m "not slow" --nbval-lax --nbval-current-env -p no:cacheprovider

# The course under Colab's pins (tests/colab/requirements.txt: ipywidgets 7.7.1, IPython 7.34,
# ipykernel 6.17) in .venv-colab: the Colab set-up cell run for real (quiet, no pin changed),
# every notebook under nbval, every widget changed in a real kernel.  Colab ships Python 3.12 and
# its own torch; here $(COLAB_PYTHON) and $(TORCH) (a CPU wheel) stand in for them.
COLAB_PYTHON ?= $(PYTHON)
COLAB_VENV   := .venv-colab
COLAB_STAMP  := $(COLAB_VENV)/.installed

$(COLAB_STAMP): tests/colab/requirements.txt
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet "$(TORCH)" -r tests/colab/requirements.txt
	touch $(COLAB_STAMP)

.PHONY: test-colab
test-colab: $(COLAB_STAMP)
	PPO_TEACH_FAST=1 PYTHONPATH=$(CURDIR) $(COLAB_VENV)/bin/python -m pytest tests/colab notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m ppo_teach.bench reinforce --seeds 0-4

clean:
	rm -rf $(VENV) $(COLAB_VENV) *.egg-info .pytest_cache
