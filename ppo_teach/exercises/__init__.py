"""Checkers for the notebooks' "your turn" exercises, one module per kind of answer:

* ``grading``: how an answer is called (positionally, on copies of each case's inputs), compared
  with the reference (values, and gradients for an objective) and reported; known mistakes are
  named only when the answer equals them on every case;
* ``returns``: the discounted return (00) and reward-to-go on a stream of episodes (01);
* ``conjugate_gradient``: conjugate gradient by its iterates and its products A·v (02);
* ``surrogate``: the clipped surrogate (03) and the k3 estimate of the KL (04);
* ``ppo_update``: one PPO update assembled from the package's pieces (03);
* ``logprobs``: a language model's per-token log-probabilities from its logits (05);
* ``token_rewards``: RLHF's per-token rewards, the score and the KL penalty (06);
* ``spot_the_bug``: a PPO loss with two planted mistakes, and which of them are fixed (07).

A checker never raises for a wrong answer, so a notebook keeps running.
"""
from __future__ import annotations

from ppo_teach.exercises.conjugate_gradient import (
    CONJUGATE_GRADIENT,
    check_conjugate_gradient,
)
from ppo_teach.exercises.grading import CheckResult, Exercise
from ppo_teach.exercises.logprobs import TOKEN_LOGPROBS, check_token_logprobs
from ppo_teach.exercises.ppo_update import (
    PPO_UPDATE,
    PPOUpdateExercise,
    check_ppo_update,
)
from ppo_teach.exercises.returns import (
    DISCOUNTED_RETURN,
    REWARD_TO_GO,
    check_discounted_return,
    check_reward_to_go,
)
from ppo_teach.exercises.surrogate import (
    APPROX_KL_K3,
    CLIPPED_SURROGATE,
    check_approx_kl_k3,
    check_clipped_surrogate,
)
from ppo_teach.exercises.spot_the_bug import SPOT_THE_BUG, check_spot_the_bug
from ppo_teach.exercises.token_rewards import TOKEN_REWARDS, check_token_rewards
from ppo_teach.show import Source, show

EXERCISES: dict[str, Exercise | PPOUpdateExercise] = {
    "discounted_return": DISCOUNTED_RETURN,
    "reward_to_go": REWARD_TO_GO,
    "conjugate_gradient": CONJUGATE_GRADIENT,
    "clipped_surrogate": CLIPPED_SURROGATE,
    "approx_kl_k3": APPROX_KL_K3,
    "ppo_update": PPO_UPDATE,
    "token_logprobs": TOKEN_LOGPROBS,
    "token_rewards": TOKEN_REWARDS,
    "spot_the_bug": SPOT_THE_BUG,
}


def solution(name: str) -> Source:
    """The package's reference implementation behind an exercise."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; the exercises are: {', '.join(EXERCISES)}")
    sources = [show(fn) for fn in EXERCISES[name].solutions]
    return Source(" and ".join(s.name for s in sources), "\n\n".join(s.code for s in sources))


__all__ = [
    "EXERCISES", "CheckResult", "Exercise", "solution",
    "check_discounted_return", "check_reward_to_go", "check_conjugate_gradient",
    "check_clipped_surrogate", "check_approx_kl_k3", "check_ppo_update", "check_token_logprobs", "check_token_rewards",
    "check_spot_the_bug",
]
