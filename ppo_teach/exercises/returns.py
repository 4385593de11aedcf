"""The returns exercises: the discounted return of an episode (notebook 00) and reward-to-go
on a stream of episodes, terminated, truncated and cut off (notebook 01)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ppo_teach import advantages
from ppo_teach.exercises.grading import CheckResult, Exercise


def _episode_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Hand-worked episodes first, then random ones of random length and discount."""
    cases: list[dict[str, Any]] = [
        {"rewards": torch.tensor([1.0, 1.0, 1.0]), "gamma": 0.5},
        {"rewards": torch.tensor([0.0, 0.0, 1.0]), "gamma": 0.9},
        {"rewards": torch.tensor([2.0]), "gamma": 0.99},
        {"rewards": torch.tensor([1.0, -1.0, 2.0, 0.5]), "gamma": 1.0},
        {"rewards": torch.tensor([3.0, 1.0, 4.0]), "gamma": 0.0},
    ]
    for _ in range(20):
        length = int(torch.randint(1, 30, (1,), generator=gen))
        gamma = round(float(torch.rand(1, generator=gen)), 3)
        cases.append({"rewards": torch.randn(length, generator=gen), "gamma": gamma})
    return cases


DISCOUNTED_RETURN = Exercise(
    name="discounted_return(rewards, gamma) → G = Σ_t γ^t r_t",
    reference=advantages.discounted_return,
    cases=_episode_cases,
    known_mistakes={
        "the undiscounted sum (γ left out)": lambda rewards, gamma: rewards.sum(),
        "Σ_t γ^(t+1) r_t (the first reward is discounted too)": lambda rewards, gamma: gamma * advantages.discounted_return(rewards, gamma),
        "Σ_t γ^(T−1−t) r_t: the powers of γ run backwards (the last reward is the undiscounted one)": lambda rewards, gamma: (
            advantages.discounted_return(rewards.flip(0), gamma)
        ),
    },
    solutions=(advantages.discounted_return,),
)


def _flags(*bits: int) -> torch.Tensor:
    return torch.tensor(bits, dtype=torch.bool)


def _stream_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """One stream of T steps holding several episodes: hand-worked ones first (one terminated
    episode; two episodes; a truncation with a bootstrap value; a stream cut off mid-episode),
    then random ones.  ``next_values[t]`` stands for V(s_{t+1}); it is not 0 at a termination,
    as a value network knows nothing of terminal states."""
    cases: list[dict[str, Any]] = [
        {"rewards": torch.tensor([1.0, 1.0, 1.0]), "terminated": _flags(0, 0, 1), "ends": _flags(0, 0, 1),
         "gamma": 0.5, "next_values": torch.tensor([0.5, 0.5, 4.0])},
        {"rewards": torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0]), "terminated": _flags(0, 1, 0, 0, 1), "ends": _flags(0, 1, 0, 0, 1),
         "gamma": 0.9, "next_values": torch.tensor([1.0, 2.0, 1.0, 1.0, 2.0])},
        {"rewards": torch.tensor([1.0, 1.0, 1.0, 1.0]), "terminated": _flags(0, 0, 0, 1), "ends": _flags(0, 1, 0, 1),
         "gamma": 0.5, "next_values": torch.tensor([0.0, 10.0, 0.0, 3.0])},
        {"rewards": torch.tensor([2.0, 1.0, 1.0]), "terminated": _flags(1, 0, 0), "ends": _flags(1, 0, 0),
         "gamma": 0.9, "next_values": torch.tensor([5.0, 1.0, 5.0])},
    ]
    for _ in range(20):
        length = int(torch.randint(1, 30, (1,), generator=gen))
        ends = torch.rand(length, generator=gen) < 0.25
        terminated = ends & (torch.rand(length, generator=gen) < 0.5)
        cases.append({"rewards": torch.randn(length, generator=gen), "terminated": terminated, "ends": ends,
                      "gamma": round(float(torch.rand(1, generator=gen)), 3), "next_values": 3 * torch.randn(length, generator=gen)})
    return cases


def _episode_starts(ends: torch.Tensor) -> torch.Tensor:
    """For every step, the index of the first step of its episode."""
    steps = torch.arange(len(ends))
    starts = torch.cat([torch.ones(1, dtype=torch.bool), ends[:-1]])
    return torch.cummax(torch.where(starts, steps, 0), dim=0).values


def _forward_sum(rewards: torch.Tensor, ends: torch.Tensor, gamma: float) -> torch.Tensor:
    """y_t = r_t + γ·y_{t−1} within each episode: the discounted sum of the rewards up to t."""
    starts = torch.cat([torch.ones(1, dtype=torch.bool), ends[:-1]])
    return advantages.discounted_cumsum(rewards.flip(0), gamma, starts.flip(0)).flip(0)


def _return_from_next_state(rewards, terminated, ends, gamma, next_values) -> torch.Tensor:
    """Ĝ_{t+1} at step t (the sum starts one step late): Ĝ_{t+1} within an episode, V(s_{t+1})
    where the episode is cut off, 0 after a termination."""
    rtg = advantages.reward_to_go(rewards, terminated, ends, gamma, next_values)
    cut_off = ends & ~terminated
    cut_off[-1] = ~terminated[-1]
    following = torch.cat([rtg[1:], rtg.new_zeros(1)])
    return torch.where(ends, 0.0, following) + torch.where(cut_off, next_values, 0.0)


def _last_step_not_bootstrapped(rewards, terminated, ends, gamma, next_values) -> torch.Tensor:
    """The reward-to-go with truncations bootstrapped but not the stream's last step when the batch
    cut its episode off (the usual loop that starts its running sum at 0 and resets it only at ends)."""
    values = next_values.clone()
    if not ends[-1]:
        values[-1] = 0.0
    return advantages.reward_to_go(rewards, terminated, ends, gamma, values)


REWARD_TO_GO = Exercise(
    name="reward_to_go(rewards, terminated, ends, gamma, next_values) → Ĝ_t = Σ_{k≥0} γ^k r_{t+k} to the end of t's episode, "
    "+ γ^{K+1}·V bootstrapped where that episode is cut off",
    reference=advantages.reward_to_go,
    cases=_stream_cases,
    known_mistakes={
        "the single-episode reward-to-go run over the whole stream: no reset at episode ends (the next episode's "
        "rewards leak into this one's returns), and nothing bootstrapped": lambda r, term, ends, gamma, v: advantages.reward_to_go(r, term, torch.zeros_like(ends), gamma),
        "a sum with no reset at episode ends (the next episode's rewards leak into this one's returns), "
        "bootstrapped only at the stream's last step": lambda r, term, ends, gamma, v: (
            advantages.reward_to_go(r, term, torch.zeros_like(ends), gamma, v)
        ),
        "the reward-to-go with truncations treated as terminations (a truncated episode is not bootstrapped "
        "with γ·V(s_{t+1}))": lambda r, term, ends, gamma, v: advantages.reward_to_go(r, ends, ends, gamma, v),
        "the reward-to-go with the stream's cut-off last step not bootstrapped (truncations are): the batch "
        "stopped mid-episode there, so Ĝ_{T−1} = r_{T−1} + γ·next_values[T−1] unless it terminated": _last_step_not_bootstrapped,
        "the reward-to-go with nothing bootstrapped (neither truncations nor the stream's cut-off last step)": lambda r, term, ends, gamma, v: (
            advantages.reward_to_go(r, term, ends, gamma)
        ),
        "the reward-to-go bootstrapped at terminations too (after a termination there is nothing to bootstrap: "
        "V(terminal) = 0)": lambda r, term, ends, gamma, v: advantages.reward_to_go(r, torch.zeros_like(term), ends, gamma, v),
        "the undiscounted reward-to-go (γ left out)": lambda r, term, ends, gamma, v: advantages.reward_to_go(r, term, ends, 1.0, v),
        "the discounted sum of the rewards *before* t, within each episode (a forward sum, not reward-to-go)": lambda r, term, ends, gamma, v: (
            _forward_sum(r, ends, gamma)
        ),
        "the return of the whole episode (from its first step) at every step of it, not the reward-to-go": lambda r, term, ends, gamma, v: (
            advantages.reward_to_go(r, term, ends, gamma, v)[_episode_starts(ends)]
        ),
        "Ĝ_{t+1} at step t: the sum starts one step late (r_t left out, an off-by-one)": _return_from_next_state,
    },
    solutions=(advantages.reward_to_go, advantages.discounted_cumsum),
    report="last",
)


def check_discounted_return(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(rewards, gamma)``: the discounted return Σ_t γ^t r_t of one episode, a 0-d tensor.
    A return is a value, not an objective: only its value is compared (an answer computed through
    floats, lists or NumPy passes)."""
    return DISCOUNTED_RETURN.check(fn)


def check_reward_to_go(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Grade ``fn(rewards, terminated, ends, gamma, next_values)`` on 1-D tensors of one stream of T
    steps holding several episodes:

        Ĝ_t = r_t + γ·(1 − end_t)·Ĝ_{t+1} + γ·cut_t·next_values[t],

    nothing flowing back across an end; cut_t is 1 where the episode is cut off without terminating
    (a truncation, ends & ~terminated, or the stream's last step when it is not terminal).  A
    termination is not bootstrapped.  A wrong answer is reported at its last differing entry: the
    recursion runs backwards, so that is where the error starts."""
    return REWARD_TO_GO.check(fn)
