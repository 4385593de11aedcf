"""The course's own tools: the Colab set-up cell (executed in a faked Colab), publishing the course
at an address, the device note, and the clean-notebook check."""
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from ppo_teach import course

ROOT = Path(__file__).resolve().parent.parent
GIT_USER = ["-c", "user.name=course test", "-c", "user.email=test@example.com"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its output (failing the test if git fails)."""
    return subprocess.run(["git", "-C", str(cwd), *GIT_USER, *args], check=True, capture_output=True, text=True).stdout


def commit_file(repo: Path, name: str, text: str) -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "--quiet", "-m", f"add {name}")


# --------------------------------------------------------------------------------------
# The Colab set-up cell, executed as Colab would: google.colab importable, a repository to
# clone (a local one here), a folder for the clone (a temporary one instead of /content), and
# pip (a stand-in that records its arguments: the real install runs in `make test-colab`).
# --------------------------------------------------------------------------------------

FAKE_PIP = '''import json, os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_PIP_FAILS"):
    print("ERROR: no matching distribution (the fake pip fails on purpose)")
    sys.exit(1)
'''


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """A faked Colab: returns (source repository's URL, the clone's folder, the pip log)."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    source = tmp_path / "origin"
    source.mkdir()
    git(source, "init", "--quiet", "--initial-branch=main")
    commit_file(source, "ppo_teach/__init__.py", "")
    (tmp_path / "fake" / "pip").mkdir(parents=True)
    (tmp_path / "fake" / "pip" / "__init__.py").write_text("")
    (tmp_path / "fake" / "pip" / "__main__.py").write_text(FAKE_PIP)  # the repository has no pyproject: a real pip would fail
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.setenv("FAKE_PIP_LOG", str(tmp_path / "pip.log"))
    return f"file://{source}", tmp_path / "content" / "ppo_teach", tmp_path / "pip.log"


def run_setup_cell(repo_url: str, course_dir: Path) -> None:
    exec(course.colab_setup(repo_url, str(course_dir)), {})


def pip_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_setup_cell_clones_and_installs_quietly(colab, capsys, monkeypatch):
    repo_url, course_dir, log = colab
    monkeypatch.delitem(sys.modules, "ppo_teach.course")  # as on Colab, where nothing of the course is imported yet
    monkeypatch.delitem(sys.modules, "ppo_teach")
    run_setup_cell(repo_url, course_dir)
    assert (course_dir / "ppo_teach" / "__init__.py").exists()
    assert pip_calls(log) == [["install", "--quiet", "-e", str(course_dir)]]
    assert sys.path[0] == str(course_dir)
    assert capsys.readouterr().out == f"ppo_teach cloned from {repo_url} and installed.\n"


def test_rerunning_the_setup_cell_updates_the_clone(colab, capsys):
    repo_url, course_dir, log = colab
    run_setup_cell(repo_url, course_dir)
    commit_file(Path(repo_url.removeprefix("file://")), "notebooks/new.ipynb", "{}")
    run_setup_cell(repo_url, course_dir)
    assert (course_dir / "notebooks" / "new.ipynb").exists()
    assert len(pip_calls(log)) == 2 and sys.path.count(str(course_dir)) == 1
    out = capsys.readouterr().out
    assert f"ppo_teach updated from {repo_url} and installed." in out
    assert "Restart session" in out  # ppo_teach is imported in this process: the update needs a restart


def test_a_failed_clone_stops_naming_repo_url_and_how_to_set_it(colab):
    _, course_dir, log = colab
    bad_url = f"file://{course_dir.parent}/no-such-repository"
    with pytest.raises(RuntimeError, match="could not clone") as failure:
        run_setup_cell(bad_url, course_dir)
    assert f"REPO_URL = {bad_url!r}" in str(failure.value)
    assert "set REPO_URL at the top of this cell" in str(failure.value)
    assert "does not appear to be a git repository" in str(failure.value)  # git's own words are shown
    assert pip_calls(log) == []


def test_a_failed_install_stops_with_pips_output(colab, monkeypatch):
    repo_url, course_dir, _ = colab
    monkeypatch.setenv("FAKE_PIP_FAILS", "1")
    with pytest.raises(RuntimeError, match="could not install the course's package") as failure:
        run_setup_cell(repo_url, course_dir)
    assert "the fake pip fails on purpose" in str(failure.value)


def test_the_setup_cell_does_nothing_outside_colab(colab, capsys, monkeypatch):
    repo_url, course_dir, log = colab
    monkeypatch.delitem(sys.modules, "google.colab")
    run_setup_cell(repo_url, course_dir)
    assert not course_dir.exists() and pip_calls(log) == []
    assert capsys.readouterr().out == ""


def test_the_notebooks_setup_cell_is_the_template_with_the_course_values():
    assert course.COLAB_SETUP == course.colab_setup(course.REPO_URL, course.COLAB_DIR, course.BRANCH)
    assert f'REPO_URL = "{course.REPO_URL}"' in course.COLAB_SETUP
    assert "%pip" not in course.COLAB_SETUP and "!" not in course.COLAB_SETUP.replace("!=", "").replace("!r", "")


# --------------------------------------------------------------------------------------
# Publishing the course at an address: python -m ppo_teach.course
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://github.com/me/my-course",
    "https://github.com/me/my-course.git",
    "https://github.com/me/my-course/",
    "git@github.com:me/my-course.git",
    "ssh://git@github.com/me/my-course.git",
    "https://token@github.com/me/my-course.git\n",
])
def test_repository_addresses_are_normalised_to_https(url):
    assert course.normalise_repo_url(url) == "https://github.com/me/my-course"


@pytest.mark.parametrize("url", ["https://gitlab.com/me/my-course", "me/my-course", "https://github.com/me"])
def test_an_address_that_is_not_a_github_repository_is_refused(url):
    with pytest.raises(course.CourseError, match="GitHub"):
        course.normalise_repo_url(url)


def test_the_default_address_is_the_origin_remote(tmp_path):
    git(tmp_path, "init", "--quiet")
    with pytest.raises(course.CourseError, match="no git remote 'origin'.*--repo-url"):
        course.origin_url(tmp_path)
    git(tmp_path, "remote", "add", "origin", "git@github.com:me/my-course.git")
    assert course.origin_url(tmp_path) == "https://github.com/me/my-course"


@pytest.fixture
def checkout(tmp_path):
    """A copy of the README, the notebooks and this module, to publish without touching the repository."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copy(ROOT / "ppo_teach" / "course.py", tmp_path / "course.py")
    return tmp_path


def test_publishing_rewrites_the_repo_url_the_setup_cells_and_the_readme_table(checkout):
    assert course.publish("git@github.com:me/my-course.git", checkout, checkout / "course.py") == "https://github.com/me/my-course"
    assert 'REPO_URL = "https://github.com/me/my-course"\n' in (checkout / "course.py").read_text()
    readme = (checkout / "README.md").read_text()
    assert course.readme_table("https://github.com/me/my-course") in readme
    assert "ppo-teach/ppo_teach" not in readme
    assert readme.replace(course.readme_table("https://github.com/me/my-course"), "") == (ROOT / "README.md").read_text().replace(course.readme_table(), "")
    for nb in course.NOTEBOOKS:
        book = nbformat.read(checkout / "notebooks" / nb.file, as_version=4)
        assert next(c for c in book.cells if c.cell_type == "code").source == course.colab_setup("https://github.com/me/my-course")


def test_publishing_without_the_readme_markers_writes_nothing(checkout):
    (checkout / "README.md").write_text("# a README without the table's markers\n")
    before = (checkout / "course.py").read_text()
    with pytest.raises(course.CourseError, match="markers"):
        course.publish("https://github.com/me/my-course", checkout, checkout / "course.py")
    assert (checkout / "course.py").read_text() == before


def test_the_command_line_reports_a_missing_remote_clearly(monkeypatch, tmp_path, capsys):
    git(tmp_path, "init", "--quiet")
    monkeypatch.setattr(course, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as exit_:
        course.main([])
    assert exit_.value.code == 2 and "no git remote 'origin'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# The clean-notebook check reads what is committed (staged), not the learner's autosaved copy
# --------------------------------------------------------------------------------------


def test_a_notebook_run_and_autosaved_in_the_lab_does_not_fail_the_clean_check(tmp_path):
    """Friction as it was: JupyterLab autosaves the executed notebook, then `make test` failed on it.
    The check reads git's index, so the learner's saved outputs pass until they are staged."""
    from nbclient import NotebookClient

    repo, name = tmp_path / "course", "00_start_here.ipynb"
    (repo / "notebooks").mkdir(parents=True)
    notebook = repo / "notebooks" / name
    notebook.write_text(json.dumps(course.committed_notebook(ROOT / "notebooks" / name), indent=1))
    git(repo, "init", "--quiet")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "the course as published")

    book = nbformat.read(notebook, as_version=4)
    NotebookClient(book, timeout=600, resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    nbformat.write(book, notebook)  # what JupyterLab's autosave does
    assert course.cells_with_outputs(json.loads(notebook.read_text())), "the run should have left outputs in the file"
    assert course.cells_with_outputs(course.committed_notebook(notebook)) == []

    git(repo, "add", "notebooks")
    assert course.cells_with_outputs(course.committed_notebook(notebook)), "staged outputs must fail the check"
    git(repo, "commit", "--quiet", "-m", "outputs committed by mistake")
    assert course.cells_with_outputs(course.committed_notebook(notebook)), "committed outputs must fail the check"


def test_outside_a_git_checkout_the_clean_check_reads_the_file(tmp_path):
    notebook = tmp_path / "n.ipynb"
    cell = {"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [], "source": "1 + 2"}
    notebook.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# n"}, cell]}))
    assert course.cells_with_outputs(course.committed_notebook(notebook)) == [1]


# --------------------------------------------------------------------------------------
# The environment report's device note
# --------------------------------------------------------------------------------------


def test_on_a_gpu_the_report_says_cartpole_trains_on_the_cpu_and_rlhf_on_the_gpu():
    note = course.device_note(torch.device("cuda"))
    assert "CartPole notebooks (01–04) train on the CPU on purpose" in note
    assert "notebook 06 (RLHF) trains its language model on the CUDA" in note
    assert course.device_note(torch.device("cpu")) == "every notebook runs on the CPU"


def test_the_cartpole_networks_have_the_parameter_count_the_note_gives():
    from ppo_teach.nets import CategoricalPolicy

    policy = CategoricalPolicy(obs_dim=4, n_actions=2)
    assert sum(p.numel() for p in policy.parameters()) == 4_610
    assert "4,610 parameters" in course.device_note(torch.device("cuda"))
