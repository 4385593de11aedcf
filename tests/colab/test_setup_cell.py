"""The Colab set-up cell, run for real under Colab's pins: it installs quietly and changes none of them."""


def test_the_setup_cell_succeeds_and_prints_one_line(setup_cell_run):
    process = setup_cell_run.process
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    assert process.stdout in {
        f"ppo_teach cloned from {setup_cell_run.repo_url} and installed.\n",  # the first run in this environment
        f"ppo_teach updated from {setup_cell_run.repo_url} and installed.\n",  # later runs refresh the clone
    }


def test_the_setup_cell_changes_none_of_colabs_pinned_packages(setup_cell_run):
    assert setup_cell_run.before == setup_cell_run.pins
    assert setup_cell_run.after == setup_cell_run.pins
