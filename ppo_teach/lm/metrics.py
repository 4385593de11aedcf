"""What an RLHF evaluation measures on held-out prompts, and the course's target for it.

- ``positive_rate``: the share of texts the reward calls positive — VADER's compound score above
  0.05 (Hutto & Gilbert's own threshold for "positive"), or a classifier's POSITIVE logit above 0.
- ``distinct2``: unique word bigrams / word bigrams over all the responses (Li et al., 2016): a
  policy that repeats itself scores low.
- fluency is the grammar's (``grammar.fluency``), the KL the exact Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t)).
- ``meets_target``: positive rate ≥ 0.95, KL ≤ 6 nats per response, fluency ≥ 0.9 × the
  pretrained model's (issue 9's target).
"""
from __future__ import annotations

import torch

TARGET_POSITIVE_RATE = 0.95
TARGET_MAX_KL = 6.0
TARGET_FLUENCY_SHARE = 0.9


def positive_rate(scores: torch.Tensor, threshold: float) -> float:
    """#{i : score_i > threshold} / n (each reward's ``positive_threshold``)."""
    return float((scores > threshold).float().mean())


def distinct2(texts: list[str]) -> float:
    """distinct-2 = #unique word bigrams / #word bigrams, pooled over ``texts`` (NaN when none)."""
    bigrams = [pair for text in texts for pair in zip(text.split(), text.split()[1:])]
    return len(set(bigrams)) / len(bigrams) if bigrams else float("nan")


def meets_target(evaluation: dict[str, float], fluency_baseline: float) -> bool:
    """positive rate ≥ 0.95 and KL ≤ 6 and fluency ≥ 0.9 × ``fluency_baseline``."""
    return (
        evaluation["positive_rate"] >= TARGET_POSITIVE_RATE
        and evaluation["kl"] <= TARGET_MAX_KL
        and evaluation["fluency"] >= TARGET_FLUENCY_SHARE * fluency_baseline
    )


def seconds_to_target(evaluations: list[dict[str, float]]) -> float | None:
    """The training seconds at the first evaluation that ``meets_target``, the first evaluation
    (before any update: the pretrained model) giving the fluency baseline; None if none does."""
    baseline = evaluations[0]["fluency"]
    return next((e["seconds"] for e in evaluations if meets_target(e, baseline)), None)
