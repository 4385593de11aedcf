"""REINFORCE (Williams, 1992) with reward-to-go and an optional learned value baseline.

The objective is the expected discounted return of the time-unlimited task,
J_γ(θ) = E[Σ_t γ^t r_t], whose exact gradient is

    ∇J_γ(θ) = E[ Σ_t γ^t ∇_θ log π_θ(a_t|s_t) · Ĝ_t ].

Like practical implementations (Thomas, 2014; Nota & Thomas, 2020), the update drops the
γ^t factor, so its expectation is not ∇J_γ (``discount_weight_gradients`` shows a case).
One update per batch:

    Ĝ_t = Σ_{k≥0} γ^k r_{t+k}                       (reward-to-go, within the episode)
    Â_t = Ĝ_t − V_φ(s_t)   (or Â_t = Ĝ_t without a baseline)
    θ ← one Adam step computed from ∇_θ mean_t[ log π_θ(a_t|s_t) · Â_t ]   (minimising L^PG)
    φ ← a few Adam steps on mean_t[ (V_φ(s_t) − Ĝ_t)² ]

With a baseline, an episode cut off by a time limit or by the end of the batch is
bootstrapped from V_φ of its next state; without one, its missing tail counts as 0.
``normalize_advantages`` whitens Â with a baseline (subtracting the batch mean is one more,
constant, baseline) and only rescales Ĝ without one, so that run has no baseline at all.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ppo_teach.advantages import reward_to_go, whiten
from ppo_teach.config import Bounds, bounded, budget
from ppo_teach.envs import make_vec_env
from ppo_teach.history import History
from ppo_teach.losses import mean_kl, policy_gradient_loss
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.rollout import Batch, Collector, collect_batch
from ppo_teach.optim import adam
from ppo_teach.training import Agent, Callback, TrainConfig, budget_field, fit_value, run

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
    """(Â_t, Ĝ_t) for every row of the batch: the weight of log π_θ(a_t|s_t) in the update, and
    V_φ's regression target.

    With a baseline:    Â_t = Ĝ_t − V_φ(s_t), whitened (Â − mean Â) / std Â if ``normalize_advantages``.
    Without a baseline: Â_t = Ĝ_t, divided by std Ĝ if ``normalize_advantages``: a positive
    scale, not centred, since subtracting the batch mean would itself be a baseline.
    """
    if not cfg.baseline:
        returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma)
        return (returns / (returns.std() + 1e-8) if cfg.normalize_advantages else returns), returns
    values, next_values = batch.values(value_fn)
    returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma, next_values)
    advantages = returns - values
    return (whiten(advantages) if cfg.normalize_advantages else advantages), returns


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
        dist = self.policy(batch.obs)
        loss = policy_gradient_loss(dist.log_prob(batch.actions), advantages)
        self.policy_opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), math.inf)  # the norm, nothing clipped
        self.policy_opt.step()
        with torch.no_grad():
            kl = mean_kl(dist, self.policy(batch.obs))
        stats = {"policy_loss": float(loss.detach()), "entropy": float(dist.entropy().mean().detach()), "kl": float(kl), "grad_norm": float(grad_norm)}
        if cfg.baseline:
            stats["value_loss"] = fit_value(self.value_fn, self.value_opt, batch.obs, returns, cfg.value_iters)
        return stats


def train(cfg: ReinforceConfig | None = None, progress: bool = True, callback: Callback | None = None) -> History:
    """Train REINFORCE with the settings in ``cfg`` (defaults if None); ``callback(history)`` after every update."""
    return run(cfg or ReinforceConfig(), "reinforce", Reinforce, progress, callback)


@dataclass
class GradientVariance:
    """Policy-gradient estimates ĝ from successive batches of one fixed policy, with and without
    the baseline.

    ``samples[name]`` has shape (batches, parameters); ``total_variance[name]`` is
    tr Cov[ĝ] = Σ_i Var[ĝ_i], the expected squared distance of one batch's estimate from the mean.
    ``episode_lengths`` are those of the episodes that finished while the batches were collected.
    """

    samples: dict[str, torch.Tensor]
    episode_lengths: list[int] = field(default_factory=list)

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
    policy: CategoricalPolicy, value_fn: ValueFunction, cfg: ReinforceConfig, batches: int, seed: int, progress: bool = False
) -> GradientVariance:
    """Estimate ĝ = −∇_θ L^PG on ``batches`` successive batches of the same (fixed) policy, twice
    per batch (an episode may run across two batches, so neighbouring batches are not quite
    independent):

        without baseline: Â_t = Ĝ_t         with baseline: Â_t = Ĝ_t − V_φ(s_t)

    Both use the same Monte-Carlo reward-to-go Ĝ_t and no advantage normalisation, so the only
    difference is the baseline, which leaves E[ĝ] unchanged (E[∇ log π(a|s)·b(s)] = 0).
    ``progress`` shows a bar over the batches.
    """
    env = make_vec_env(cfg.env_id, cfg.num_envs, seed)
    collector = Collector(env, policy, seed)
    samples: dict[str, list[torch.Tensor]] = {"without baseline": [], "with baseline": []}
    for _ in tqdm(range(batches), desc="gradient estimates", disable=not progress, leave=False):
        batch = collector.collect(cfg.steps_per_env)
        returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma)
        values, _ = batch.values(value_fn)
        logp = policy(batch.obs).log_prob(batch.actions)
        for name, adv in (("without baseline", returns), ("with baseline", returns - values)):
            grads = torch.autograd.grad(-policy_gradient_loss(logp, adv), list(policy.parameters()), retain_graph=True)
            samples[name].append(torch.cat([g.flatten() for g in grads]))
    env.close()
    return GradientVariance({name: torch.stack(gs) for name, gs in samples.items()}, collector.episodes.lengths)


def baseline_experiment(seed: int = 0, progress: bool = True) -> GradientVariance:
    """Notebook 01's measurement: train REINFORCE briefly (24,000 steps; 8,000 in fast mode), then
    compare the gradient estimator with and without its learned baseline on 30 successive
    batches of 2,000 steps (10 in fast mode) from that policy, held fixed.  ``progress`` shows
    a bar over each of the two stages."""
    trained = train(ReinforceConfig(seed=seed, total_steps=budget(full=24_000, fast=8_000)), progress=progress)
    return gradient_variance(
        trained.models["policy"], trained.models["value"], ReinforceConfig(steps_per_env=250),
        batches=budget(full=30, fast=10), seed=seed + 1, progress=progress,
    )


@dataclass
class Bootstrapping:
    """How much of one batch's reward-to-go Ĝ_t comes from V_φ rather than from rewards.

    A row whose episode is cut off after K more steps (truncated, or unfinished when the batch
    ends) has Ĝ_t = Σ_{k≤K} γ^k r_{t+k} + γ^{K+1}·V_φ(s_{t+K+1}); a terminated episode's rows have
    no V_φ term (weight 0)."""

    rows: float  # the share of rows whose Ĝ_t has a V_φ term
    weight: float  # mean_t γ^{K+1}, the weight of V_φ in Ĝ_t (0 on terminated rows)
    value_share: float  # mean_t γ^{K+1}·V_φ(s_{t+K+1}) / Ĝ_t, the part of Ĝ_t that V_φ supplies
    terminations: int  # episodes that terminated in the batch
    truncations: int  # episodes the time limit cut off in the batch


def bootstrapping(policy: CategoricalPolicy, value_fn: ValueFunction, cfg: ReinforceConfig, seed: int) -> Bootstrapping:
    """Measure ``Bootstrapping`` on one batch of ``policy`` from fresh start states, with Ĝ_t computed
    as the update computes it.  With r ≡ 0 and next_values ≡ 1, ``reward_to_go`` gives the weights γ^{K+1}
    (and with γ = 1 as well, 1 on exactly the cut-off rows); with r ≡ 0 and V_φ's next values, the V_φ part."""
    batch = collect_batch(cfg.env_id, cfg.num_envs, policy, seed, cfg.steps_per_env)
    _, next_values = batch.values(value_fn)
    zeros = torch.zeros_like(batch.rewards)
    ones = torch.ones_like(zeros)
    weights = reward_to_go(zeros, batch.terminated, batch.ends, cfg.gamma, ones)
    from_values = reward_to_go(zeros, batch.terminated, batch.ends, cfg.gamma, next_values)
    returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma, next_values)
    return Bootstrapping(
        rows=float(reward_to_go(zeros, batch.terminated, batch.ends, 1.0, ones).mean()),  # 1 on cut-off rows, else 0
        weight=float(weights.mean()),
        value_share=float((from_values / returns).mean()),
        terminations=int(batch.terminated.sum()),
        truncations=int((batch.ends & ~batch.terminated).sum()),
    )


@dataclass
class DiscountWeightGradients:
    """Three gradients, with respect to the logits, of a problem small enough to enumerate."""

    exact: torch.Tensor  # ∇J_γ(θ), by autograd through J_γ(θ) = Σ_τ p_θ(τ) Σ_t γ^t r_t
    with_discount_weight: torch.Tensor  # E[Σ_t γ^t ∇_θ log π_θ(a_t) Ĝ_t], the policy gradient of J_γ
    without_discount_weight: torch.Tensor  # E[Σ_t ∇_θ log π_θ(a_t) Ĝ_t], what REINFORCE's update follows


def discount_weight_gradients(step_rewards: torch.Tensor, logits: torch.Tensor, gamma: float) -> DiscountWeightGradients:
    """Exact expectations on a T-step problem, T = ``step_rewards.shape[0]``: the states follow
    each other deterministically, the policy π_θ = softmax(θ), θ = ``logits``, ignores them, and
    action a at step t pays r_t = ``step_rewards[t, a]``; the episode terminates after step T − 1.

    Every trajectory τ = (a_0, …, a_{T−1}) is enumerated, p_θ(τ) = Π_t π_θ(a_t), and with the
    reward-to-go Ĝ_t = Σ_{k≥t} γ^{k−t} r_k the expectations are sums over τ, not samples.
    """
    steps, n_actions = step_rewards.shape
    theta = logits.detach().clone().requires_grad_(True)
    log_pi = torch.log_softmax(theta, dim=0)
    discounts = gamma ** torch.arange(steps, dtype=step_rewards.dtype)
    ends = torch.zeros(steps, dtype=torch.bool)
    ends[-1] = True
    objective = weighted = unweighted = torch.zeros(())
    for actions in itertools.product(range(n_actions), repeat=steps):
        a = torch.tensor(actions)
        rewards = step_rewards[torch.arange(steps), a]
        logp = log_pi[a]
        prob = logp.sum().exp()
        returns = reward_to_go(rewards, ends, ends, gamma)
        objective = objective + prob * (discounts * rewards).sum()
        weighted = weighted + prob.detach() * (discounts * logp * returns).sum()
        unweighted = unweighted + prob.detach() * (logp * returns).sum()
    grads = [torch.autograd.grad(f, theta, retain_graph=True)[0] for f in (objective, weighted, unweighted)]
    return DiscountWeightGradients(*grads)
