"""Returns and advantages: discounted return, reward-to-go, GAE(λ), whitening.

All functions are time-major: a tensor of shape ``(T, *batch)`` holds step t of every
parallel stream (environment copy, or sequence of tokens) at index t.  Nothing here
knows about CartPole; the language-model trainer calls the same functions.

Episode boundaries are given by two boolean tensors of that shape:

* ``terminated[t]``: the state reached after step t is terminal; its value is 0.
* ``ends[t]``: the episode ends after step t, because it terminated *or* was truncated
  (a time limit).  Nothing flows backwards across an end.

A truncated episode is not terminal: the return it was cut off from is estimated by the
value of its true final state, ``next_values[t] = V(s_{t+1})``.  The last row of a batch
is treated like a truncation: whatever follows it is represented by ``next_values``.
"""
from __future__ import annotations

import torch


def discounted_cumsum(x: torch.Tensor, discount: float, ends: torch.Tensor) -> torch.Tensor:
    """y_t = x_t + discount · (1 − end_t) · y_{t+1}, with y_T = 0 past the last row.

    The one backward recursion behind both reward-to-go and GAE.
    """
    out = torch.empty_like(x)
    carry = torch.zeros_like(x[0])
    keep = 1.0 - ends.to(x.dtype)
    for t in range(x.shape[0] - 1, -1, -1):
        carry = x[t] + discount * keep[t] * carry
        out[t] = carry
    return out


def discounted_return(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G = Σ_{t=0}^{T−1} γ^t r_t of one episode that ends after its last reward (1-D ``rewards`` of length T)."""
    powers = gamma ** torch.arange(rewards.shape[0], dtype=rewards.dtype)
    return (powers * rewards).sum()


def reward_to_go(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    ends: torch.Tensor,
    gamma: float,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ĝ_t = Σ_{k=0}^{K} γ^k r_{t+k}, where step t + K is the last step of t's episode in the stream.

    Nothing flows across an end.  Where that episode is cut off without terminating (truncated
    by a time limit, or cut by the end of the stream), its missing tail is bootstrapped:
    Ĝ_t gains γ^{K+1}·V(s_{t+K+1}), read from ``next_values[t + K]``.  A terminated episode's
    tail is 0.  Without ``next_values`` every tail counts as 0 (a pure Monte-Carlo return).
    """
    x = rewards
    if next_values is not None:
        cut_off = ends.to(rewards.dtype) * (1.0 - terminated.to(rewards.dtype))
        cut_off[-1] = 1.0 - terminated[-1].to(rewards.dtype)  # the batch ends after the last row
        x = rewards + gamma * cut_off * next_values
    return discounted_cumsum(x, gamma, ends)


def td_errors(
    rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> torch.Tensor:
    """δ_t = r_t + γ·(1 − terminated_t)·V(s_{t+1}) − V(s_t), the TD error.

    If V is the policy's value function V^π, E[δ_t | s_t, a_t] = Q^π(s_t, a_t) − V^π(s_t) = A^π(s_t, a_t):
    δ_t is an unbiased estimate of the advantage, and a biased one wherever V is wrong
    (Schulman et al., 2016, §3).
    """
    return rewards + gamma * (1.0 - terminated.to(rewards.dtype)) * next_values - values


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    ends: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized Advantage Estimation (Schulman et al., 2016, §3):

        Â_t = Σ_{l≥0} (γλ)^l δ_{t+l},   summed to the end of the episode that contains t,

    computed as Â_t = δ_t + γλ·(1 − end_t)·Â_{t+1}.  Equivalently, the k-step estimators
    Â_t^(k) = Σ_{l<k} γ^l δ_{t+l} = r_t + … + γ^{k−1} r_{t+k−1} + γ^k V(s_{t+k}) − V(s_t) averaged with
    weights (1 − λ)λ^{k−1}, k ≥ 1 (the weight past the episode's end falling on its longest one), so
    that Â_t + V(s_t) is the λ-return.  λ = 0 gives δ_t; λ = 1 gives the discounted return to the
    episode's end minus V(s_t), bootstrapped with V where the episode was cut off.
    """
    deltas = td_errors(rewards, values, next_values, terminated, gamma)
    return discounted_cumsum(deltas, gamma * lam, ends)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8, over: torch.Tensor | None = None) -> torch.Tensor:
    """(x − mean(x)) / (std(x) + eps), over the entries where ``mask`` is true (all if None).  With
    ``over`` (no mask), the mean and std are those of ``over``: the whole batch, gathered from every
    process, when ``x`` is one process's share of it."""
    if over is not None and mask is not None:
        raise ValueError("whiten: give a mask or the tensor whose statistics to use (over), not both.")
    if mask is None:
        stats = x if over is None else over
        return (x - stats.mean()) / (stats.std() + eps)
    m = mask.to(x.dtype)
    n = m.sum()
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + eps) * m
