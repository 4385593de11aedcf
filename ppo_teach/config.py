"""Run-time settings shared by every algorithm: fast mode, budgets, device, seeding,
and the validation that every config dataclass goes through.

Fast mode (``PPO_TEACH_FAST=1``) shrinks training budgets so the whole course runs
quickly under nbval in CI.  Full mode is the product: every claim a notebook makes is
measured with the full budget.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch

from ppo_teach.errors import ConfigError

FAST_ENV_VAR = "PPO_TEACH_FAST"

T = TypeVar("T")


def fast_mode() -> bool:
    """True when ``PPO_TEACH_FAST=1`` is set (read at every call, so a notebook can toggle it)."""
    return os.environ.get(FAST_ENV_VAR, "0").strip().lower() in {"1", "true", "yes", "on"}


def budget(*, full: T, fast: T) -> T:
    """The value to use for a training budget: ``full`` normally, ``fast`` in fast mode."""
    return fast if fast_mode() else full


def pick_device(prefer: str | None = None) -> tuple[torch.device, str]:
    """The device the course will use, and why.

    Order: an explicit ``prefer`` ("cpu", "cuda", "mps"), then CUDA, then Apple MPS, then CPU.
    The small CartPole networks always run faster on the CPU; this choice matters for the
    language-model notebooks.
    """
    if prefer is not None:
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if prefer not in available:
            raise ConfigError(
                f"device {prefer!r} is not one the course knows. Accepted: 'cpu', 'cuda', 'mps', "
                "or None to choose automatically."
            )
        if not available[prefer]:
            raise ConfigError(
                f"device {prefer!r} was asked for but is not available on this machine. "
                "Fix: pass None to choose automatically, or 'cpu'."
            )
        return torch.device(prefer), f"{prefer} was asked for explicitly"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
    if _mps_available():
        return torch.device("mps"), "Apple-silicon GPU (MPS) found"
    return torch.device("cpu"), "no CUDA or MPS GPU found; the CPU is used"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators so a run repeats exactly on CPU."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch on ``n`` CPU threads inside the block, the caller's setting restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def global_rng_state() -> dict[str, Any]:
    """torch's, Python's and NumPy's global generator states, NumPy's key as an int64 tensor."""
    name, keys, *rest = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), *rest]}


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``global_rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def check_seed(seed: Any) -> None:
    """Reject anything that is not a non-negative integer seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"seed = {seed!r} is not valid: a seed must be an integer ≥ 0. Fix: pass e.g. seed=0."
        )


# --------------------------------------------------------------------------------------
# Config validation.  Each config dataclass declares the accepted range of a field next to
# the field itself with ``bounded(...)``; ``validate`` checks every such field and names the
# field, the value, the accepted range and the fix.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """An accepted interval ``low ⋚ value ⋚ high`` for one numeric config field."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    allow_inf: bool = False  # +inf is accepted (e.g. ε = ∞ switches clipping off)
    fix: str = ""

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, name: str) -> str:
        left = f"{self.low:g} {'<' if self.low_open else '≤'} " if self.low > -math.inf else ""
        right = f" {'<' if self.high_open else '≤'} {self.high:g}" if self.high < math.inf else ""
        kind = "an integer" if self.integer else "a number"
        return f"{kind} with {left}{name}{right}"


def bounded(default: Any, bounds: Bounds) -> Any:
    """A dataclass field with a default value and an accepted range."""
    return field(default=default, metadata={"bounds": bounds})


def validate(config: Any) -> None:
    """Check every ``bounded`` field of a config dataclass; raise ``ConfigError`` on the first bad one."""
    cls = type(config).__name__
    for f in dataclasses.fields(config):
        bounds: Bounds | None = f.metadata.get("bounds")
        if bounds is None:
            continue
        value = getattr(config, f.name)
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
        if not wrong_type and bounds.integer and not float(value).is_integer():
            wrong_type = True
        infinite_ok = not wrong_type and bounds.allow_inf and value == math.inf
        if wrong_type or (not math.isfinite(value) and not infinite_ok) or not bounds.contains(value):
            fix = f" Fix: {bounds.fix}" if bounds.fix else ""
            raise ConfigError(
                f"{cls}.{f.name} = {value!r} is out of range: expected "
                f"{bounds.describe(f.name)}.{fix}"
            )


def nearest_divisor(n: int, k: int) -> int:
    """The divisor of ``n`` nearest to ``k`` (the larger one on a tie): the fix to suggest when a
    count ``k`` must divide ``n``."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), -d))


def check_env_id(env_id: str) -> None:
    """Reject an environment id Gymnasium does not know, suggesting the nearest known ids."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(str(env_id), list(gym.registry), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"env_id = {env_id!r} is not a registered Gymnasium environment.{hint} "
        "Fix: use a discrete-action environment such as 'CartPole-v1'."
    )
