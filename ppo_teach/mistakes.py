"""Wrong versions of policy-gradient code as it circulates in blog posts on PPO and LLMs (notebook 07).

Every function here runs, and every one is wrong.  Each docstring says what is wrong, what the code
does instead, and where the right version lives in the package.  Nothing in the course's algorithms
imports this module; ``ppo_teach.mistake_lab`` runs each one beside the right one and measures the
difference.  The numbers follow the list in the course's design ("What circulates wrongly"):

1. ``ArgmaxCategorical``, ``ArgmaxPolicy``, ``ArgmaxPPO``: greedy actions inside a policy-gradient loop.
2. ``clamped_logprob_surrogate``: probabilities clamped instead of the ratio clipped.
3. ``immediate_reward_advantage``: Â = r_t − V(s_t).
4. ``raw_logit_log_prob``: the logit of the action used as its log-probability.
5. ``penalised_gradient_step``, ``PenalisedGradientTRPO``: a "TRPO" that is gradient ascent with a
   penalty on ‖θ − θ_old‖².
6. and 7. are false claims, not code (notebook 07 states the facts with their sources).
8. ``sampled_entropy``: the entropy "bonus" −log π(a_t)·(1 − done_t), used with the wrong sign.
9. ``advantage_as_value_target``: the critic regressed onto Â.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Categorical
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ppo_teach import ppo, trpo
from ppo_teach.losses import masked_mean
from ppo_teach.config import Bounds, bounded


class ArgmaxCategorical(Categorical):
    """Mistake 1: a categorical distribution whose ``sample()`` returns the most probable action.

    Wrong because the policy gradient ∇J ∝ E_{s~d^π, a~π}[∇log π(a|s)·A(s, a)] is an expectation over
    the actions *the policy samples*.  Taking a* = argmax_a π(a|s) every time evaluates ∇log π·A at one
    action per state: the estimate is deterministic and biased (it is ∇log π(a*|s)·A(s, a*), not an
    average over π), so more samples do not bring it closer to ∇J, and the other actions are tried
    only when the argmax flips.  The log-probabilities and
    the entropy are those of the real π.  Right: ``Categorical.sample()``, as ``rollout.Collector``
    does."""

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.logits.argmax(-1).expand(torch.Size(sample_shape) + self.batch_shape)


class ArgmaxPolicy(nn.Module):
    """Mistake 1 as a policy: the wrapped policy's π(·|s) as an ``ArgmaxCategorical``, so that a
    collector acting with it always takes the greedy action (same parameters as ``policy``)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> ArgmaxCategorical:
        return ArgmaxCategorical(logits=self.policy(obs).logits, validate_args=False)


class ArgmaxPPO(ppo.PPO):
    """Mistake 1 in training: ``ppo.PPO`` whose policy acts greedily (``ArgmaxPolicy``) while it
    collects; the update is PPO's own, with the log-probabilities of the actions taken."""

    def __init__(self, cfg: ppo.PPOConfig):
        super().__init__(cfg)
        self.policy = ArgmaxPolicy(self.policy)


def clamped_logprob_surrogate(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, eps: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mistake 2: mean_t[ exp(log clamp(π_θ(a_t|s_t), ε, 1 − ε) − log π_old(a_t|s_t)) · Â_t ].

    The probability is clamped to [ε, 1 − ε] (equivalently its log to [log ε, log(1 − ε)]) where PPO
    clips the *ratio* r_t = π_θ/π_old to [1 − ε, 1 + ε].  A probability inside [ε, 1 − ε] can still
    move by any factor, so nothing keeps the ratio near 1: from 0.2 to 0.8 it is 4.  The gradient
    vanishes only where π_θ(a_t|s_t) lies outside [ε, 1 − ε], whatever the advantage.  (Clamping the
    log-probabilities themselves to [ε, 1 − ε] is worse: every log-probability is ≤ 0 < ε, so all
    become the constant ε and the gradient is zero everywhere.)  Right: ``losses.clipped_surrogate``.
    """
    clamped = logp.clamp(math.log(eps), math.log(1.0 - eps))
    return masked_mean(torch.exp(clamped - logp_old.detach()) * advantages.detach(), mask)


def immediate_reward_advantage(rewards: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mistake 3: Â_t = r_t − V(s_t), the immediate reward standing in for the return R_t.

    r_t − V(s_t) compares one reward with the value of everything that follows, and says nothing
    about what the action led to later.  It is GAE with γ = 0 (δ_t = r_t − V(s_t)), which optimises
    the *immediate* reward only.  On CartPole every step pays r_t = 1 whatever the action, so Â_t
    carries no information about the action at all.  Right: ``advantages.gae`` (or
    ``advantages.reward_to_go`` minus V)."""
    return rewards - values


def raw_logit_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Mistake 4: the chosen action's raw logit z_a used as log π(a|s).

    log π(a|s) = z_a − log Σ_b exp(z_b) (log-softmax).  Without the normaliser the "log-probability"
    can be positive, exp of it does not sum to 1, and its gradient with respect to the logits is the
    one-hot e_a instead of e_a − π.  The score-function estimate then gains the term
    E_{a~π}[Â]·π: biased wherever the advantages do not average zero over the actions at a state;
    with plain returns, all positive (no baseline), it pushes towards the actions the policy already
    prefers, and with a negative mean away from them.  Right: ``Categorical(logits=…).log_prob`` (= ``torch.log_softmax(logits, -1)``
    gathered at the actions)."""
    return logits.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def penalised_gradient_step(problem: trpo.TrustRegionProblem, lr: float, penalty: float, iters: int) -> torch.Tensor:
    """Mistake 5: "TRPO" as ``iters`` steps of gradient ascent on L(θ) − penalty·‖θ − θ_old‖², leaving
    the policy at the result; returns the step θ − θ_old.

    TRPO bounds the *KL divergence* between the old and new policies, KL̄(π_old ‖ π_θ) ≤ δ, and
    enforces it with a line search that accepts the first step with KL̄ ≤ δ and a higher surrogate
    (Schulman et al., 2015).  A penalty on the Euclidean distance of the parameters does not control
    the KL: on the linearised surrogate L ≈ gᵀΔθ its optimum is Δθ = g/(2·penalty), a plain
    policy-gradient step of size 1/(2·penalty), and how far the policy moves for a given ‖Δθ‖
    (KL̄ ≈ ½ΔθᵀFΔθ, F the Fisher matrix) depends on the network and the states, which nothing here
    measures.  Right: ``trpo.TRPO.policy_step`` (natural gradient F⁻¹g, step to ½ΔθᵀFΔθ = δ, line
    search on the exact KL̄)."""
    theta_old = parameters_to_vector(problem.params).detach().clone()
    theta = theta_old.clone()
    for _ in range(iters):
        vector_to_parameters(theta, problem.params)
        objective = problem.surrogate() - penalty * (parameters_to_vector(problem.params) - theta_old).square().sum()
        grad = trpo.flat_grad(objective, problem.params)
        theta = theta + lr * grad
    vector_to_parameters(theta, problem.params)
    return theta - theta_old


@dataclass
class PenalisedTRPOConfig(trpo.TRPOConfig):
    """``trpo.TRPOConfig`` plus the penalised step's settings; ``max_kl`` is only the bound it is measured against."""

    penalised_lr: float = bounded(0.5, Bounds(low=0.0, high=10.0, low_open=True, fix="use a positive step size such as 0.5."))
    penalty: float = bounded(0.1, Bounds(low=0.0, fix="use a non-negative penalty coefficient such as 0.1."))
    penalised_iters: int = bounded(10, Bounds(low=1, high=1_000, integer=True, fix="use e.g. 10 gradient steps."))


class PenalisedGradientTRPO(trpo.TRPO):
    """Mistake 5 as an agent: ``trpo.TRPO`` with its policy step replaced by ``penalised_gradient_step``
    (same advantages, same value regression).  It records the exact KL̄ of each step, which it
    never looks at."""

    def policy_step(self, problem: trpo.TrustRegionProblem) -> dict[str, float]:
        cfg = self.cfg
        step = penalised_gradient_step(problem, cfg.penalised_lr, cfg.penalty, cfg.penalised_iters)
        with torch.no_grad():
            kl = float(problem.kl())
        return {"kl": kl, "kl_over_delta": kl / cfg.max_kl, "step_norm": float(step.norm())}


def sampled_entropy(logp: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
    """Mistake 8: "entropy" = mean_t[ −log π_θ(a_t|s_t) · (1 − done_t) ], then *added* to the loss
    (loss + c_H·entropy), which penalises it.

    Two things are wrong.  The sign: a bonus is subtracted from the loss (``ppo.PPO`` minimises
    −L^CLIP + c_V·L^V − c_H·H̄).  And the estimate: with a_t drawn from π_old, −log π_θ(a_t|s_t)
    estimates the cross-entropy −E_{a~π_old}[log π_θ(a|s)] = H(π_old) + KL(π_old ‖ π_θ), whose
    gradient at θ = θ_old is zero in expectation (Σ_a π ∇log π = ∇Σ_a π = 0): it is not the entropy's
    gradient, and with the wrong sign it acts as a penalty on KL(π_old ‖ π_θ).  The mask (1 − done_t)
    drops the last step of each episode for no reason: the entropy of π(·|s_t) does not depend on
    what followed.  Right: ``losses.entropy_bonus(dist.entropy())``, the exact
    H(π_θ(·|s_t)) = −Σ_a π_θ(a|s_t) log π_θ(a|s_t), subtracted from the loss."""
    return masked_mean(-logp * (1.0 - dones.to(logp.dtype)))


def advantage_as_value_target(advantages: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mistake 9: the critic's regression target set to the advantage Â_t itself.

    V(s_t) should predict the return; Â_t = Ĝ_t^λ − V(s_t) is how much better than V the step went.
    Regressing V onto it gives V_new ≈ Ĝ^λ(V_old) − V_old: a V that predicted the returns exactly
    would be sent to 0 by the next refit.  With λ = 1 full refits alternate between V and G − V; the
    fixed point is where 2V = Ĝ^λ(V) (G/2 for λ = 1), a shrunk, short-horizon value, not the return,
    and partial refits (a few optimizer steps each) settle near it.  ``values``
    is not used: that is the mistake.  Right: the target Â_t + V(s_t), the λ-return
    (``training.gae_and_targets``)."""
    return advantages
