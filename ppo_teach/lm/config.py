"""The RLHF run's settings (``RLHFConfig``), checked when made, and the split of the prompts into
training and held-out ones."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ppo_teach.config import Bounds, bounded, budget, nearest_divisor, validate
from ppo_teach.errors import ConfigError
from ppo_teach.lm import PROMPTS, TINY_GPT2
from ppo_teach.lm.hub import looks_like_path, model_folder

SPLIT_SEED = 0  # which prompts are held out does not depend on the run's seed
POSITIVE = Bounds(low=0.0, low_open=True, fix="use a positive value.")
FRACTION = Bounds(low=0.0, high=1.0, fix="use a value in [0, 1].")


def _count(default: int, low: int, example: str) -> int:
    return bounded(default, Bounds(low=low, integer=True, fix=f"use an integer ≥ {low}, e.g. {example}."))


@dataclass
class RLHFConfig:
    """The RLHF run's settings, checked when made.  Defaults: the offline run (the embedded tiny
    GPT-2 and VADER) that reaches issue 9's target on a 2-core CPU."""

    model: str = str(TINY_GPT2)  # a folder or a hub id ("gpt2")
    reward: str = "vader"  # or a sequence classifier's folder or hub id
    seed: int = _count(0, 0, "0")
    iterations: int = _count(40, 1, "40")
    batch_size: int = _count(64, 1, "64")  # responses per iteration
    response_length: int = _count(16, 1, "16")
    temperature: float = bounded(1.0, Bounds(low=0.0, low_open=True, fix="use 1.0, the model's own distribution."))
    minibatches: int = _count(4, 1, "4")
    epochs: int = _count(4, 1, "4")
    lr: float = bounded(1e-3, Bounds(low=0.0, high=1.0, low_open=True, fix="use a small positive learning rate, e.g. 1e-3 (tiny model) or 1.41e-5 (gpt2)."))
    anneal_lr: bool = True
    adam_eps: float = bounded(1e-5, POSITIVE)
    clip_eps: float = bounded(0.2, Bounds(low=0.0, low_open=True, fix="ε is usually 0.1–0.3."))
    value_clip: float = bounded(0.2, POSITIVE)
    vf_coef: float = bounded(0.1, Bounds(low=0.0, fix="use a non-negative coefficient, e.g. 0.1."))
    ent_coef: float = bounded(0.0, Bounds(low=0.0, fix="use a non-negative coefficient, e.g. 0 (the default)."))
    max_grad_norm: float = bounded(1.0, POSITIVE)
    gamma: float = bounded(1.0, FRACTION)
    lam: float = bounded(0.95, FRACTION)
    beta: float = bounded(0.2, Bounds(low=0.0, fix="β ≥ 0 weighs the KL penalty; 0 switches it off (and invites reward hacking)."))
    adaptive_kl: bool = False
    kl_target: float = bounded(6.0, POSITIVE)
    kl_horizon: int = _count(10_000, 1, "10000")
    grad_accumulation: int = _count(1, 1, "1")
    eval_every: int = _count(5, 1, "5")
    eval_prompts: int = _count(64, 1, "64")
    checkpoint_every: int = _count(0, 0, "0 (off)")
    checkpoint_dir: str | None = None
    device: str | None = None  # config.pick_device: None chooses CUDA, then MPS, then the CPU
    bf16: bool = False  # bf16 autocast, on a CUDA GPU that supports it

    def __post_init__(self) -> None:
        validate(self)
        if self.batch_size % self.minibatches:
            raise ConfigError(
                f"RLHFConfig.minibatches = {self.minibatches} does not divide batch_size = {self.batch_size}: every "
                f"minibatch must hold the same number of responses. Fix: choose a divisor of {self.batch_size}, e.g. "
                f"{nearest_divisor(self.batch_size, self.minibatches)}."
            )
        if self.minibatch_size % self.grad_accumulation:
            raise ConfigError(
                f"RLHFConfig.grad_accumulation = {self.grad_accumulation} does not divide the minibatch of "
                f"batch_size / minibatches = {self.minibatch_size} responses into equal chunks. Fix: choose a divisor "
                f"of {self.minibatch_size}, e.g. {nearest_divisor(self.minibatch_size, self.grad_accumulation)}."
            )
        if self.checkpoint_every and self.checkpoint_dir is None:
            raise ConfigError(
                f"RLHFConfig.checkpoint_every = {self.checkpoint_every} but checkpoint_dir is None: there is nowhere "
                "to write the checkpoints. Fix: give checkpoint_dir a folder, or set checkpoint_every = 0."
            )
        if looks_like_path(self.model):
            model_folder(self.model)  # a missing folder is named now, not after loading the reward

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.minibatches


def split_prompts(n_eval: int, path: Path | str = PROMPTS) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts): ``n_eval`` lines of ``path`` held out, chosen by a
    fixed shuffle (``SPLIT_SEED``), the same for every run; the two sets are disjoint."""
    prompts = list(dict.fromkeys(line.strip() for line in Path(path).read_text().splitlines() if line.strip()))
    if n_eval >= len(prompts):
        raise ConfigError(
            f"RLHFConfig.eval_prompts = {n_eval} leaves no training prompt: {path} has {len(prompts)}. "
            f"Fix: hold out fewer, e.g. 64."
        )
    random.Random(SPLIT_SEED).shuffle(prompts)
    return prompts[n_eval:], prompts[:n_eval]


def check_bf16(device: torch.device) -> None:
    """bf16 autocast is offered on a CUDA GPU that supports bf16 (Ampere or newer); refused elsewhere."""
    if device.type != "cuda" or not torch.cuda.is_bf16_supported(including_emulation=False):
        where = "a CUDA GPU without bf16 support" if device.type == "cuda" else f"the {device.type.upper()}"
        raise ConfigError(
            f"RLHFConfig.bf16 = True, but the run is on {where}: bf16 autocast is offered only on a CUDA GPU "
            "that supports it (compute capability 8.0 or newer: an A100, L4, H100; not a T4, which would only emulate it). Fix: set bf16=False (fp32, the default)."
        )


PRESETS = ("tiny", "gpt2")


def preset(model: str, **overrides: object) -> RLHFConfig:
    """The notebook's two runs, ``overrides`` applied on top:

    - ``"tiny"``: the embedded tiny GPT-2 and VADER, offline, on a CPU (the defaults; fast mode
      shrinks the iterations);
    - ``"gpt2"``: GPT-2 (124M) and the ``lvwerra/distilbert-imdb`` classifier from the hub, for a
      GPU: the learning rate 1.41e-5 and the adaptive β (from 0.2, target KL 6, horizon 10,000) of
      TRL's gpt2-sentiment example.
    """
    if model not in PRESETS:
        raise ConfigError(f"preset {model!r} is not one of {PRESETS}. Fix: use 'tiny' (offline, CPU) or 'gpt2' (a GPU and the hub).")
    settings: dict[str, object] = {"iterations": budget(full=RLHFConfig.iterations, fast=3)}
    if model == "gpt2":
        settings |= {"model": "gpt2", "reward": "lvwerra/distilbert-imdb", "lr": 1.41e-5, "adaptive_kl": True, "kl_target": 6.0}
    return RLHFConfig(**(settings | overrides))
