"""Independent runs side by side: a grid of trainings (algorithm × config × seed) in worker processes.

    histories = grid.train_runs(ppo.train, [ppo.PPOConfig(seed=s) for s in range(5)])
    results = grid.run_grid({"ppo, seed 0": partial(bench.solve, "ppo", 0), ...})

The package's trainings pin themselves to one thread and seed their own generators, so a run gives
the same numbers in a worker as in the kernel: the results are the sequential ones, whatever the
number of workers.  ``workers`` (default: ``PPO_TEACH_WORKERS``, else the cores this process may use)
runs that many at once; 1 runs them one after another in this process.

Workers are started with ``forkserver`` on Linux and ``spawn`` elsewhere, never by forking the kernel
itself (a forked copy of a multi-threaded Jupyter kernel can deadlock).  A run must therefore be
picklable: a module-level function of the package or of a ``.py`` file, or a ``functools.partial`` of
one, not a lambda or a function defined in a notebook.  Each run sees the kernel's environment
variables as they were when the grid started; after editing the package, restart the kernel.

One progress bar counts the runs.  Ctrl-C (interrupting the kernel) stops every worker and returns
the runs that finished; an error in a run stops the grid with ``RunFailed``, which names the run,
gives its error and traceback, and carries the runs that finished.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from typing import Any, TypeVar

from tqdm.auto import tqdm

from ppo_teach.config import torch_threads
from ppo_teach.errors import ConfigError

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)  # a run's label: a string, or a tuple such as (config, seed)

WORKERS_ENV_VAR = "PPO_TEACH_WORKERS"
WINDOWS_MAX_WORKERS = 61  # ProcessPoolExecutor's limit on Windows


class RunFailed(RuntimeError):
    """A run of a grid raised.  ``label`` names it; ``finished`` holds the runs that finished before."""

    def __init__(self, message: str, label: Hashable) -> None:
        super().__init__(message)
        self.label, self.finished = label, {}


def _failed(label: Hashable, kind: str, message: str) -> RunFailed:
    """``RunFailed`` for ``label``, which raised ``kind``: ``message``."""
    return RunFailed(f"the run {label!r} failed: {kind}: {message}", label)


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


# -- in a worker process --------------------------------------------------------------------------

@dataclass
class _Failure:
    """What a run raised, sent back from its worker as text (its exception may not be picklable)."""

    kind: str
    message: str
    traceback: str


@dataclass
class _Pickled:
    """A run's result, pickled in the worker so that a result that cannot be sent is that run's failure."""

    data: bytes


def _run_in_worker(run: Callable[[], Any], env: dict[str, str]) -> _Pickled | _Failure:
    """Run ``run`` with the kernel's environment ``env`` (no nested grids) on one thread."""
    os.environ.clear()
    os.environ.update(env, **{WORKERS_ENV_VAR: "1"})
    try:
        with torch_threads(1):
            result = run()
        return _Pickled(pickle.dumps(result))
    except Exception as error:  # noqa: BLE001 -- reported with the run's name by run_grid
        return _Failure(type(error).__name__, str(error), traceback.format_exc())


def _start_worker() -> None:
    """Workers leave Ctrl-C to the kernel, which stops them all; a worker whose kernel died exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sentinel = multiprocessing.parent_process().sentinel
    threading.Thread(target=lambda: (multiprocessing.connection.wait([sentinel]), os._exit(1)), daemon=True).start()


# -- in this process ------------------------------------------------------------------------------

def _start_method() -> str:
    """forkserver on Linux (each worker a fork of a server that imported the package once); spawn elsewhere."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _module_of(run: Callable[..., Any]) -> str:
    """The module that defines ``run`` (through any ``functools.partial``)."""
    while isinstance(run, partial):
        run = run.func
    return run.__module__


class _NotebookCheck(pickle.Pickler):
    """A pickler that refuses what a worker cannot import: anything defined in an interactive ``__main__``
    (a notebook's cells; a script's ``__main__`` has a file the workers import, so its functions pass)."""

    def reducer_override(self, obj: Any) -> Any:
        module = getattr(obj, "__module__", None) if callable(obj) else type(obj).__module__
        if module == "__main__" and not hasattr(sys.modules["__main__"], "__file__"):
            raise pickle.PicklingError(f"{obj!r} is defined in the notebook")
        return NotImplemented


def _check_picklable(runs: Mapping[Hashable, Callable[[], Any]]) -> None:
    """Refuse, naming it, a run that cannot be sent to a worker process."""
    for label, run in runs.items():
        try:
            _NotebookCheck(BytesIO()).dump(run)
        except Exception as error:  # noqa: BLE001 -- pickle raises several kinds
            raise ConfigError(
                f"the run {label!r} cannot be sent to a worker process ({type(error).__name__}: {error}). Fix: make it a "
                "function of the package or of a .py file (or a functools.partial of one), not a lambda or a function "
                "defined in the notebook; or pass workers=1 to run it in the kernel."
            ) from None


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until its end (where it is raised), so that it cannot
    fall between the start of a worker process and the executor's record of it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextmanager
def _pool(runs: Mapping[Hashable, Callable[[], Any]], workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes (forkserver: its server preloads the runs' modules when it starts, once per kernel);
    on leaving by an exception (Ctrl-C, a failed run) the pending runs are cancelled and the workers stopped."""
    context = multiprocessing.get_context(_start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(sorted({"ppo_teach.training", *map(_module_of, runs.values())}))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        raise
    pool.shutdown()


def _in_process(runs: Mapping[K, Callable[[], T]]) -> Iterator[tuple[K, T]]:
    """(label, result) of each run, one after another in this process."""
    for label, run in runs.items():
        try:
            with torch_threads(1):
                result = run()
        except Exception as error:
            raise _failed(label, type(error).__name__, str(error)) from error
        yield label, result


def _in_workers(runs: Mapping[K, Callable[[], T]], workers: int) -> Iterator[tuple[K, T]]:
    """(label, result) of each run as it arrives from ``workers`` worker processes.  Closing the
    generator early stops the workers (``_pool``)."""
    env = dict(os.environ)
    with _pool(runs, workers) as pool:
        with _interrupts_deferred():
            pending: dict[Future, K] = {pool.submit(_run_in_worker, run, env): label for label, run in runs.items()}
        while pending:  # a timeout, so that Ctrl-C is seen on every platform while the runs go on
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.exception() is not None):  # the results before a breakage
                label = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:  # every unfinished run fails with it: which one's worker died is unknown
                    unfinished = ", ".join(map(repr, [label, *pending.values()]))
                    raise RunFailed(f"a worker process died while the grid ran these runs: {unfinished}. Either it failed to "
                                    "start (a script that runs a grid must keep its top-level code under `if __name__ == "
                                    "\"__main__\":`, as worker processes import it) or the system killed it (out of memory?). "
                                    "Fix: guard the script, or run fewer at once (workers=1 runs them in this process).",
                                    label) from None
                except Exception as error:
                    raise _failed(label, type(error).__name__, str(error)) from error
                if isinstance(outcome, _Failure):
                    failure = _failed(label, outcome.kind, outcome.message)
                    failure.add_note(f"the run's traceback, in its worker process:\n{outcome.traceback}")
                    raise failure
                yield label, pickle.loads(outcome.data)


def run_grid(
    runs: Mapping[K, Callable[[], T]],
    workers: int | None = None,
    progress: bool = True,
    desc: str = "runs",
    postfix: Callable[[dict[K, T]], str] | None = None,
    on_result: Callable[[K, T], None] | None = None,
) -> dict[K, T]:
    """Call every run of ``runs`` (label → a function of no arguments) and return label → its result.

    The results come back in the order of ``runs``.  ``workers`` runs at once (see the module; no more
    than there are runs); ``progress`` shows one bar over the runs, with ``postfix(finished)`` beside it
    (e.g. the best so far); ``on_result(label, result)`` sees each result in this process as it arrives.
    After Ctrl-C only the runs that finished are returned."""
    workers = min(check_workers(workers), max(len(runs), 1))
    if sys.platform == "win32":
        workers = min(workers, WINDOWS_MAX_WORKERS)
    if workers > 1:
        _check_picklable(runs)
    finished: dict[K, T] = {}
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)
    results = _in_process(runs) if workers == 1 else _in_workers(runs, workers)
    try:
        with closing(results):  # leaving early closes it, which stops the workers
            for label, result in results:
                if getattr(result, "interrupted", False):  # a training loop in this process caught the Ctrl-C itself
                    raise KeyboardInterrupt
                finished[label] = result
                bar.update()
                if postfix is not None:
                    bar.set_postfix_str(postfix(finished))
                if on_result is not None:
                    on_result(label, result)
    except KeyboardInterrupt:
        bar.write(f"interrupted: {len(finished)} of {len(runs)} runs finished and are returned; the others were stopped.", file=sys.stderr)
    except RunFailed as error:
        error.finished = dict(finished)
        raise
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
