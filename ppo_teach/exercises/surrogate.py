"""The clipped surrogate (notebook 03) and the k3 estimate of the KL (notebook 04): values and
gradients with respect to the log-probabilities."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ppo_teach import losses
from ppo_teach.exercises.grading import CheckResult, Exercise


def _ratio_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Log-probabilities (every one < 0, as of actions that are not certain) whose ratios spread
    around 1 (some inside, some outside [1 − ε, 1 + ε]), advantages of both signs: hand-worked cases
    first, then random batches."""
    cases: list[dict[str, Any]] = [
        # π_old(a) = 0.5 and r below, inside and above [0.8, 1.2] for Â > 0, then for Â < 0;
        # asymmetric, so that every known mistake gives a different answer.
        {"logp": torch.log(0.5 * torch.tensor([0.5, 1.1, 1.3, 0.7, 0.9, 1.6])), "logp_old": torch.full((6,), math.log(0.5)),
         "advantages": torch.tensor([2.0, 1.0, 1.0, -1.0, -0.5, -2.0]), "eps": 0.2},
        # r = 1 everywhere: the first minibatch of every PPO update.
        {"logp": torch.log(torch.tensor([0.2, 0.5, 0.3])), "logp_old": torch.log(torch.tensor([0.2, 0.5, 0.3])),
         "advantages": torch.tensor([1.0, -2.0, 0.5]), "eps": 0.2},
    ]
    for eps in (0.1, 0.2, 0.3, 0.2, 0.2):
        n = int(torch.randint(5, 40, (1,), generator=gen))
        logp_old = -torch.rand(n, generator=gen) * 2 - 0.05
        logp = (logp_old + 0.4 * torch.randn(n, generator=gen)).clamp(max=-0.01)
        cases.append({"logp": logp, "logp_old": logp_old,
                      "advantages": torch.randn(n, generator=gen), "eps": eps})
    return cases


def _ratio(logp: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    return torch.exp(logp - logp_old)


CLIPPED_SURROGATE = Exercise(
    name="clipped_surrogate(logp, logp_old, advantages, eps) → L^CLIP",
    reference=losses.clipped_surrogate,
    cases=_ratio_cases,
    known_mistakes={
        "the unclipped surrogate mean(r·Â) (no clipping at all)": lambda logp, logp_old, adv, eps: (_ratio(logp, logp_old) * adv).mean(),
        "mean(clip(r, 1−ε, 1+ε)·Â): the clipped term alone, without the min": lambda logp, logp_old, adv, eps: (
            _ratio(logp, logp_old).clamp(1 - eps, 1 + eps) * adv).mean(),
        "the max of the two terms instead of the min (an optimistic bound, not a pessimistic one)": lambda logp, logp_old, adv, eps: torch.max(
            _ratio(logp, logp_old) * adv, _ratio(logp, logp_old).clamp(1 - eps, 1 + eps) * adv).mean(),
        "clipping the log-ratio to [−ε, ε] instead of the ratio to [1−ε, 1+ε]": lambda logp, logp_old, adv, eps: torch.min(
            _ratio(logp, logp_old) * adv, torch.exp((logp - logp_old).clamp(-eps, eps)) * adv).mean(),
        "the sum over samples instead of the mean": lambda logp, logp_old, adv, eps: losses.clipped_surrogate(logp, logp_old, adv, eps) * len(logp),
        "−L^CLIP, the loss to minimise (the exercise asks for the objective, to maximise)": lambda logp, logp_old, adv, eps: (
            -losses.clipped_surrogate(logp, logp_old, adv, eps)
        ),
    },
    solutions=(losses.clipped_surrogate,),
    grad_wrt=("logp",),
)

APPROX_KL_K3 = Exercise(
    name="approx_kl_k3(logp, logp_old) → mean[(r − 1) − log r]",
    reference=losses.approx_kl_k3,
    cases=lambda gen: [{k: v for k, v in c.items() if k in ("logp", "logp_old")} for c in _ratio_cases(gen)],
    known_mistakes={
        "k1 = mean(log π_old − log π_new), not k3": lambda logp, logp_old: (logp_old - logp).mean(),
        "mean[(1 − r) + log r], k3 with the wrong sign": lambda logp, logp_old: -losses.approx_kl_k3(logp, logp_old),
        "k2 = mean[½ (log r)²], another (biased) estimator from Schulman's note, not k3": lambda logp, logp_old: (
            0.5 * (logp - logp_old) ** 2).mean(),
        "k3 with r inverted (π_old/π_new), which does not estimate KL(π_old ‖ π_new); nor, from π_old's samples, "
        "the reverse KL(π_new ‖ π_old): its expectation is χ²(π_old ‖ π_new) − KL(π_old ‖ π_new)": lambda logp, logp_old: (
            losses.approx_kl_k3(logp_old, logp)
        ),
        "mean[r·log r − (r − 1)], the estimate of the reverse KL(π_new ‖ π_old) from π_old's samples, "
        "not of KL(π_old ‖ π_new)": lambda logp, logp_old: (
            _ratio(logp, logp_old) * (logp - logp_old) - (_ratio(logp, logp_old) - 1)).mean(),
        "k3 with r computed as logp / logp_old instead of exp(logp − logp_old): r = π/π_old is a ratio of "
        "probabilities, not of log-probabilities": lambda logp, logp_old: (logp / logp_old - 1 - torch.log(logp / logp_old)).mean(),
        "the sum over samples instead of the mean": lambda logp, logp_old: losses.approx_kl_k3(logp, logp_old) * len(logp),
    },
    solutions=(losses.approx_kl_k3,),
    grad_wrt=("logp",),
)


def check_clipped_surrogate(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old, advantages, eps)``: PPO's clipped surrogate objective (a mean, to
    maximise), its value and its gradient with respect to ``logp``."""
    return CLIPPED_SURROGATE.check(fn)


def check_approx_kl_k3(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old)``: the k3 estimate of KL(π_old ‖ π_new) from samples of π_old, its
    value and its gradient with respect to ``logp``."""
    return APPROX_KL_K3.check(fn)
