"""Losses shared by every algorithm, on CartPole and on the language model alike.

Every function takes tensors of any (matching) shape and an optional boolean ``mask`` of
the same shape: entries where the mask is false (padding tokens, say) are left out of
the mean.
"""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true (all entries if ``mask`` is None)."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L^PG(θ) = −mean_t[ log π_θ(a_t|s_t) · Â_t ].

    Its gradient is −mean_t[ ∇_θ log π_θ(a_t|s_t) · Â_t ], the sample estimate of the policy
    gradient (the log-derivative trick); minimising L^PG ascends the expected return.
    The advantages are constants: they carry no gradient.
    """
    return -masked_mean(logp * advantages.detach(), mask)


def surrogate_advantage(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L(θ) = mean_t[ r_t(θ) · Â_t ],  r_t(θ) = π_θ(a_t|s_t) / π_θold(a_t|s_t) = exp(log π_θ − log π_θold).

    The importance-sampled objective of TRPO (Schulman et al., 2015).  At θ = θ_old its gradient
    equals the policy gradient; away from θ_old it estimates the new policy's improvement from
    the old policy's data, which is only trustworthy while the two policies stay close.
    """
    ratio = torch.exp(logp - logp_old.detach())
    return masked_mean(ratio * advantages.detach(), mask)


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L^V(φ) = mean_t[ (V_φ(s_t) − Ĝ_t)² ], regression of the value onto the return targets."""
    return masked_mean((values - returns.detach()) ** 2, mask)


def entropy_bonus(entropy: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """H̄ = mean_t[ H(π_θ(·|s_t)) ], with H(π) = −Σ_a π(a) log π(a); added to the objective to keep exploring."""
    return masked_mean(entropy, mask)


def mean_kl(old: torch.distributions.Distribution, new: torch.distributions.Distribution, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL̄(π_old ‖ π_new) = mean_s Σ_a π_old(a|s) · log(π_old(a|s) / π_new(a|s)), exact for categorical policies."""
    return masked_mean(torch.distributions.kl_divergence(old, new), mask)
