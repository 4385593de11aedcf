"""Spot the bug (notebook 07): a PPO minibatch loss with two planted mistakes from the circulating
list, judged by its values and its gradients with respect to the logits and the values; the report
says which of the two planted mistakes the learner's version still has."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Categorical

from ppo_teach import mistakes
from ppo_teach.exercises.grading import NOTE, UNFINISHED, CheckResult, Exercise, inputs
from ppo_teach.losses import clipped_surrogate, entropy_bonus, value_loss

EPS, C_V, C_H = 0.2, 0.5, 0.05  # ε, c_V, c_H of the exercise
SPOT_THE_BUG_CASES = 4


def minibatch_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    entropy_sign: float = -1.0,
) -> torch.Tensor:
    """The loss PPO minimises on a minibatch (Schulman et al., 2017, eq. 9, negated):

        −L^CLIP(θ) + c_V·L^V(φ) − c_H·H̄(π_θ),   log π(a|s) = log_softmax(logits)[a],

    with ε, c_V, c_H = ``EPS``, ``C_V``, ``C_H``.  The defaults give the right loss; the planted
    mistakes pass ``log_prob=mistakes.raw_logit_log_prob`` or ``entropy_sign=+1``."""
    dist = Categorical(logits=logits)
    logp = dist.log_prob(actions) if log_prob is None else log_prob(logits, actions)
    return (
        -clipped_surrogate(logp, logp_old, advantages, EPS)
        + C_V * value_loss(values, returns)
        + entropy_sign * C_H * entropy_bonus(dist.entropy())
    )


PLANTED = {
    "raw logits": "mistake 4, log π(a|s) read from the raw logits (logits.gather) instead of log_softmax(logits)",
    "entropy sign": "the sign half of mistake 8, the entropy added to the loss (+ c_H·H̄), which penalises exploration, "
                    "instead of subtracted",
}


def with_planted(*names: str) -> Callable[..., torch.Tensor]:
    """``minibatch_loss`` with the planted mistakes ``names`` (keys of ``PLANTED``) left in."""
    log_prob = mistakes.raw_logit_log_prob if "raw logits" in names else None
    sign = 1.0 if "entropy sign" in names else -1.0
    return lambda logits, actions, logp_old, advantages, values, returns: minibatch_loss(
        logits, actions, logp_old, advantages, values, returns, log_prob, sign)


def _cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Minibatches of 4–8 states with 2–4 actions.  π_old is π with its logits perturbed, so that
    some ratios leave [1 − ε, 1 + ε]; the first case has π_old = π (every ratio 1)."""
    cases = []
    for i in range(SPOT_THE_BUG_CASES):
        n, k = int(torch.randint(4, 9, (1,), generator=gen)), int(torch.randint(2, 5, (1,), generator=gen))
        logits = torch.randn(n, k, generator=gen)
        actions = torch.randint(0, k, (n,), generator=gen)
        old_logits = logits if i == 0 else logits + 0.5 * torch.randn(n, k, generator=gen)
        cases.append({
            "logits": logits, "actions": actions,
            "logp_old": Categorical(logits=old_logits).log_prob(actions),
            "advantages": torch.randn(n, generator=gen), "values": torch.randn(n, generator=gen), "returns": torch.randn(n, generator=gen),
            NOTE: "π_old = π: every ratio is 1" if i == 0 else f"{n} states, {k} actions, π_old ≠ π",
        })
    return cases


def _variant_description(left: tuple[str, ...]) -> str:
    """Which planted mistakes a loss with ``left`` still in it has fixed, and which it has not."""
    if len(left) == len(PLANTED):
        return "the loss with both planted mistakes still in it (find them: the checker names each one once you have fixed the other)"
    fixed = next(PLANTED[name] for name in PLANTED if name not in left)
    return f"the loss with one planted mistake fixed and one still in it. Fixed: {fixed}. Still in it: {PLANTED[left[0]]}"


SPOT_THE_BUG = Exercise(
    name="spot the bug: ppo_loss(logits, actions, logp_old, advantages, values, returns)",
    reference=minibatch_loss,
    cases=_cases,
    known_mistakes={_variant_description(left): with_planted(*left) for left in (tuple(PLANTED), ("raw logits",), ("entropy sign",))},
    solutions=(minibatch_loss,),
    grad_wrt=("logits", "values"),
)


def _parts_that_differ(fn: Callable[..., torch.Tensor]) -> str:
    """Which of the loss's value and its gradients with respect to the logits and the values differ from
    ``minibatch_loss``'s on one case with π_old ≠ π, and where to look."""
    case = inputs(_cases(torch.Generator().manual_seed(0))[1])
    outcomes = []
    for f in (fn, minibatch_loss):
        logits, values = case["logits"].clone().requires_grad_(), case["values"].clone().requires_grad_()
        args = {**case, "logits": logits, "values": values}
        loss = f(*args.values())
        outcomes.append((loss.detach(), *torch.autograd.grad(loss, (logits, values), allow_unused=True)))
    (got, got_logits, got_values), (want, want_logits, want_values) = outcomes
    same = lambda a, b: a is not None and a.shape == b.shape and torch.allclose(a, b, atol=1e-5)  # noqa: E731
    if same(got_values, want_values) and not same(got_logits, want_logits):
        return "∂/∂values matches the right loss, ∂/∂logits does not: look at the log-probability and the entropy lines."
    if not same(got_values, want_values):
        return "∂/∂values differs from the right loss's: the value-loss line (or its coefficient c_v) changed."
    return "both gradients match the right loss's, but its value does not: a term that does not depend on the logits or the values changed."


def check_spot_the_bug(fn: Callable[..., torch.Tensor]) -> CheckResult:
    """Grade ``fn(logits, actions, logp_old, advantages, values, returns)``, the learner's repair of
    notebook 07's loss: values and gradients with respect to the logits and the values must match
    ``minibatch_loss``.  The verdict comes first: which planted mistakes are fixed and which remain
    (then nothing else), or that the loss matches none of those, which part differs, and the first
    case that differs."""
    result = SPOT_THE_BUG.check(fn)
    if result.passed:
        result.message = f"both planted mistakes fixed: {'; '.join(PLANTED.values())}. The loss {result.message}"
        return result
    details, hint, verdict = result.message.partition("\nhint: ")
    if hint:  # the answer equals a loss with planted mistakes left in: that is all there is to say
        verdict = verdict.removeprefix(f"on all {SPOT_THE_BUG_CASES} cases your answer equals ")
        result.message = verdict[0].upper() + verdict[1:]
    elif not any(s in details for s in (UNFINISHED, "raised ", "expected shape", "expected a tensor", "no gradient")):
        result.message = (f"your loss matches neither the right loss nor the loss with one or both planted mistakes left in. "
                          f"{_parts_that_differ(fn)}\n\n{details}")
    return result
