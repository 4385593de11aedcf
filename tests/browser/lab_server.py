"""A JupyterLab server on a temporary copy of the course, for the real-browser test.

The server serves a copy of the repository (the working tree is never touched), with no token,
fast mode in every kernel, and settings and workspaces of its own, so neither the learner's
JupyterLab settings nor a saved layout change what the test sees.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the copy leaves out: environments, caches, and what earlier runs wrote.
NOT_COPIED = (".venv", ".git", "test-output", "__pycache__", "*.egg-info", ".pytest_cache", "runs", "build", ".ipynb_checkpoints")
# JupyterLab settings, one file per plugin: every cell in the page (JupyterLab 4 otherwise leaves
# cells out of view out of the DOM), and no news or update pop-ups over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
}
SERVER_START_TIMEOUT_S = 120


def free_port() -> int:
    """A localhost port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_course(dest: Path) -> Path:
    """Copy the repository to ``dest`` and give its notebooks this interpreter's Python version.

    ``language_info.version`` is the one field of the committed metadata that depends on the
    learner's machine: JupyterLab writes the kernel's exact Python version there when the kernel
    starts, marking the notebook modified if it differs.  The copy carries this machine's, so the
    test checks that every other field is exactly what JupyterLab writes."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*NOT_COPIED))
    for path in (dest / "notebooks").glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        book.metadata.setdefault("language_info", {})["version"] = platform.python_version()
        nbformat.write(book, path)
    return dest


def write_lab_settings(settings_dir: Path) -> None:
    """Write ``LAB_SETTINGS`` where JupyterLab reads user settings (``JUPYTERLAB_SETTINGS_DIR``)."""
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@dataclass
class Lab:
    """A running JupyterLab server: its address, the copy it serves, its log."""

    url: str
    root: Path
    log: Path
    process: subprocess.Popen

    def notebook_path(self, name: str) -> Path:
        return self.root / "notebooks" / name

    def shutdown_kernels(self) -> None:
        """Stop every kernel (the next notebook starts with the machine's memory free)."""
        with urllib.request.urlopen(f"{self.url}/api/kernels") as reply:
            kernels = json.load(reply)
        for kernel in kernels:
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/api/kernels/{kernel['id']}", method="DELETE"))

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_lab(root: Path, home: Path) -> Lab:
    """Start this interpreter's JupyterLab on a free port, serving ``root``; wait until it answers."""
    port = free_port()
    env = {
        **os.environ,
        "PPO_TEACH_FAST": "1",  # kernels inherit it
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),  # none of the learner's server configuration
        "JUPYTER_DATA_DIR": str(home / "data"),  # nor kernels installed for the learner's user
    }
    write_lab_settings(home / "settings")
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
        # Localhost only and no authentication: the REST calls that stop kernels need no XSRF cookie.
        "--ServerApp.disable_check_xsrf=True",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "jupyterlab.log"
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", root, log, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {process.returncode}:\n{lab.log_tail()}", pytrace=False)
        try:
            urllib.request.urlopen(f"{lab.url}/api/status", timeout=2)
            return lab
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n{lab.log_tail()}", pytrace=False)


def stop(process: subprocess.Popen) -> None:
    """Stop the server as Ctrl-C would (it shuts its kernels down), killing it if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
