"""``grid``: independent runs in worker processes give exactly the sequential results; a failing run is
named; Ctrl-C stops the workers and returns what finished; bad ``workers`` values are refused clearly."""
import copy
import multiprocessing
import operator
import os
import signal
import sys
import threading
import time
from functools import partial

import pytest
import torch

from ppo_teach import bench, grid, ppo
from ppo_teach.errors import ConfigError


def same_history(a, b) -> None:
    assert (a.seed, a.config) == (b.seed, b.config)
    assert a.updates == b.updates
    assert a.distributions == b.distributions
    assert a.episodes.lengths == b.episodes.lengths and a.episodes.returns == b.episodes.returns
    assert (a.eval_steps, a.eval_returns) == (b.eval_steps, b.eval_returns)
    assert (a.steps_to_solve, a.final_sampled_return) == (b.steps_to_solve, b.final_sampled_return)
    for net in ("policy", "value"):
        for p, q in zip(a.models[net].parameters(), b.models[net].parameters(), strict=True):
            assert torch.equal(p, q)


def test_two_workers_return_exactly_the_sequential_histories():
    configs = [ppo.PPOConfig(seed=seed, total_steps=3_000, eval_every=1_000, final_eval_episodes=5) for seed in (0, 1, 2)]
    sequential = grid.train_runs(ppo.train, configs, workers=1, progress=False)
    parallel = grid.train_runs(ppo.train, configs, workers=2, progress=False)
    assert [h.seed for h in parallel] == [0, 1, 2]
    for a, b in zip(sequential, parallel, strict=True):
        same_history(a, b)
    assert sequential[0].updates != sequential[1].updates  # the seeds differ, so the comparison means something


def test_a_solve_grid_gives_the_same_steps_to_solve_with_any_number_of_workers():
    runs = {"ppo": ("ppo", {"total_steps": 10_000}), "ppo, 2 epochs": ("ppo", {"total_steps": 10_000, "update_epochs": 2})}
    seen = []
    one = bench.solve_grid(runs, [0, 1], progress=False, workers=1)
    two = bench.solve_grid(runs, [0, 1], on_result=lambda label, r: seen.append((label, r.seed)), progress=False, workers=2)
    assert list(two) == list(one) == ["ppo", "ppo, 2 epochs"]
    for label in runs:
        assert [(r.seed, r.steps_to_solve, r.sampled_return) for r in two[label]] == [
            (r.seed, r.steps_to_solve, r.sampled_return) for r in one[label]]
    assert sorted(seen) == sorted((label, seed) for label in runs for seed in (0, 1))


def test_a_failing_run_is_named_with_its_error_and_the_finished_runs_kept():
    runs = {"fine": partial(operator.add, 1, 2), "broken": partial(operator.truediv, 1, 0)}
    for workers in (1, 2):
        with pytest.raises(grid.RunFailed, match="the run 'broken' failed: ZeroDivisionError: division by zero") as failed:
            grid.run_grid(runs, workers=workers, progress=False)
        assert failed.value.label == "broken"
        if workers == 1:
            assert failed.value.finished == {"fine": 3}
            assert isinstance(failed.value.__cause__, ZeroDivisionError)  # %debug reaches the run's own frame
        else:
            assert failed.value.finished in ({}, {"fine": 3})
            assert "Traceback" in "".join(failed.value.__notes__)


def test_a_result_that_cannot_be_sent_back_is_that_runs_failure():
    with pytest.raises(grid.RunFailed, match="the run 'lock' failed: TypeError: cannot pickle '_thread.lock' object"):
        grid.run_grid({"lock": partial(threading.Lock), "fine": partial(operator.add, 1, 2)}, workers=2, progress=False)


def test_a_worker_that_dies_is_reported_and_does_not_hang():
    start = time.perf_counter()
    with pytest.raises(grid.RunFailed, match="a worker process died while the grid ran these runs: .*'dies'"):
        grid.run_grid({"dies": partial(os._exit, 3), "waits": partial(time.sleep, 0.5)}, workers=2, progress=False)
    assert time.perf_counter() - start < 60
    assert not multiprocessing.active_children()


def test_ctrl_c_stops_the_workers_and_returns_the_runs_that_finished():
    runs = {"quick": partial(operator.mul, 6, 7), "slow": partial(time.sleep, 60), "slower": partial(time.sleep, 120)}
    workers = []

    def interrupt(label, result):  # Ctrl-C as soon as the first run is in, the other two still running
        workers.extend(multiprocessing.active_children())
        os.kill(os.getpid(), signal.SIGINT)

    start = time.perf_counter()
    finished = grid.run_grid(runs, workers=3, progress=False, on_result=interrupt)
    assert finished == {"quick": 42}
    assert time.perf_counter() - start < 30
    assert len(workers) == 3 and not any(w.is_alive() for w in workers)


def test_an_interrupted_training_in_the_kernel_stops_the_grid():
    interrupted = ppo.train(ppo.PPOConfig(total_steps=1_000), progress=False)
    interrupted.interrupted = True
    runs = {"first": partial(operator.add, 0, 1), "interrupted": partial(copy.copy, interrupted), "never": partial(operator.add, 0, 2)}
    assert grid.run_grid(runs, workers=1, progress=False) == {"first": 1}


@pytest.mark.parametrize("workers", [0, -2, 1.5, True, "2"])
def test_bad_worker_counts_are_refused_clearly(workers):
    with pytest.raises(ConfigError, match=f"workers = {workers!r} is not a number of worker processes. Fix: use an integer ≥ 1"):
        grid.run_grid({"a": partial(operator.add, 1, 1)}, workers=workers, progress=False)


def test_the_environment_variable_sets_the_default_and_is_checked(monkeypatch):
    monkeypatch.setenv(grid.WORKERS_ENV_VAR, "3")
    assert grid.check_workers(None) == 3
    monkeypatch.setenv(grid.WORKERS_ENV_VAR, "two")
    with pytest.raises(ConfigError, match="PPO_TEACH_WORKERS = 'two' is not an integer"):
        grid.check_workers(None)
    monkeypatch.setenv(grid.WORKERS_ENV_VAR, "0")
    with pytest.raises(ConfigError, match="the environment variable PPO_TEACH_WORKERS = 0 is not a number of worker processes"):
        grid.check_workers(None)
    monkeypatch.delenv(grid.WORKERS_ENV_VAR)
    assert grid.check_workers(None) == grid.available_cores()


def test_a_run_that_cannot_be_sent_to_a_worker_is_named(monkeypatch):
    with pytest.raises(ConfigError, match="the run 'lambda' cannot be sent to a worker process .* or pass workers=1"):
        grid.run_grid({"lambda": lambda: 1, "other": partial(operator.add, 1, 1)}, workers=2, progress=False)
    assert grid.run_grid({"lambda": lambda: 1}, workers=1, progress=False) == {"lambda": 1}

    def in_a_cell():  # a function of a notebook: it pickles by name, but no worker can import it
        return 1

    in_a_cell.__module__ = "__main__"
    monkeypatch.delattr(sys.modules["__main__"], "__file__")  # __main__ is interactive, as in a kernel
    with pytest.raises(ConfigError, match="the run 'cell' cannot be sent to a worker process .* defined in the notebook"):
        grid.run_grid({"cell": partial(in_a_cell), "other": partial(operator.add, 1, 1)}, workers=2, progress=False)


def test_workers_see_the_kernels_environment_as_the_grid_starts(monkeypatch):
    for value in ("1", "0", None):
        if value is None:
            monkeypatch.delenv("PPO_TEACH_FAST")
        else:
            monkeypatch.setenv("PPO_TEACH_FAST", value)
        assert grid.run_grid({"a": partial(os.getenv, "PPO_TEACH_FAST"), "b": partial(os.getenv, "PPO_TEACH_FAST")},
                             workers=2, progress=False) == {"a": value, "b": value}
    # a run that starts a grid of its own runs it in its worker, not in cores² processes
    assert grid.run_grid({"a": partial(grid.check_workers, None), "b": partial(grid.check_workers, None)}, workers=2,
                         progress=False) == {"a": 1, "b": 1}


def test_the_benchmark_command_refuses_a_bad_worker_count(capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(["ppo", "--seeds", "0", "--workers", "0"])
    assert stop.value.code == 2
    assert "workers = 0 is not a number of worker processes" in capsys.readouterr().err
