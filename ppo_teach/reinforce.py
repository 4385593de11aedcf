"""REINFORCE (Williams, 1992) with reward-to-go and an optional learned value baseline.

One update per batch:

    Ĝ_t = Σ_{k≥0} γ^k r_{t+k}                       (reward-to-go, within the episode)
    Â_t = Ĝ_t − V_φ(s_t)   (or Â_t = Ĝ_t without a baseline)
    θ ← θ + α ∇_θ mean_t[ log π_θ(a_t|s_t) · Â_t ]   (one Adam step on L^PG)
    φ ← argmin_φ mean_t[ (V_φ(s_t) − Ĝ_t)² ]          (a few Adam steps)

With a baseline, an episode cut off by a time limit or by the end of the batch is
bootstrapped from V_φ of its last state; without one, its missing tail counts as 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ppo_teach.advantages import reward_to_go, whiten
from ppo_teach.config import Bounds, bounded, budget
from ppo_teach.envs import make_vec_env
from ppo_teach.history import History
from ppo_teach.losses import mean_kl, policy_gradient_loss
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.rollout import Batch, Collector
from ppo_teach.training import Agent, TrainConfig, adam, budget_field, fit_value, run

LEARNING_RATE = Bounds(low=0.0, high=1.0, low_open=True, fix="use a small positive learning rate such as 1e-2.")


@dataclass
class ReinforceConfig(TrainConfig):
    total_steps: int = budget_field(full=200_000, fast=8_000)
    lr: float = bounded(1e-2, LEARNING_RATE)
    baseline: bool = True
    value_lr: float = bounded(1e-2, LEARNING_RATE)
    value_iters: int = bounded(40, Bounds(low=1, high=10_000, integer=True, fix="use e.g. 40 value-regression steps per batch."))
    normalize_advantages: bool = True


def advantages_and_returns(batch: Batch, value_fn: ValueFunction, cfg: ReinforceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(Â_t, Ĝ_t) for every row of the batch, as the module docstring defines them."""
    if not cfg.baseline:
        returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma)
        return returns, returns
    values, next_values = batch.values(value_fn)
    returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma, next_values)
    return returns - values, returns


class Reinforce(Agent):
    """REINFORCE's optimizers and its update."""

    def __init__(self, cfg: ReinforceConfig):
        super().__init__(cfg)
        self.policy_opt = adam(self.policy.parameters(), cfg.lr)
        self.value_opt = adam(self.value_fn.parameters(), cfg.value_lr)

    def update(self, batch: Batch) -> dict[str, float]:
        """One REINFORCE update on ``batch``; returns its statistics."""
        cfg = self.cfg
        advantages, returns = advantages_and_returns(batch, self.value_fn, cfg)
        if cfg.normalize_advantages:
            advantages = whiten(advantages)
        dist = self.policy(batch.obs)
        loss = policy_gradient_loss(dist.log_prob(batch.actions), advantages)
        self.policy_opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.policy.parameters()])
        self.policy_opt.step()
        with torch.no_grad():
            kl = mean_kl(dist, self.policy(batch.obs))
        stats = {"policy_loss": float(loss.detach()), "entropy": float(dist.entropy().mean().detach()), "kl": float(kl), "grad_norm": float(grad_norm)}
        if cfg.baseline:
            stats["value_loss"] = fit_value(self.value_fn, self.value_opt, batch.obs, returns, cfg.value_iters)
        return stats


def train(cfg: ReinforceConfig | None = None, progress: bool = True) -> History:
    """Train REINFORCE with the settings in ``cfg`` (defaults if None)."""
    return run(cfg or ReinforceConfig(), "reinforce", Reinforce, progress)


@dataclass
class GradientVariance:
    """Policy-gradient estimates ĝ from independent batches, with and without the baseline.

    ``samples[name]`` has shape (batches, parameters); ``total_variance[name]`` is
    tr Cov[ĝ] = Σ_i Var[ĝ_i], the expected squared distance of one batch's estimate from the mean.
    """

    samples: dict[str, torch.Tensor]

    @property
    def total_variance(self) -> dict[str, float]:
        return {name: float(g.var(dim=0).sum()) for name, g in self.samples.items()}

    @property
    def bias_ratio(self) -> float:
        """‖d̄‖² / (tr Cov[d] / n) for the paired differences d = ĝ_without − ĝ_with over n batches.

        The baseline term has expectation 0, so d̄ is pure noise and this ratio is about 1;
        a biased baseline would make it grow with n.
        """
        d = self.samples["without baseline"] - self.samples["with baseline"]
        return float(d.mean(dim=0).square().sum() / (d.var(dim=0).sum() / d.shape[0]))


def gradient_variance(
    policy: CategoricalPolicy, value_fn: ValueFunction, cfg: ReinforceConfig, batches: int, seed: int
) -> GradientVariance:
    """Estimate ĝ = −∇_θ L^PG on ``batches`` fresh batches from the same policy, twice per batch:

        without baseline: Â_t = Ĝ_t         with baseline: Â_t = Ĝ_t − V_φ(s_t)

    Both use the same Monte-Carlo reward-to-go Ĝ_t and no advantage normalisation, so the only
    difference is the baseline, which leaves E[ĝ] unchanged (E[∇ log π(a|s)·b(s)] = 0).
    """
    env = make_vec_env(cfg.env_id, cfg.num_envs, seed)
    collector = Collector(env, policy, seed)
    samples: dict[str, list[torch.Tensor]] = {"without baseline": [], "with baseline": []}
    for _ in range(batches):
        batch = collector.collect(cfg.steps_per_env)
        returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma)
        values, _ = batch.values(value_fn)
        logp = policy(batch.obs).log_prob(batch.actions)
        for name, adv in (("without baseline", returns), ("with baseline", returns - values)):
            grads = torch.autograd.grad(-policy_gradient_loss(logp, adv), list(policy.parameters()), retain_graph=True)
            samples[name].append(torch.cat([g.flatten() for g in grads]))
    env.close()
    return GradientVariance({name: torch.stack(gs) for name, gs in samples.items()})


def baseline_experiment(seed: int = 0) -> GradientVariance:
    """Notebook 01's measurement: train REINFORCE briefly, until its episodes last ~100–150 steps
    (a policy that still has a lot to learn), then compare the gradient estimator with and
    without its learned baseline on 30 fresh batches of 2,000 steps (10 in fast mode)."""
    trained = train(ReinforceConfig(seed=seed, total_steps=budget(full=24_000, fast=8_000)), progress=False)
    return gradient_variance(
        trained.models["policy"], trained.models["value"], ReinforceConfig(steps_per_env=250),
        batches=budget(full=30, fast=10), seed=seed + 1,
    )
