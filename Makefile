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
ifeq ($(CPU_ONLY_LINUX),yes)
INSTALL_TORCH = $(PY) -m pip install --quiet --timeout 5 --retries 0 --index-url $(TORCH_CPU_INDEX) "$(TORCH)" || \
  { echo "PyTorch's CPU index cannot be reached: installing $(TORCH) from the default index"; $(PY) -m pip install --quiet "$(TORCH)"; }
else
INSTALL_TORCH = $(PY) -m pip install --quiet "$(TORCH)"
endif

.PHONY: lab test test-fast bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || \
	  { echo "ppo_teach needs Python >= 3.10: install it, or point make at it: make lab PYTHON=/path/to/python3.12"; exit 1; }
	@$(PYTHON) -m venv --clear $(VENV) || \
	  { echo "Could not create $(VENV). On Debian/Ubuntu install the venv module first: sudo apt-get install python3-venv"; exit 1; }
	$(INSTALL_TORCH)
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
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

# The same without the slow full-budget tests: for quick iteration.
test-fast: $(STAMP)
	PPO_TEACH_FAST=1 $(PY) -m pytest tests notebooks -m "not slow" --nbval-lax --nbval-current-env -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m ppo_teach.bench reinforce --seeds 0-4

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
