"""Proximal Policy Optimization (Schulman et al., 2017), with the implementation details that
make it work, each a named option of ``PPOConfig`` that can be switched off:

    vectorized environments         num_envs
    GAE(λ), bootstrapped at truncation      lam
    advantage normalization per minibatch   norm_adv
    several epochs of shuffled minibatches  update_epochs, num_minibatches
    the clipped surrogate           clip_eps (math.inf: no clipping)
    a clipped value loss            clip_vloss
    an entropy bonus                ent_coef
    gradient-norm clipping          clip_grad_norm, max_grad_norm (the global norm of each network,
                                    or of both together with joint_grad_norm)
    learning-rate annealing         anneal_lr
    orthogonal initialization       orthogonal_init
    early stop at a target KL       target_kl (None: off): after each epoch, stop if the k3 of that
                                    epoch's last minibatch, measured before its step, exceeds target_kl
                                    (CleanRL's rule)

``variant="kl_penalty"`` is the paper's second variant: no clipping, a penalty β·KL̄ whose
coefficient β adapts to the measured KL (see ``kl``).

PPO is an actor-critic method: the actor π_θ is trained on advantages estimated with the critic
V_φ.  The loss minimised on each minibatch is

    −L^CLIP(θ) + c_V · L^V(φ) − c_H · H̄(π_θ)     (c_V = ``vf_coef``, c_H = ``ent_coef``)

(Schulman et al., 2017, eq. 9; there the objective L^CLIP − c_V·L^V + c_H·H̄ is maximised).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch.distributions import Categorical

from ppo_teach.advantages import whiten
from ppo_teach.config import Bounds, bounded, nearest_divisor
from ppo_teach.errors import ConfigError
from ppo_teach.history import History
from ppo_teach.kl import AdaptiveKLCoefficient
from ppo_teach.losses import (
    approx_kl_k1,
    approx_kl_k3,
    clip_fraction,
    clipped_surrogate,
    clipped_value_loss,
    entropy_bonus,
    explained_variance,
    mean_kl,
    surrogate_advantage,
    value_loss,
    zero_gradient_fraction,
)
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.rollout import Batch
from ppo_teach.optim import adam, linear_annealing
from ppo_teach.training import Agent, Callback, TrainConfig, budget_field, gae_and_targets, run

NON_NEGATIVE = Bounds(low=0.0, fix="use a non-negative coefficient.")
REFERENCE_EPS = 0.2  # the range [0.8, 1.2] clip fractions are measured against when the loss does not clip


@dataclass
class PPOConfig(TrainConfig):
    total_steps: int = budget_field(full=100_000, fast=8_000)
    num_envs: int = bounded(8, Bounds(low=1, high=256, integer=True, fix="use between 1 and 256 parallel copies, e.g. 8."))
    steps_per_env: int = bounded(125, Bounds(low=1, high=100_000, integer=True, fix="a batch needs at least one step per copy."))
    variant: Literal["clip", "kl_penalty"] = "clip"
    lr: float = bounded(1e-3, Bounds(low=0.0, high=1.0, low_open=True, fix="use a small positive learning rate such as 1e-3."))
    anneal_lr: bool = True
    lam: float = bounded(0.95, Bounds(low=0.0, high=1.0, fix="λ for GAE lies in [0, 1]; 0.95 is usual."))
    update_epochs: int = bounded(20, Bounds(low=1, high=1_000, integer=True, fix="use at least one epoch, e.g. 10."))
    num_minibatches: int = bounded(4, Bounds(low=1, integer=True, fix="use at least one minibatch, e.g. 4."))
    norm_adv: bool = True
    clip_eps: float = bounded(0.2, Bounds(low=0.0, low_open=True, allow_inf=True, fix="ε is usually 0.1–0.3; math.inf switches clipping off."))
    clip_vloss: bool = False
    ent_coef: float = bounded(0.0, NON_NEGATIVE)
    vf_coef: float = bounded(0.5, NON_NEGATIVE)
    clip_grad_norm: bool = True
    max_grad_norm: float = bounded(0.5, Bounds(low=0.0, low_open=True, fix="use a positive norm such as 0.5."))
    joint_grad_norm: bool = False  # one norm over both networks' gradients, as in CleanRL's ppo.py
    target_kl: float | None = None
    kl_target: float = bounded(0.01, Bounds(low=0.0, low_open=True, fix="d_targ is a small positive KL such as 0.01."))
    kl_beta_init: float = bounded(1.0, Bounds(low=0.0, low_open=True, fix="start β at a positive value such as 1."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"PPOConfig.num_minibatches = {self.num_minibatches} does not divide the batch of "
                f"num_envs × steps_per_env = {self.batch_size} steps. Fix: choose a divisor of "
                f"{self.batch_size}, e.g. {nearest_divisor(self.batch_size, self.num_minibatches)}."
            )
        if self.variant not in ("clip", "kl_penalty"):
            raise ConfigError(f"PPOConfig.variant = {self.variant!r} is not known. Fix: use 'clip' or 'kl_penalty'.")
        if self.target_kl is not None and not (isinstance(self.target_kl, (int, float)) and self.target_kl > 0):
            raise ConfigError(f"PPOConfig.target_kl = {self.target_kl!r} must be a positive KL or None (off). Fix: e.g. 0.02.")

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def clips(self) -> bool:
        """Whether the policy loss clips the ratio (see ``clipping_range``)."""
        return clipping_range(self.variant, self.clip_eps)[0]

    @property
    def range_eps(self) -> float:
        """The ε that clip fractions are measured against (see ``clipping_range``)."""
        return clipping_range(self.variant, self.clip_eps)[1]


def clipping_range(variant: str, clip_eps: float) -> tuple[bool, float]:
    """(whether the policy loss clips the ratio, the ε of the range [1 − ε, 1 + ε] that clip
    fractions are measured against).  The loss clips in the clip variant with a finite ε; when it
    does not, fractions are measured against ``REFERENCE_EPS``, so that a run without clipping
    still reports how far its ratios went."""
    clips = variant == "clip" and math.isfinite(clip_eps)
    return clips, clip_eps if clips else REFERENCE_EPS


@dataclass
class Flat:
    """A batch flattened to (T·N, ...) rows, with what PPO needs for every row."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp_old: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values_old: torch.Tensor
    old_logits: torch.Tensor | None = None  # π_old's logits, for the KL-penalty variant's exact KL

    def rows(self, idx: torch.Tensor) -> Flat:
        """The rows ``idx`` of every field: one minibatch."""
        return Flat(*(None if v is None else v[idx] for v in (getattr(self, f.name) for f in fields(self))))


@torch.no_grad()
def prepare(batch: Batch, policy: CategoricalPolicy, value_fn: ValueFunction, cfg: PPOConfig) -> Flat:
    """GAE(λ) advantages and value targets Ĝ_t = Â_t + V(s_t), flattened to one row per step."""
    advantages, returns, values = gae_and_targets(batch, value_fn, cfg.gamma, cfg.lam)
    obs = batch.obs.flatten(0, 1)
    return Flat(
        obs=obs,
        actions=batch.actions.flatten(),
        logp_old=batch.logp.flatten(),
        advantages=advantages.flatten(),
        returns=returns.flatten(),
        values_old=values.flatten(),
        old_logits=policy(obs).logits if cfg.variant == "kl_penalty" else None,
    )


def policy_objective(dist: Categorical, logp: torch.Tensor, mb: Flat, advantages: torch.Tensor, cfg: PPOConfig, beta: float) -> torch.Tensor:
    """The policy part of the objective (to maximise): L^CLIP, or r·Â − β·KL̄ for the KL-penalty variant."""
    if cfg.variant == "clip":
        return clipped_surrogate(logp, mb.logp_old, advantages, cfg.clip_eps)
    old = Categorical(logits=mb.old_logits, validate_args=False)
    return surrogate_advantage(logp, mb.logp_old, advantages) - beta * mean_kl(old, dist)


class PPO(Agent):
    """PPO's optimizer, learning-rate schedule and KL coefficient, and its update."""

    def __init__(self, cfg: PPOConfig):
        super().__init__(cfg)
        self.networks = (self.policy, self.value_fn)
        self.optimizer = adam([p for net in self.networks for p in net.parameters()], cfg.lr)
        self.schedule = linear_annealing(self.optimizer, cfg.num_updates, cfg.anneal_lr)
        self.kl_coef = AdaptiveKLCoefficient(beta=cfg.kl_beta_init, target=cfg.kl_target)

    def update(self, batch: Batch) -> dict[str, float | torch.Tensor]:
        """``update_epochs`` passes over shuffled minibatches of ``batch``; returns the update's statistics.

        Per minibatch step, averaged over the update (each measured before its step):
        ``approx_kl`` (k3) and ``approx_kl_k1``, the KL of the policy about to be stepped from π_old;
        ``clip_fraction``, its ratios outside [1 − ε, 1 + ε] (ε = ``cfg.range_eps``);
        ``zero_grad_fraction``, its samples whose L^CLIP term has no gradient; the losses, the entropy,
        each network's gradient norm before clipping.  Early stop (``cfg.target_kl``): after each epoch,
        the update stops if ``approx_kl`` of the epoch's *last* minibatch, measured before its step (not
        a mean over the epoch), exceeds ``target_kl``, as CleanRL's ppo.py does; ``epochs_run`` counts
        the epochs taken.  Once per update, after it: ``kl_after`` (k3
        over the whole batch: how far the update moved π), ``clip_fraction_after``, ``ratio`` (every
        sample's ratio), ``explained_variance`` of the value targets by the new V.
        """
        cfg = self.cfg
        data = prepare(batch, self.policy, self.value_fn, cfg)
        sums: dict[str, float] = {}
        epochs_run, minibatches_run = 0, 0
        for _ in range(cfg.update_epochs):
            for idx in torch.randperm(len(data.actions)).split(cfg.minibatch_size):
                stats = self._minibatch_step(data.rows(idx))
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                minibatches_run += 1
            epochs_run += 1
            if cfg.target_kl is not None and stats["approx_kl"] > cfg.target_kl:
                break
        result: dict[str, float | torch.Tensor] = {k: v / minibatches_run for k, v in sums.items()}
        with torch.no_grad():
            logp_new = self.policy(data.obs).log_prob(data.actions)
            values = self.value_fn(data.obs)
        result["ratio"] = torch.exp(logp_new - data.logp_old)  # the distribution the update left behind
        # Clipping is no hard trust region: the share of the batch's ratios left outside the range.
        result["clip_fraction_after"] = float(clip_fraction(logp_new, data.logp_old, cfg.range_eps))
        result["kl_after"] = float(approx_kl_k3(logp_new, data.logp_old))  # how far the whole update moved π
        result["explained_variance"] = explained_variance(values, data.returns)
        result["epochs_run"] = epochs_run
        result["lr"] = self.optimizer.param_groups[0]["lr"]
        if cfg.variant == "kl_penalty":
            result["kl_coef"] = self.kl_coef.beta  # the β this update used
            self.kl_coef.update(result["kl_after"])
        self.schedule.step()
        return result

    def _minibatch_step(self, mb: Flat) -> dict[str, float]:
        cfg = self.cfg
        dist = self.policy(mb.obs)
        logp = dist.log_prob(mb.actions)
        advantages = whiten(mb.advantages) if cfg.norm_adv else mb.advantages
        objective = policy_objective(dist, logp, mb, advantages, cfg, self.kl_coef.beta)
        values = self.value_fn(mb.obs)
        v_loss = clipped_value_loss(values, mb.values_old, mb.returns, cfg.clip_eps) if cfg.clip_vloss else value_loss(values, mb.returns)
        entropy = entropy_bonus(dist.entropy())
        loss = -objective + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()
        # Each network's gradient is clipped to its own global norm, unless ``joint_grad_norm``: with
        # one norm over both, the critic's gradient, far the larger while PPO learns, sets it
        # (notebook 03 measures both norms, and what joint clipping changes).
        max_norm = cfg.max_grad_norm if cfg.clip_grad_norm else math.inf
        per_network = math.inf if cfg.joint_grad_norm else max_norm
        policy_grad_norm, value_grad_norm = (torch.nn.utils.clip_grad_norm_(net.parameters(), per_network) for net in self.networks)
        if cfg.joint_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for net in self.networks for p in net.parameters()], max_norm)
        self.optimizer.step()
        # Measured on the minibatch before this step.  The policy loss is a surrogate around the
        # current π_old, re-centred with every batch: its value says nothing about performance.
        with torch.no_grad():
            return {
                "policy_loss": float(-objective),
                "value_loss": float(v_loss),
                "entropy": float(entropy),
                "approx_kl": float(approx_kl_k3(logp, mb.logp_old)),
                "approx_kl_k1": float(approx_kl_k1(logp, mb.logp_old)),
                "clip_fraction": float(clip_fraction(logp, mb.logp_old, cfg.range_eps)),
                "zero_grad_fraction": float(zero_gradient_fraction(logp, mb.logp_old, advantages, cfg.clip_eps if cfg.clips else math.inf)),
                "policy_grad_norm": float(policy_grad_norm),
                "value_grad_norm": float(value_grad_norm),
            }


def train(cfg: PPOConfig | None = None, progress: bool = True, callback: Callback | None = None) -> History:
    """Train PPO with the settings in ``cfg`` (defaults if None); ``callback(history)`` after every update."""
    return run(cfg or PPOConfig(), "ppo", PPO, progress, callback)


LAB_VARIANTS = {"clip": {}, "no clipping (ε = ∞)": {"clip_eps": math.inf}, "adaptive KL penalty": {"variant": "kl_penalty"}}


def check_lab_variant(variant: str) -> None:
    """Refuse a variant the lab does not offer, naming those it does."""
    if variant not in LAB_VARIANTS:
        raise ConfigError(f"variant = {variant!r} is not one of the lab's: {', '.join(map(repr, LAB_VARIANTS))}.")


def lab_config(
    clip_eps: float = 0.2,
    update_epochs: int = 20,
    lr: float = 1e-3,
    num_minibatches: int = 4,
    variant: str = "clip",
    seed: int = 0,
    total_steps: int = 20_000,
) -> PPOConfig:
    """The config behind notebook 04's lab sliders; ``variant`` is one of ``LAB_VARIANTS``."""
    check_lab_variant(variant)
    settings = dict(clip_eps=clip_eps, update_epochs=update_epochs, lr=lr, num_minibatches=num_minibatches, seed=seed, total_steps=total_steps)
    return PPOConfig(**{**settings, **LAB_VARIANTS[variant]})


# Each implementation detail changed in turn from the defaults: switched off where the default
# has it on, switched on where the default leaves it off (value clipping, entropy, target KL).
ABLATIONS: dict[str, dict[str, object]] = {
    "defaults": {},
    "one environment (1 × 1000 steps)": {"num_envs": 1, "steps_per_env": 1_000},
    "no GAE (λ = 1, Monte Carlo)": {"lam": 1.0},
    "no advantage normalization": {"norm_adv": False},
    "one epoch per batch": {"update_epochs": 1},
    "one minibatch (the whole batch)": {"num_minibatches": 1},
    "no ratio clipping (ε = ∞)": {"clip_eps": math.inf},
    "no gradient-norm clipping": {"clip_grad_norm": False},
    "no learning-rate annealing": {"anneal_lr": False},
    "no orthogonal initialization": {"orthogonal_init": False},
    "value clipping on": {"clip_vloss": True},
    "entropy bonus on (c_H = 0.01)": {"ent_coef": 0.01},
    "early stop at target KL 0.01": {"target_kl": 0.01},
}
