"""`make test-colab`: the course in an environment with Colab's pins (requirements.txt here).

The session starts by running the Colab set-up cell for real, as on Colab: the cell as notebook
00 holds it, with google.colab faked, this repository (its committed HEAD) as REPO_URL, and a
folder inside the environment in place of /content.  It installs the package and its dependencies; the notebooks then run (under nbval
and in test_widgets) against the working tree, which the Makefile puts on PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")\n'


def setup_cell(repo_url: str, course_dir: Path, branch: str) -> str:
    """Notebook 00's Colab set-up cell with another repository, folder and branch.  (Read from the
    notebook, not rendered by ppo_teach.course: the package's dependencies are not installed yet.)"""
    book = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text())
    cell = "".join(next(c for c in book["cells"] if c["cell_type"] == "code")["source"])
    for pattern, line in [
        (r'^REPO_URL = "[^"]*"', f'REPO_URL = "{repo_url}"'),
        (r'^    COURSE_DIR, BRANCH = "[^"]*", "[^"]*"$', f'    COURSE_DIR, BRANCH = "{course_dir}", "{branch}"'),
    ]:
        cell, count = re.subn(pattern, line, cell, flags=re.M)
        assert count == 1, f"the set-up cell has no line matching {pattern!r}: update this test with ppo_teach.course"
    return cell


def colab_pins() -> dict[str, str]:
    """Package → version for every ``name==version`` line of requirements.txt, and torch as installed
    by the Makefile (Colab ships its own torch: the set-up cell must not replace it either)."""
    pins = dict(re.findall(r"^([\w.-]+)==([\w.]+)$", REQUIREMENTS.read_text(), flags=re.M))
    return pins | {"torch": version("torch")}


def installed_versions(names: list[str]) -> dict[str, str]:
    return {name: version(name) for name in names}


def current_branch(root: Path = ROOT) -> str:
    branch = subprocess.run(["git", "-C", str(root), "branch", "--show-current"], capture_output=True, text=True).stdout.strip()
    if not branch:
        pytest.fail(f"{root} is not on a branch (a detached HEAD?): the set-up cell clones a branch. Check one out.")
    return branch


@dataclass
class SetupRun:
    """What running the Colab set-up cell printed, and Colab's pins before and after it."""

    process: subprocess.CompletedProcess
    repo_url: str
    pins: dict[str, str]
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="session")
def setup_cell_run() -> SetupRun:
    pins = colab_pins()
    before = installed_versions(list(pins))
    repo_url = f"file://{ROOT}"
    cell = setup_cell(repo_url, Path(sys.prefix) / "content" / "ppo_teach", current_branch())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as on Colab: nothing of the course importable yet
    process = subprocess.run([sys.executable, "-c", FAKE_COLAB + cell], capture_output=True, text=True, env=env, timeout=1800)
    return SetupRun(process, repo_url, pins, before, installed_versions(list(pins)))
