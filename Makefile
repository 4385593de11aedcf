# Two commands on a fresh machine:
#   make lab    set up the environment if missing, then open the course in JupyterLab
#   make test   set up the environment if missing, then run every test (unit tests + all notebooks)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# PyTorch is installed first, pinned, so that nothing later pulls a newer one.  Any torch >= 2.4
# works: `make lab TORCH=torch` takes the newest.
TORCH  ?= torch==2.13.0
# On Linux, PyPI's torch is the CUDA build (about twenty nvidia-* packages, several GB) even on a
# machine without an NVIDIA GPU.  There we ask PyTorch's CPU index first (about 200 MB) and fall
# back to the default index within seconds if it cannot be reached.  With an NVIDIA GPU
# (nvidia-smi on the PATH), on macOS and on Windows the default index is the right one.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
CPU_ONLY_LINUX  := $(if $(filter Linux,$(shell uname -s)),$(if $(shell command -v nvidia-smi),,yes))
# $(call install_torch,PYTHON) installs $(TORCH) into the environment of that python.
ifeq ($(CPU_ONLY_LINUX),yes)
install_torch = $(1) -m pip install --quiet --timeout 5 --retries 0 --index-url $(TORCH_CPU_INDEX) "$(TORCH)" || \
  { echo "PyTorch's CPU index cannot be reached: installing $(TORCH) from the default index"; $(1) -m pip install --quiet "$(TORCH)"; }
else
install_torch = $(1) -m pip install --quiet "$(TORCH)"
endif

.PHONY: lab test test-fast test-browser test-colab chromium bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || \
	  { echo "ppo_teach needs Python >= 3.10: install it, or point make at it: make lab PYTHON=/path/to/python3.12"; exit 1; }
	@$(PYTHON) -m venv --clear $(VENV) || \
	  { echo "Could not create $(VENV). On Debian/Ubuntu install the venv module first: sudo apt-get install python3-venv"; exit 1; }
	$(call install_torch,$(PY))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Extra JupyterLab options, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`.  As root (in
# a container, say) JupyterLab refuses to start unless told --allow-root; we tell it only then.
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" notebooks/00_start_here.ipynb $(ROOT_ARG) $(LAB_ARGS)

# Unit tests (full-budget learning claims included), then every notebook top to bottom in
# fast mode, in this environment's own interpreter.  One pytest run, one summary line.
test: $(STAMP)
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks --ignore=tests/browser --ignore=tests/colab --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

# The same without the slow full-budget tests: for quick iteration.
test-fast: $(STAMP)
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks --ignore=tests/browser --ignore=tests/colab -m "not slow" --nbval-lax --nbval-current-env -p no:cacheprovider

# The course in a real browser: JupyterLab runs every notebook (fast mode) in headless Chromium
# driven by Playwright, sliders moved with the keyboard, buttons clicked; screenshots of each state
# in test-output/browser/.  Adds Playwright (PyPI) to .venv; uses $(CHROMIUM), Debian's
# /usr/bin/chromium or one on the PATH (no browser download), else installs Chromium with apt-get
# where it may (as root or with passwordless sudo) and otherwise says what to install.
CHROMIUM ?=
PLAYWRIGHT := $(VENV)/.playwright

$(PLAYWRIGHT): $(STAMP)
	$(PY) -m pip install --quiet playwright
	touch $(PLAYWRIGHT)

chromium:
	@if [ -n "$(CHROMIUM)" ] || [ -x /usr/bin/chromium ] \
	   || { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	else echo "make test-browser needs Chromium: on Debian/Ubuntu run 'sudo apt-get install chromium'," \
	          "or set CHROMIUM=/path/to/chrome (any Chromium or Chrome)" >&2; exit 1; fi

test-browser: $(PLAYWRIGHT) chromium
	CHROMIUM="$(CHROMIUM)" PPO_TEACH_REQUIRE_BROWSER=1 $(PY) -m pytest tests/browser -p no:cacheprovider

# The course under Colab's pins (tests/colab/requirements.txt: ipywidgets 7.7.1, IPython 7.34,
# ipykernel 6.17) in .venv-colab: the Colab set-up cell run for real (quiet, no pin changed),
# every notebook under nbval, every widget changed in a real kernel.  Colab ships Python 3.12 and
# its own torch; here $(COLAB_PYTHON) and $(TORCH) (a CPU wheel) stand in for them.
COLAB_PYTHON ?= $(PYTHON)
COLAB_VENV   := .venv-colab
COLAB_STAMP  := $(COLAB_VENV)/.installed

$(COLAB_STAMP): tests/colab/requirements.txt
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(call install_torch,$(COLAB_VENV)/bin/python)
	$(COLAB_VENV)/bin/python -m pip install --quiet -r tests/colab/requirements.txt
	touch $(COLAB_STAMP)

test-colab: $(COLAB_STAMP)
	PPO_TEACH_FAST=1 PYTHONPATH=$(CURDIR) $(COLAB_VENV)/bin/python -m pytest tests/colab notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m ppo_teach.bench reinforce --seeds 0-4

clean:
	rm -rf $(VENV) $(COLAB_VENV) *.egg-info .pytest_cache
