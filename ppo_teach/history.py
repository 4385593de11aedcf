"""What a training run leaves behind: per-update statistics, episodes, evaluations, solve time."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppo_teach.rollout import EpisodeLog


@dataclass
class History:
    algo: str
    seed: int
    config: dict[str, Any]
    updates: list[dict[str, float]] = field(default_factory=list)  # each with its "step"
    distributions: dict[str, list[list[float]]] = field(default_factory=dict)  # per-update samples, e.g. PPO's ratios
    episodes: EpisodeLog = field(default_factory=EpisodeLog)
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)
    steps_to_solve: int | None = None  # env steps when the greedy policy first met the criterion
    wall_s_to_solve: float | None = None  # training seconds (evaluation excluded) until then
    final_sampled_return: float | None = None  # sampled policy's mean return over final_eval_episodes at the end
    train_wall_s: float = 0.0  # training seconds of the whole run (evaluation excluded)
    interrupted: bool = False  # stopped early by the learner (KeyboardInterrupt)
    models: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)  # trained networks; not saved

    def log_update(self, step: int, stats: dict[str, float | torch.Tensor]) -> None:
        """Record one update: scalars into ``updates``, tensors of several samples into ``distributions``."""
        row = {"step": float(step)}
        for key, value in stats.items():
            if isinstance(value, torch.Tensor) and value.numel() > 1:
                self.distributions.setdefault(key, []).append(value.flatten().tolist())
            else:
                row[key] = float(value)
        self.updates.append(row)

    def last_stats(self) -> dict[str, float]:
        """The statistics of the latest update (empty before the first)."""
        return {k: v for k, v in self.updates[-1].items() if k != "step"} if self.updates else {}

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of one per-update statistic."""
        rows = [u for u in self.updates if key in u]
        return np.array([u["step"] for u in rows]), np.array([u[key] for u in rows])

    @property
    def solved(self) -> bool:
        return self.steps_to_solve is not None

    @property
    def steps(self) -> int:
        """Environment steps trained on so far (0 before the first update)."""
        return int(self.updates[-1]["step"]) if self.updates else 0

    def save(self, path: str | Path) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "models"}
        data["episodes"] = asdict(self.episodes)
        Path(path).write_text(json.dumps(data))

    @classmethod
    def load(cls, path: str | Path) -> History:
        data = json.loads(Path(path).read_text())
        data["episodes"] = EpisodeLog(**data["episodes"])
        return cls(**data)


def smoke_test_note(histories: Sequence[History], full_mode: str = "The text below gives what full mode's runs show.") -> str:
    """What fast-mode runs of several seeds amount to: their steps and greedy evaluations, a smoke
    test, and where the notebook gives full mode's results (``full_mode``)."""
    run = histories[0]
    return f"fast mode: {run.steps:,} steps per seed, {len(run.eval_steps)} greedy evaluation(s): a smoke test. {full_mode}"
