"""Checkers for the notebooks' "your turn" exercises.

Each checker runs the learner's function and the package's reference on the same inputs
(hand-worked cases first, then random ones) and says precisely what differs: which case,
which inputs, which entry, expected and got.  Where the answer matches a mistake we know,
it says which.  A checker never raises for a wrong answer, so a notebook keeps running.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ppo_teach import advantages, losses, trpo
from ppo_teach.show import Source, show


@dataclass
class CheckResult:
    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{'✅ correct' if self.passed else '❌ not yet'} — {self.exercise}: {self.message}"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        head = "✅ correct" if self.passed else "❌ not yet"
        return f"<div style='border-left:4px solid {colour};padding-left:8px'><b>{head}</b> — {self.exercise}<pre>{self.message}</pre></div>"


@dataclass
class Exercise:
    name: str
    reference: Callable[..., torch.Tensor]  # called with each case's keyword arguments
    cases: Callable[[torch.Generator], list[dict[str, Any]]]
    known_mistakes: dict[str, Callable[..., torch.Tensor]]
    solution: Callable[..., Any]  # the package function a learner can read once done
    atol: float = 1e-5


def grade(exercise: Exercise, fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    """Compare ``fn`` with the exercise's reference on every case; report the first difference."""
    cases = exercise.cases(torch.Generator().manual_seed(seed))
    for i, case in enumerate(cases, start=1):
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in case.items())
        expected = exercise.reference(**_copy(case))
        try:
            got = fn(**_copy(case))
        except NotImplementedError:
            return CheckResult(exercise.name, False, "your function still raises NotImplementedError: fill it in.")
        except Exception as err:  # the learner's code: report whatever it raised
            return CheckResult(exercise.name, False, f"case {i} ({shown}) raised {type(err).__name__}: {err}")
        problem = _difference(got, expected, exercise.atol)
        if problem:
            hint = _diagnose(exercise, case, got)
            return CheckResult(exercise.name, False, f"case {i} of {len(cases)}: {shown}\n{problem}{hint}")
    return CheckResult(exercise.name, True, f"matches the reference on all {len(cases)} cases.")


def _copy(case: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the inputs, so a function that edits its arguments in place cannot spoil the comparison."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}


def _fmt(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return "tensor(" + str([round(x, 4) for x in v.flatten().tolist()]) + ")"
    return repr(v)


def _difference(got: Any, expected: torch.Tensor, atol: float) -> str:
    """'' when ``got`` equals ``expected`` to ``atol``; otherwise what differs."""
    try:
        got = torch.as_tensor(got, dtype=expected.dtype)
    except (TypeError, ValueError, RuntimeError):
        return f"expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}: {got!r}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}"
    bad = ~torch.isclose(got, expected, atol=atol, rtol=1e-5)
    if not bad.any():
        return ""
    idx = tuple(int(i) for i in bad.nonzero()[0])
    where = f"[{', '.join(map(str, idx))}]" if idx else ""
    return (
        f"first difference at entry {where or '(the scalar)'}: expected {expected[idx].item():.6g}, got {got[idx].item():.6g}\n"
        f"expected {_fmt(expected)}\ngot      {_fmt(got)}"
    )


def _diagnose(exercise: Exercise, case: dict[str, Any], got: Any) -> str:
    for description, mistake in exercise.known_mistakes.items():
        try:
            if not _difference(got, mistake(**_copy(case)), exercise.atol):
                return f"\nhint: your answer equals {description}."
        except Exception:  # a mistake's formula may not apply to every case
            continue
    return ""


# --------------------------------------------------------------------------------------
# The exercises
# --------------------------------------------------------------------------------------


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


def _reference_reward_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go of one complete episode that ends by termination."""
    done = torch.zeros_like(rewards, dtype=torch.bool)
    done[-1] = True
    return advantages.reward_to_go(rewards, done, done, gamma)


REWARD_TO_GO = Exercise(
    name="reward_to_go(rewards, gamma) → Ĝ_t = Σ_{k≥0} γ^k r_{t+k}",
    reference=_reference_reward_to_go,
    cases=_episode_cases,
    known_mistakes={
        "the undiscounted reward-to-go (γ left out)": lambda rewards, gamma: rewards.flip(0).cumsum(0).flip(0),
        "the discounted sum of the rewards *before* t (a forward sum, not reward-to-go)": lambda rewards, gamma: torch.stack(
            [advantages.discounted_return(rewards[: t + 1].flip(0), gamma) for t in range(len(rewards))]
        ),
        "the whole episode's return at every step (not reward-to-go)": lambda rewards, gamma: advantages.discounted_return(
            rewards, gamma
        ).expand_as(rewards),
        "the rewards shifted by one step (Ĝ_t starts at r_{t+1} instead of r_t)": lambda rewards, gamma: _reference_reward_to_go(
            rewards, gamma
        ).sub(rewards).div(gamma),
    },
    solution=advantages.reward_to_go,
)

DISCOUNTED_RETURN = Exercise(
    name="discounted_return(rewards, gamma) → G = Σ_t γ^t r_t",
    reference=advantages.discounted_return,
    cases=_episode_cases,
    known_mistakes={
        "the undiscounted sum (γ left out)": lambda rewards, gamma: rewards.sum(),
        "Σ_t γ^(t+1) r_t (the first reward is discounted too)": lambda rewards, gamma: gamma * advantages.discounted_return(rewards, gamma),
    },
    solution=advantages.discounted_return,
)



class MatVec:
    """The product v ↦ A·v for a fixed matrix A, as conjugate gradient receives it."""

    def __init__(self, A: torch.Tensor):
        self.A = A

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.A @ v

    def __repr__(self) -> str:
        return f"(v ↦ A·v with A = {self.A.numpy().round(3).tolist()})"


def _spd_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Symmetric positive-definite systems: a diagonal one by hand, then random ones, with as
    many iterations as unknowns (where conjugate gradient is exact)."""
    cases: list[dict[str, Any]] = [
        {"Avp": MatVec(torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))), "b": torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), "iters": 3},
        {"Avp": MatVec(torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)), "b": torch.tensor([1.0, 2.0], dtype=torch.float64), "iters": 2},
    ]
    for n in (3, 5, 8, 12):
        M = torch.randn(n, n, generator=gen, dtype=torch.float64)
        cases.append({"Avp": MatVec(M @ M.T + n * torch.eye(n, dtype=torch.float64)), "b": torch.randn(n, generator=gen, dtype=torch.float64), "iters": n})
    return cases


CONJUGATE_GRADIENT = Exercise(
    name="conjugate_gradient(Avp, b, iters) → x with A x = b",
    reference=lambda Avp, b, iters: torch.linalg.solve(Avp.A, b),
    cases=_spd_cases,
    known_mistakes={
        "b itself (no iteration was applied)": lambda Avp, b, iters: b,
        "the result after only one iteration (the loop stops too early)": lambda Avp, b, iters: trpo.conjugate_gradient(Avp, b, 1),
        "steepest descent, not conjugate directions (p_{k+1} = r_{k+1}, β left out)": lambda Avp, b, iters: _steepest_descent(Avp, b, iters),
    },
    solution=trpo.conjugate_gradient,
    atol=1e-6,
)


def _steepest_descent(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int) -> torch.Tensor:
    x, r = torch.zeros_like(b), b.clone()
    for _ in range(iters):
        alpha = (r @ r) / (r @ Avp(r))
        x, r = x + alpha * r, r - alpha * Avp(r)
    return x


def _ratio_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Log-probabilities whose ratios spread around 1 (some inside, some outside [1 − ε, 1 + ε]),
    advantages of both signs: a hand-worked pair first, then random batches."""
    cases: list[dict[str, Any]] = [
        # r below, inside and above [0.8, 1.2] for Â > 0, then for Â < 0; asymmetric, so that
        # every known mistake gives a different answer.
        {"logp": torch.log(torch.tensor([0.5, 1.1, 1.3, 0.7, 0.9, 1.6])), "logp_old": torch.zeros(6),
         "advantages": torch.tensor([2.0, 1.0, 1.0, -1.0, -0.5, -2.0]), "eps": 0.2},
    ]
    for eps in (0.1, 0.2, 0.3, 0.2, 0.2):
        n = int(torch.randint(5, 40, (1,), generator=gen))
        logp_old = -torch.rand(n, generator=gen) * 2 - 0.05
        cases.append({"logp": logp_old + 0.4 * torch.randn(n, generator=gen), "logp_old": logp_old,
                      "advantages": torch.randn(n, generator=gen), "eps": eps})
    return cases


def _ratio(logp: torch.Tensor, logp_old: torch.Tensor) -> torch.Tensor:
    return torch.exp(logp - logp_old)


CLIPPED_SURROGATE = Exercise(
    name="clipped_surrogate(logp, logp_old, advantages, eps) → L^CLIP",
    reference=losses.clipped_surrogate,
    cases=_ratio_cases,
    known_mistakes={
        "the unclipped surrogate mean(r·Â) (no clipping at all)": lambda logp, logp_old, advantages, eps: (_ratio(logp, logp_old) * advantages).mean(),
        "mean(clip(r, 1−ε, 1+ε)·Â): the clipped term alone, without the min": lambda logp, logp_old, advantages, eps: (
            _ratio(logp, logp_old).clamp(1 - eps, 1 + eps) * advantages).mean(),
        "the max of the two terms instead of the min (an optimistic bound, not a pessimistic one)": lambda logp, logp_old, advantages, eps: torch.max(
            _ratio(logp, logp_old) * advantages, _ratio(logp, logp_old).clamp(1 - eps, 1 + eps) * advantages).mean(),
        "clipping the log-ratio to [−ε, ε] instead of the ratio to [1−ε, 1+ε]": lambda logp, logp_old, advantages, eps: torch.min(
            _ratio(logp, logp_old) * advantages, torch.exp((logp - logp_old).clamp(-eps, eps)) * advantages).mean(),
        "the sum over samples instead of the mean": lambda logp, logp_old, advantages, eps: losses.clipped_surrogate(
            logp, logp_old, advantages, eps) * len(logp),
    },
    solution=losses.clipped_surrogate,
)

APPROX_KL_K3 = Exercise(
    name="approx_kl_k3(logp, logp_old) → mean[(r − 1) − log r]",
    reference=losses.approx_kl_k3,
    cases=lambda gen: [{k: v for k, v in c.items() if k in ("logp", "logp_old")} for c in _ratio_cases(gen)],
    known_mistakes={
        "k1 = mean(log π_old − log π_new), not k3": lambda logp, logp_old: (logp_old - logp).mean(),
        "mean[(1 − r) + log r], k3 with the wrong sign": lambda logp, logp_old: -losses.approx_kl_k3(logp, logp_old),
        "k3 with r inverted (π_old/π_new): an estimate of the reverse KL(π_new ‖ π_old)": lambda logp, logp_old: losses.approx_kl_k3(logp_old, logp),
    },
    solution=losses.approx_kl_k3,
)

EXERCISES: dict[str, Exercise] = {
    "reward_to_go": REWARD_TO_GO,
    "discounted_return": DISCOUNTED_RETURN,
    "conjugate_gradient": CONJUGATE_GRADIENT,
    "clipped_surrogate": CLIPPED_SURROGATE,
    "approx_kl_k3": APPROX_KL_K3,
}


def check_reward_to_go(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(rewards, gamma)``: the reward-to-go of one complete (terminated) episode."""
    return grade(REWARD_TO_GO, fn)


def check_discounted_return(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(rewards, gamma)``: the discounted return Σ_t γ^t r_t of one episode."""
    return grade(DISCOUNTED_RETURN, fn)


def check_conjugate_gradient(fn: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """Grade ``fn(Avp, b, iters)``: conjugate gradient for A x = b given only products A·v."""
    return grade(CONJUGATE_GRADIENT, fn)


def check_clipped_surrogate(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old, advantages, eps)``: PPO's clipped surrogate objective (a mean, to maximise)."""
    return grade(CLIPPED_SURROGATE, fn)


def check_approx_kl_k3(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old)``: the k3 estimate of KL(π_old ‖ π_new) from samples of π_old."""
    return grade(APPROX_KL_K3, fn)


def solution(name: str) -> Source:
    """The package's reference implementation behind an exercise."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return show(EXERCISES[name].solution)
