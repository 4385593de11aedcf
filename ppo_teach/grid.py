"""Independent runs side by side: a grid of trainings (algorithm × config × seed) in worker processes.

    histories = grid.train_runs(ppo.train, [ppo.PPOConfig(seed=s) for s in range(5)])
    results = grid.run_grid({"ppo, seed 0": partial(bench.solve, "ppo", 0), ...})

Every run pins itself to one thread and seeds its own generators, so a run gives the same numbers
in a worker as in the kernel: the results are the sequential ones, whatever the number of workers.
``workers`` (default: ``PPO_TEACH_WORKERS``, else the cores this process may use) runs that many at
once; 1 runs them one after another in this process.

Workers are started with ``forkserver`` where the platform has it (Linux, macOS) and ``spawn``
elsewhere, never by forking the kernel itself (a forked copy of a multi-threaded Jupyter kernel can
deadlock).  A run must therefore be picklable: a module-level function of the package or of a
``.py`` file, or a ``functools.partial`` of one, not a lambda or a function defined in a notebook.

One progress bar counts the runs.  Ctrl-C (interrupting the kernel) stops every worker and returns
the runs that finished; an error in a run stops the grid with ``RunFailed``, which names the run,
gives its error and traceback, and carries the runs that finished.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from ppo_teach.errors import ConfigError

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)  # a run's label: a string, or a tuple such as (config, seed)

WORKERS_ENV_VAR = "PPO_TEACH_WORKERS"
CARRIED_ENV = ("PPO_TEACH_FAST",)  # read by the runs (budgets): the kernel's current values go with each run


class RunFailed(RuntimeError):
    """A run of a grid raised.  ``label`` names it; ``finished`` holds the runs that finished before."""

    def __init__(self, message: str, label: Hashable, finished: dict[Hashable, Any]) -> None:
        super().__init__(message)
        self.label, self.finished = label, finished


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform says, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """``workers`` itself if it is a positive integer; None gives ``PPO_TEACH_WORKERS`` if set, else
    ``available_cores()``.  Anything else is refused with a message."""
    source = "workers"
    if workers is None:
        text = os.environ.get(WORKERS_ENV_VAR, "").strip()
        if not text:
            return available_cores()
        source = f"the environment variable {WORKERS_ENV_VAR}"
        try:
            workers = int(text)
        except ValueError:
            raise ConfigError(f"{source} = {text!r} is not an integer. Fix: set it to a number of worker processes "
                              f"such as {available_cores()} (this machine's cores), or 1 to run in the kernel.") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{source} = {workers!r} is not a number of worker processes. Fix: use an integer ≥ 1: "
                          f"{available_cores()} (this machine's cores) runs that many at once, 1 runs one after another in the kernel.")
    return workers


@dataclass
class _Failure:
    """What a run raised, sent back from its worker as text (its exception may not be picklable)."""

    kind: str
    message: str
    traceback: str


def _call(run: Callable[[], T], env: dict[str, str | None]) -> T | _Failure:
    """Run ``run`` on one thread, with the kernel's ``env``; an exception comes back as a ``_Failure``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        return run()
    except Exception as error:  # noqa: BLE001 -- reported with the run's name by run_grid
        return _Failure(type(error).__name__, str(error), traceback.format_exc())
    finally:
        torch.set_num_threads(threads)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the kernel, which stops them all (the signal reaches the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _module_of(run: Callable[..., Any]) -> str:
    while isinstance(run, partial):
        run = run.func
    return run.__module__


def _check_picklable(runs: Mapping[Hashable, Callable[[], Any]]) -> None:
    for label, run in runs.items():
        try:
            pickle.dumps(run)
        except Exception as error:  # noqa: BLE001 -- pickle raises several kinds
            raise ConfigError(
                f"the run {label!r} cannot be sent to a worker process ({type(error).__name__}: {error}). Fix: make it a "
                "function of the package or of a .py file (or a functools.partial of one), not a lambda or a function "
                "defined in the notebook; or pass workers=1 to run it in the kernel."
            ) from None


@contextmanager
def _pool(runs: Mapping[Hashable, Callable[[], Any]], workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes that preload the runs' modules; on leaving by an exception (Ctrl-C, a failed run)
    the pending runs are cancelled and the workers stopped at once."""
    context = multiprocessing.get_context(_start_method())
    if context.get_start_method() == "forkserver":  # the server imports these once; each worker is a fork of it
        context.set_forkserver_preload(sorted({"ppo_teach.training", *map(_module_of, runs.values())}))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_interrupts)
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        raise
    pool.shutdown()


def run_grid(
    runs: Mapping[K, Callable[[], T]],
    workers: int | None = None,
    progress: bool = True,
    desc: str = "runs",
    postfix: Callable[[dict[K, T]], str] | None = None,
    on_result: Callable[[K, T], None] | None = None,
) -> dict[K, T]:
    """Call every run of ``runs`` (label → a function of no arguments; a label is any hashable: a string, a tuple) and return label → its result,
    in the order of ``runs``.  ``workers`` runs at once (see the module; no more than there are runs);
    ``progress`` shows one bar over the runs, with ``postfix(finished)`` beside it (e.g. the best so
    far); ``on_result(label, result)`` sees each result in this process as it arrives.  After Ctrl-C
    only the runs that finished are returned."""
    workers = min(check_workers(workers), max(len(runs), 1))
    if workers > 1:
        _check_picklable(runs)
    env = {key: os.environ.get(key) for key in CARRIED_ENV}
    finished: dict[K, T] = {}
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)

    def finish(label: K, result: T | _Failure) -> None:
        if isinstance(result, _Failure):
            error = RunFailed(f"the run {label!r} failed: {result.kind}: {result.message}", label, dict(finished))
            error.add_note(f"the run's traceback:\n{result.traceback}")
            raise error
        if getattr(result, "interrupted", False):  # a training loop in this process caught the Ctrl-C itself
            raise KeyboardInterrupt
        finished[label] = result
        bar.update()
        if postfix is not None:
            bar.set_postfix_str(postfix(finished))
        if on_result is not None:
            on_result(label, result)

    try:
        if workers == 1:
            for label, run in runs.items():
                finish(label, _call(run, env))
        else:
            with _pool(runs, workers) as pool:
                pending: dict[Future, K] = {pool.submit(_call, run, env): label for label, run in runs.items()}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        label = pending.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:  # every unfinished run fails with it: which one's worker died is unknown
                            unfinished = ", ".join(map(repr, [label, *pending.values()]))
                            raise RunFailed(f"a worker process died while the grid ran these runs: {unfinished}. Either it failed to "
                                            "start (a script that runs a grid must keep its top-level code under `if __name__ == "
                                            "\"__main__\":`, as worker processes import it) or the system killed it (out of memory?). "
                                            "Fix: guard the script, or run fewer at once (workers=1 runs them in this process).",
                                            label, dict(finished)) from None
                        finish(label, result)
    except KeyboardInterrupt:
        bar.write(f"interrupted: {len(finished)} of {len(runs)} runs finished and are returned; the others were stopped.")
    finally:
        bar.close()
    return {label: finished[label] for label in runs if label in finished}


def best_greedy_return(finished: Mapping[Hashable, Any]) -> str:
    """A ``postfix`` for runs that return a ``History``: the best last greedy evaluation so far."""
    evaluated = {label: h.eval_returns[-1] for label, h in finished.items() if h.eval_returns}
    if not evaluated:
        return ""
    label = max(evaluated, key=evaluated.get)
    return f"best: {label}, greedy return {evaluated[label]:.0f}"


def train_runs(
    train: Callable[..., Any],
    configs: Sequence[Any] | Mapping[Hashable, Any],
    workers: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> list[Any] | dict[Hashable, Any]:
    """``train(cfg, progress=False)`` for every config, ``workers`` runs at once (``run_grid``): a list of
    histories for a list of configs, label → history for a dict of them.  After Ctrl-C, the runs that
    finished (each history knows its seed and config)."""
    labelled = configs if isinstance(configs, Mapping) else {f"run {i} (seed {cfg.seed})": cfg for i, cfg in enumerate(configs)}
    runs = {label: partial(train, cfg, progress=False) for label, cfg in labelled.items()}
    histories = run_grid(runs, workers, progress, desc or _module_of(train).rpartition(".")[2], best_greedy_return)
    return histories if isinstance(configs, Mapping) else list(histories.values())
