"""`make`'s set-up: PyTorch from its CPU index on Linux without an NVIDIA GPU, falling back to the
default index when that cannot be reached; clear messages when Python or its venv module is missing."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None or sys.platform != "linux", reason="needs make on Linux")


def fake_program(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def make(tmp_path: Path, *args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    """Run the set-up target with the environment under ``tmp_path`` instead of ``.venv``."""
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    venv = tmp_path / "venv"
    return subprocess.run(
        ["make", "-B", f"{venv}/.installed", f"VENV={venv}", f"STAMP={venv}/.installed", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_torch_comes_from_the_cpu_index_only_without_an_nvidia_gpu(tmp_path):
    dry = make(tmp_path, "-n")
    assert "--index-url https://download.pytorch.org/whl/cpu" in dry.stdout
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    fake_program(gpu, "nvidia-smi", "exit 0")
    dry = make(tmp_path, "-n", path_prefix=gpu)
    assert "download.pytorch.org" not in dry.stdout and '-m pip install --quiet "torch==2.13.0"' in dry.stdout


def test_an_unreachable_cpu_index_falls_back_to_the_default_index(tmp_path):
    """A stand-in for the environment's python records each pip call and fails the one that names
    the CPU index, as pip does when that index cannot be reached."""
    log = tmp_path / "calls.log"
    pip = fake_program(tmp_path, "python", f'echo "$*" >> {log}\ncase "$*" in *--index-url*) exit 1;; esac')
    done = make(tmp_path, f"PY={pip}", "TORCH_CPU_INDEX=http://127.0.0.1:9/")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 3
    assert "--index-url http://127.0.0.1:9/" in calls[0] and "--timeout 5 --retries 0" in calls[0]
    assert calls[1] == "-m pip install --quiet torch==2.13.0"
    assert calls[2] == "-m pip install --quiet -e .[dev]"
    assert "cannot be reached: installing torch==2.13.0 from the default index" in done.stdout


def test_a_missing_venv_module_names_the_debian_package(tmp_path):
    python = fake_program(tmp_path, "python3", 'case "$*" in *venv*) echo "ensurepip is not available" >&2; exit 1;; esac')
    failed = make(tmp_path, f"PYTHON={python}")
    assert failed.returncode != 0
    assert "sudo apt-get install python3-venv" in failed.stdout


def test_a_python_older_than_3_10_is_named(tmp_path):
    python = fake_program(tmp_path, "python3", "exit 1")
    failed = make(tmp_path, f"PYTHON={python}")
    assert failed.returncode != 0 and "needs Python >= 3.10" in failed.stdout


def test_make_lab_serves_the_repository_root_and_opens_notebook_00():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "lab", "LAB_ARGS=--no-browser"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    command = next(line for line in dry.stdout.splitlines() if "jupyter lab" in line)
    assert f'--ServerApp.root_dir="{ROOT}"' in command and "notebooks/00_start_here.ipynb" in command
    assert command.endswith("--no-browser")
