"""The course's own errors: each says what was wrong and how to fix it."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch


class ConfigError(ValueError):
    """A config value, seed, device or environment id that the course cannot use."""


class TrainingDiverged(RuntimeError):
    """A loss or statistic became NaN or infinite during training."""


def check_finite(name: str, value: torch.Tensor | float, *, update: int, last_stats: Mapping[str, float]) -> None:
    """Stop training with a clear message when ``value`` is NaN or ±inf.

    The message names the quantity, the update at which it happened and the last finite
    statistics, so the learner can see what was drifting before it broke.
    """
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        if torch.isfinite(value).all():
            return
        number = float(value[~torch.isfinite(value)].flatten()[0])
    else:
        number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if math.isfinite(number):
            return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in last_stats.items()) or "none yet (it failed on the first update)"
    raise TrainingDiverged(
        f"{name} became {number} at update {update}. Last finite statistics: {shown}. "
        "Fix: lower the learning rate, or check the rewards for NaN or huge values."
    )
