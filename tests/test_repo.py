"""The course's own rules: clean notebooks, one list of dependencies, README and Colab cells in sync."""
import re
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from ppo_teach import course, show
from ppo_teach.advantages import gae
from ppo_teach.config import pick_device

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebook_list_matches_the_notebooks_folder():
    assert [p.name for p in NOTEBOOKS] == [nb.file for nb in course.NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_or_execution_counts(path):
    dirty = course.cells_with_outputs(course.committed_notebook(path))
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_starts_with_the_colab_setup_cell(path):
    book = nbformat.read(path, as_version=4)
    first_code = next(c for c in book.cells if c.cell_type == "code")
    assert first_code.source == course.COLAB_SETUP, "run `python -m ppo_teach.course` to resync"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_carries_the_metadata_jupyterlab_writes_so_it_opens_unmodified(path):
    metadata = nbformat.read(path, as_version=4).metadata
    for key, value in course.NOTEBOOK_METADATA.items():
        assert metadata.get(key) == value, f"{path.name}: {key} differs; run `python -m ppo_teach.course`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_has_the_course_structure(path):
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "You will learn" in text and "## Summary" in text
    assert "show(" in text and "exercises.check_" in text


def test_readme_table_and_colab_links_come_from_the_one_repo_url():
    readme = (ROOT / "README.md").read_text()
    assert course.with_readme_table(readme, course.readme_table()) == readme, "README's notebook table is stale: run `python -m ppo_teach.course`"
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", readme)
    assert len(links) == len(course.NOTEBOOKS)
    assert all(link.startswith(course.REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")) for link in links)


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip_section if r != "-e ."}
    assert listed == declared, f"only in pyproject: {declared - listed}; only in environment.yml: {listed - declared}"
    assert "conda-forge" in env["channels"]


def test_installing_the_package_prints_no_warnings():
    """setuptools warned about the license as a TOML table; an SPDX string (setuptools >= 77) ends it.
    The build backend's output is what pip shows with -v (pip's own WARNING lines about this machine's
    package indexes are not the package's)."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--dry-run", "-v", "-e", str(ROOT)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    warnings = re.findall(r"\w*Warning\b.*", build.stdout + build.stderr)
    assert not warnings, warnings


def test_no_pins_that_colab_would_have_to_change():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if "==" in d or "<" in d]


def test_show_renders_highlighted_source():
    source = show(gae)
    assert source.code.startswith("def gae(") and "Generalized Advantage Estimation" in source.code
    assert "<span" in source._repr_html_()
    with pytest.raises(TypeError, match="show"):
        show(3)


def test_environment_report_names_versions_device_and_mode():
    report = course.environment_report()
    for word in ("torch", "gymnasium", "device", "mode"):
        assert word in report
    assert course.device_note(pick_device()[0]) in report
