"""Checkers for the notebooks' "your turn" exercises.

Each checker calls the learner's function *positionally* on the inputs of a series of cases
(hand-worked ones first, then random ones) and compares it with the package's reference on
the same inputs.  It judges what makes an answer right, not only its values:

* an objective's autograd gradient with respect to the inputs it is differentiated by;
* reward-to-go on streams holding several episodes, terminated and truncated;
* conjugate gradient's iterate after k iterations, for every k up to the number of unknowns,
  and that it uses only products A·v, one per iteration, and leaves b unchanged;
* PPO's update by the network parameters it leaves behind.

It reports the first difference precisely (which case, which inputs, which entry, expected
and got); for a recursion that runs backwards, the last differing entry, where the error starts.  It names a known mistake only when the answer equals that mistake on every case.
A checker never raises for a wrong answer, so a notebook keeps running.
"""
from __future__ import annotations

import copy
import math
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ppo_teach import advantages, losses, ppo, trpo
from ppo_teach.envs import make_vec_env
from ppo_teach.rollout import Batch, Collector
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


UNFINISHED = "your function still raises NotImplementedError: fill it in."


@dataclass
class Exercise:
    """A function to write.  Each case is a dict of inputs in the order of the function's
    parameters; the learner's function and ``reference`` are called with them positionally."""

    name: str
    reference: Callable[..., Any]
    cases: Callable[[torch.Generator], list[dict[str, Any]]]
    known_mistakes: dict[str, Callable[..., Any]]
    solutions: tuple[Callable[..., Any], ...]  # the package code a learner can read once done
    atol: float = 1e-5
    grad_wrt: tuple[str, ...] = ()  # an objective: its gradient with respect to these inputs must match too
    audit: Callable[[list[Any]], str] | None = None  # how the answer used its inputs: '' when right
    report: Literal["first", "last"] = "first"  # which differing entry to report: "last" for a backward recursion, where the error starts

    def check(self, fn: Callable[..., Any]) -> CheckResult:
        return grade(self, fn)


@dataclass
class _Call:
    """One call of a function on fresh copies of a case's inputs, and what it returned or raised."""

    args: list[Any]  # the inputs as the function received them
    leaves: list[torch.Tensor]  # the inputs (in ``Exercise.grad_wrt``'s order) gradients are taken with respect to
    value: Any = None
    error: Exception | None = None


def _call(fn: Callable[..., Any], case: dict[str, Any], grad_wrt: tuple[str, ...] = ()) -> _Call:
    """Call ``fn(*inputs)`` on deep copies of the case's inputs, so that a function that edits its
    arguments in place cannot spoil the comparison.  The inputs named in ``grad_wrt`` are handed
    over as differentiable copies of fresh leaf tensors."""
    leaves = {name: case[name].clone().requires_grad_() for name in grad_wrt}
    args = [leaves[name].clone() if name in leaves else copy.deepcopy(v) for name, v in case.items()]
    call = _Call(args, list(leaves.values()))
    try:
        call.value = fn(*args)
    except Exception as err:  # the learner's code: report whatever it raised
        call.error = err
    return call


def grade(exercise: Exercise, fn: Callable[..., Any], seed: int = 0) -> CheckResult:
    """Compare ``fn`` with the exercise's reference on every case and report the first case where its
    value, its gradient (for an objective) or its use of the inputs (``audit``) is wrong."""
    cases = exercise.cases(torch.Generator().manual_seed(seed))
    answers = [_call(fn, case, exercise.grad_wrt) for case in cases]
    for i, (case, answer) in enumerate(zip(cases, answers), start=1):
        if isinstance(answer.error, NotImplementedError):
            return CheckResult(exercise.name, False, UNFINISHED)
        head = f"case {i} of {len(cases)}: {', '.join(f'{k}={_fmt(v)}' for k, v in case.items())}\n"
        if answer.error is not None:
            return CheckResult(exercise.name, False, f"{head}raised {type(answer.error).__name__}: {answer.error}")
        expected = _call(exercise.reference, case, exercise.grad_wrt)
        problem = (
            _difference(answer.value, expected.value, exercise.atol, exercise.report)
            or _gradient_difference(answer, expected, exercise.grad_wrt, exercise.atol)
            or (exercise.audit(answer.args) if exercise.audit else "")
        )
        if problem:
            return CheckResult(exercise.name, False, head + problem + _hint(exercise, cases, answers))
    return CheckResult(exercise.name, True, f"matches the reference on all {len(cases)} cases.")


def _fmt(v: Any) -> str:
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        return f"{v.item():.6g}"
    if isinstance(v, torch.Tensor):
        return "tensor(" + str([round(x, 4) for x in v.detach().flatten().tolist()]) + ")"
    return repr(v)


def _difference(got: Any, expected: torch.Tensor, atol: float, report: Literal["first", "last"] = "first") -> str:
    """'' when ``got`` equals ``expected`` to ``atol``; otherwise what differs, at the first differing
    entry or (``report="last"``, for a recursion that runs backwards) at the last."""
    expected = expected.detach()
    try:
        got = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got, dtype=expected.dtype)
    except (TypeError, ValueError, RuntimeError):
        return f"expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}: {got!r}"
    if got.shape != expected.shape:
        scalar = (
            ": return a 0-d tensor, e.g. torch.stack(...).sum() or a sum over a tensor; shape (1,) is a 1-element vector"
            if expected.dim() == 0 else ""
        )
        return f"expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}{scalar}"
    bad = ~torch.isclose(got, expected, atol=atol, rtol=1e-5)
    if not bad.any():
        return ""
    idx = tuple(int(i) for i in bad.nonzero()[0 if report == "first" else -1])
    where = f"[{', '.join(map(str, idx))}]" if idx else "(the scalar)"
    which = "first difference" if report == "first" else "last difference (the recursion runs backwards: the error starts here)"
    return (
        f"{which} at entry {where}: expected {expected[idx].item():.6g}, got {got[idx].item():.6g}\n"
        f"expected {_fmt(expected)}\ngot      {_fmt(got)}"
    )


def _gradient_difference(got: _Call, expected: _Call, names: tuple[str, ...], atol: float) -> str:
    """'' when the answer's gradient with respect to each input in ``names`` equals the reference's
    (the values already agree); otherwise what differs, or that no gradient flows at all."""
    if not names:
        return ""
    if not (isinstance(got.value, torch.Tensor) and got.value.requires_grad):
        return (
            f"the value is right, but it carries no gradient at all with respect to {', '.join(names)}: somewhere it "
            "left autograd (.item(), float(), .tolist(), numpy, .detach() or torch.no_grad()). An objective is "
            "there to be differentiated: keep every step a torch operation on the input tensors."
        )
    try:
        grads = torch.autograd.grad(got.value, got.leaves, allow_unused=True)
    except RuntimeError as err:
        return f"the value is right, but differentiating it raised RuntimeError: {err}"
    references = torch.autograd.grad(expected.value, expected.leaves)
    for name, grad, reference in zip(names, grads, references):
        if grad is None:
            return (
                f"the value is right, but no gradient reaches {name}: the result was rebuilt from numbers "
                f"(e.g. torch.tensor(…, requires_grad=True)) instead of computed from {name} by torch operations."
            )
        problem = _difference(grad, reference, atol)
        if problem:
            return f"the value is right, but its gradient ∂/∂{name} is not:\n{problem}"
    return ""


def _hint(exercise: Exercise, cases: list[dict[str, Any]], answers: list[_Call]) -> str:
    """Names the known mistake whose values the answer equals on every case, if there is one."""
    if any(answer.error is not None for answer in answers):
        return ""
    for description, mistake in exercise.known_mistakes.items():
        mistaken = (_call(mistake, case) for case in cases)
        if all(m.error is None and not _difference(a.value, m.value, exercise.atol) for a, m in zip(answers, mistaken)):
            return f"\nhint: on all {len(cases)} cases your answer equals {description}."
    return ""


# --------------------------------------------------------------------------------------
# Returns: the discounted return of an episode, reward-to-go on a stream of episodes
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


# --------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------


class MatVec:
    """The product v ↦ A·v for a fixed matrix A, as conjugate gradient receives it.  It records the
    vectors it is applied to, and keeps a copy of its case's right-hand side b, so that the checker
    can tell how an answer used its inputs."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor):
        self.A, self.b = A, b.clone()
        self.inputs: list[torch.Tensor] = []

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.inputs.append(v.detach().clone())
        return self.A @ v

    @property
    def products(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        return f"(v ↦ A·v with A = {self.A.numpy().round(3).tolist()})"


def _random_system(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Q·diag(λ)·Qᵀ with a random rotation Q and n eigenvalues spread over [1, 100], one in each
    n-th of the log scale, and b = Q·c with every |c_i| in [0.5, 1.5]: conjugate gradient then needs
    all n iterations, and its residual stays far above any early-stop tolerance until the last."""
    f64 = torch.float64
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=f64))
    eigenvalues = 100.0 ** ((torch.arange(n, dtype=f64) + 0.5 * torch.rand(n, generator=gen, dtype=f64)) / n)
    signs = torch.randint(0, 2, (n,), generator=gen).to(f64) * 2 - 1
    A = Q @ torch.diag(eigenvalues) @ Q.T
    return (A + A.T) / 2, Q @ (signs * (0.5 + torch.rand(n, generator=gen, dtype=f64)))


def _spd_cases(gen: torch.Generator) -> list[dict[str, Any]]:
    """Symmetric positive-definite systems, a diagonal one and a 2×2 one by hand, then random ones;
    on each, every number of iterations k = 1 … n (TRPO runs fewer iterations than unknowns)."""
    f64 = torch.float64
    systems = [
        (torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=f64)), torch.tensor([1.0, 1.0, 1.0], dtype=f64)),
        (torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=f64), torch.tensor([1.0, 2.0], dtype=f64)),
    ]
    systems += [_random_system(n, gen) for n in (4, 6, 8)]
    return [{"Avp": MatVec(A, b), "b": b, "iters": k} for A, b in systems for k in range(1, len(b) + 1)]


def _cg_iterate(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int) -> torch.Tensor:
    """x_k, conjugate gradient's iterate after k = ``iters`` iterations, with no early stop."""
    return trpo.conjugate_gradient(Avp, b, max(iters, 0), tol=0.0)


def _cg_beta(rr_next: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
    """β_k = r_{k+1}ᵀr_{k+1} / r_kᵀr_k, conjugate gradient's own."""
    return rr_next / rr


def _cg_variant(
    Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
    beta: Callable[[torch.Tensor, torch.Tensor], Any] = _cg_beta, aliased: bool = False,
) -> torch.Tensor:
    """x after ``iters`` iterations of conjugate gradient's recurrences with β_k = beta(r_{k+1}ᵀr_{k+1},
    r_kᵀr_k) in p_{k+1} = r_{k+1} + β_k p_k; with ``aliased``, r₀ = p₀ = b is one tensor (no clone),
    so the in-place r ← r − α_k A p_k also rewrites p₀ and b.  The known mistakes are its variants."""
    x = torch.zeros_like(b)
    r = b if aliased else b.clone()
    p = r if aliased else b.clone()
    rr = r @ r
    for _ in range(iters):
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_next = r @ r
        p = r + beta(rr_next, rr) * p
        rr = rr_next
    return x


def _steepest_descent(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int) -> torch.Tensor:
    """x_{k+1} = x_k + α_k r_k with α_k = r_kᵀr_k / r_kᵀA r_k: every direction is the residual (β_k = 0)."""
    return _cg_variant(Avp, b, iters, beta=lambda rr_next, rr: 0.0)


def _one_product_per_iteration(Avp: MatVec, iters: int) -> str:
    """'' when the answer made exactly one product A·v per iteration; otherwise what it did instead."""
    if Avp.products == iters:
        return ""
    if Avp.products == 0:
        return (
            "the value is right, but your answer never called Avp: it used the matrix A itself. TRPO never has A "
            "(F has as many rows as the policy has parameters); conjugate gradient must use only products Avp(v)."
        )
    made = f"the value is right, but your answer made {Avp.products} products A·v in {iters} iteration(s). "
    rule = (
        "Call Avp exactly once per iteration, on p_k, and reuse A·p_k for both α_k and r_{k+1}. In TRPO every "
        "product is a double backward pass."
    )
    if not Avp.inputs[0].any():
        return made + (
            "Your first product was A·x₀ with x₀ = 0, presumably for r₀ = b − A·x₀ (Nocedal and Wright's Algorithm 5.2 "
            "starts from r₀ = A·x₀ − b): with x₀ = 0 that is r₀ = b, which needs no product. " + rule
        )
    if any(torch.equal(v, w) for v, w in zip(Avp.inputs, Avp.inputs[1:])):
        return made + "You called Avp twice in a row on the same vector (A·p_k once for α_k, again for r_{k+1}). " + rule
    if Avp.products == iters + 1:
        return made + (
            "One product too many: if it computes r₀ = b − A·x₀, with x₀ = 0 that is r₀ = b and needs no product. " + rule
        )
    return made + rule


def _cg_audit(args: list[Any]) -> str:
    """'' when the answer left b as it was and used one product A·p_k per iteration; otherwise what it did."""
    Avp, b, iters = args
    if not torch.equal(b, Avp.b):
        return (
            "the value is right, but your function changed b in place (r = b, for instance, makes r the same tensor "
            "as b, and r -= α·A p then rewrites b). TRPO uses g, its b, again after conjugate gradient. Start from "
            "r = b.clone() and p = b.clone(): r, p and b must be separate tensors."
        )
    return _one_product_per_iteration(Avp, iters)


CONJUGATE_GRADIENT = Exercise(
    name="conjugate_gradient(Avp, b, iters) → x after `iters` iterations of CG on A x = b",
    reference=_cg_iterate,
    cases=_spd_cases,
    known_mistakes={
        "b itself (no iteration was applied)": lambda Avp, b, iters: b,
        "the exact solution A⁻¹b whatever `iters` is: the checker compares x after k iterations, for k below the "
        "number of unknowns too (as TRPO runs CG)": lambda Avp, b, iters: torch.linalg.solve(Avp.A, b),
        "the result after only one iteration (the loop stops too early)": lambda Avp, b, iters: _cg_iterate(Avp, b, 1),
        "x after iters + 1 iterations (an off-by-one in the loop)": lambda Avp, b, iters: _cg_iterate(Avp, b, min(iters + 1, len(b))),
        "x after iters − 1 iterations (an off-by-one in the loop)": lambda Avp, b, iters: _cg_iterate(Avp, b, iters - 1),
        "steepest descent, not conjugate directions (p_{k+1} = r_{k+1}, β left out)": _steepest_descent,
        "β_k = 1, i.e. p_{k+1} = r_{k+1} + p_k (r_kᵀr_k was overwritten by r_{k+1}ᵀr_{k+1} before β_k = "
        "r_{k+1}ᵀr_{k+1} / r_kᵀr_k was computed)": lambda Avp, b, iters: _cg_variant(Avp, b, iters, beta=lambda rr_next, rr: 1.0),
        "r, p and b one tensor (r = p = b with no .clone()): the in-place r -= α_0·A p_0 also changed p_0 (and b) "
        "before p_1 = r_1 + β_0 p_0 used it. Use b.clone() for r and for p": lambda Avp, b, iters: _cg_variant(Avp, b, iters, aliased=True),
    },
    solutions=(trpo.conjugate_gradient,),
    atol=1e-6,
    audit=_cg_audit,
)


# --------------------------------------------------------------------------------------
# PPO's clipped surrogate and the k3 estimate of the KL
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# PPO's update, assembled from the package's pieces
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assembly:
    """How one PPO update is put together.  The defaults are the recipe the exercise states;
    each known mistake changes one of them."""

    epochs: int | None = None  # None: agent.cfg.update_epochs
    shuffle: Literal["every epoch", "once", "never"] = "every epoch"  # when torch.randperm is drawn ("never": the batch's order)
    normalise: Literal["minibatch", "batch", "none"] = "minibatch"  # where Â is whitened
    entropy: float = 1.0  # the loss has −entropy·c_H·H̄: 1 as asked, −1 the wrong sign, 0 left out
    grad_clip: Literal["each network", "joint", "none"] = "each network"
    clip_ratio: bool = True  # L^CLIP, or the unclipped surrogate (ε = ∞)
    zero_grad: bool = True  # gradients zeroed before each backward pass


def assembled_update(agent: ppo.PPO, data: ppo.Flat, how: Assembly = Assembly()) -> None:
    """One PPO update as the exercise states it (``how`` changes one step, for the known mistakes):
    ``update_epochs`` passes over ``torch.randperm(len(data.actions)).split(minibatch_size)``, on each
    minibatch one Adam step on

        −L^CLIP(θ) + c_V·L^V(φ) − c_H·H̄(π_θ),   Â whitened per minibatch,

    with each network's gradient clipped to its own global norm ``max_grad_norm``."""
    cfg = agent.cfg
    eps = cfg.clip_eps if how.clip_ratio else float("inf")
    batch_advantages = advantages.whiten(data.advantages) if how.normalise == "batch" else data.advantages
    n = len(data.actions)
    first_order = torch.randperm(n) if how.shuffle == "once" else None
    for _ in range(cfg.update_epochs if how.epochs is None else how.epochs):
        order = {"every epoch": lambda: torch.randperm(n), "once": lambda: first_order, "never": lambda: torch.arange(n)}[how.shuffle]()
        for idx in order.split(cfg.minibatch_size):
            mb = data.rows(idx)
            adv = advantages.whiten(mb.advantages) if how.normalise == "minibatch" else batch_advantages[idx]
            dist = agent.policy(mb.obs)
            loss = (
                -losses.clipped_surrogate(dist.log_prob(mb.actions), mb.logp_old, adv, eps)
                + cfg.vf_coef * losses.value_loss(agent.value_fn(mb.obs), mb.returns)
                - how.entropy * cfg.ent_coef * losses.entropy_bonus(dist.entropy())
            )
            if how.zero_grad:
                agent.optimizer.zero_grad()
            loss.backward()
            if how.grad_clip == "each network":
                torch.nn.utils.clip_grad_norm_(agent.policy.parameters(), cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(agent.value_fn.parameters(), cfg.max_grad_norm)
            elif how.grad_clip == "joint":
                torch.nn.utils.clip_grad_norm_([*agent.policy.parameters(), *agent.value_fn.parameters()], cfg.max_grad_norm)
            agent.optimizer.step()


PPO_UPDATE_MISTAKES: dict[str, Assembly] = {
    "one epoch only (cfg.update_epochs passes are asked for)": Assembly(epochs=1),
    "minibatches taken in the batch's order, without shuffling (torch.randperm)": Assembly(shuffle="never"),
    "one permutation drawn once and reused in every epoch (draw a fresh torch.randperm in each epoch)": Assembly(shuffle="once"),
    "no advantage normalisation (whiten(mb.advantages) left out)": Assembly(normalise="none"),
    "advantages whitened once over the whole batch instead of per minibatch": Assembly(normalise="batch"),
    "the entropy with the wrong sign: + c_H·H̄ in the loss penalises exploration instead of rewarding it": Assembly(entropy=-1.0),
    "the entropy term left out (the loss needs − cfg.ent_coef·entropy_bonus(dist.entropy()))": Assembly(entropy=0.0),
    "one joint gradient-norm clip over both networks (the value loss's large gradient then shrinks the "
    "policy's step)": Assembly(grad_clip="joint"),
    "no gradient-norm clipping": Assembly(grad_clip="none"),
    "the unclipped surrogate (the ratio is never clipped)": Assembly(clip_ratio=False),
    "gradients never zeroed (optimizer.zero_grad() left out: they accumulate over minibatches)": Assembly(zero_grad=False),
}


@contextmanager
def _isolated() -> Iterator[None]:
    """Run a block on one thread (the networks are tiny: more threads only add overhead, as in
    ``training.run``) without touching the caller's Python, NumPy and PyTorch random streams,
    and without the scheduler's warning that a deep-copied optimizer's ``step`` is not the one it
    wrapped (it only counts calls; it does not change what a step does)."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Seems like `optimizer.step\\(\\)` has been overridden")
            yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


Parameters = dict[str, dict[str, torch.Tensor]]  # network → parameter name → value


def _parameters(agent: ppo.PPO) -> Parameters:
    return {
        name: {k: v.detach().clone() for k, v in net.named_parameters()}
        for name, net in (("policy", agent.policy), ("value function", agent.value_fn))
    }


def _parameters_after(update: Callable[[ppo.PPO], Any], agent: ppo.PPO, seed: int) -> Parameters:
    """The parameters left by ``update`` applied to a deep copy of ``agent`` after ``torch.manual_seed(seed)``."""
    agent = copy.deepcopy(agent)
    torch.manual_seed(seed)
    update(agent)
    return _parameters(agent)


def _parameter_difference(got: Parameters, expected: Parameters, atol: float) -> str:
    """'' when every parameter agrees to ``atol``; otherwise, for each network, the largest difference and where."""
    lines, differs = [], False
    for net, params in expected.items():
        diffs = {name: (got[net][name] - value).abs().nan_to_num(nan=float("inf")) for name, value in params.items()}
        name = max(diffs, key=lambda n: diffs[n].max())
        if diffs[name].max() <= atol:
            lines.append(f"{net}: matches")
            continue
        differs = True
        idx = tuple(int(i) for i in torch.unravel_index(diffs[name].argmax(), diffs[name].shape))
        lines.append(
            f"{net}: parameters differ by up to {diffs[name].max().item():.3g}, e.g. {name}[{', '.join(map(str, idx))}]: "
            f"expected {expected[net][name][idx].item():.6g}, got {got[net][name][idx].item():.6g}"
        )
    return "\n".join(lines) if differs else ""


@dataclass
class PPOUpdateExercise:
    """``fn(agent, data)``: one PPO update, judged by the network parameters it leaves behind."""

    name: str
    known_mistakes: dict[str, Assembly]
    solutions: tuple[Callable[..., Any], ...]
    # torch.manual_seed(k) before each update: the cases.  On each of these two shuffles every known
    # mistake moves some parameter by more than 5e-4 (the entropy term left out, the smallest, by
    # 3.8e-3 and 7.2e-4; on seed 1 no ratio is clipped), while rounding (the loss's terms summed in
    # another order) moves them by less than 1e-6.
    seeds: tuple[int, ...] = (0, 2)
    atol: float = 1e-4

    def check(self, fn: Callable[[ppo.PPO, ppo.Flat], Any]) -> CheckResult:
        with _isolated():
            agent, batch, data = _small_agent_and_batch()
            answers: list[Parameters] = []
            for k in self.seeds:
                try:
                    answers.append(_parameters_after(lambda a: fn(a, copy.deepcopy(data)), agent, k))
                except NotImplementedError:
                    return CheckResult(self.name, False, UNFINISHED)
                except Exception as err:  # the learner's code: report whatever it raised
                    return CheckResult(self.name, False, f"after torch.manual_seed({k}), your function raised {type(err).__name__}: {err}")
            for i, (k, got) in enumerate(zip(self.seeds, answers), start=1):
                problem = _parameter_difference(got, _parameters_after(lambda a: a.update(batch), agent, k), self.atol)
                if problem:
                    if not _parameter_difference(got, _parameters(agent), self.atol):
                        problem += "\nyour function left every parameter as it was: no optimizer step was taken."
                    head = f"case {i} of {len(self.seeds)} (torch.manual_seed({k}) before the update), {_describe(agent)}:\n"
                    return CheckResult(self.name, False, head + problem + self._hint(agent, data, answers))
        return CheckResult(self.name, True, f"leaves the same parameters as ppo.PPO.update on all {len(self.seeds)} cases.")

    def _hint(self, agent: ppo.PPO, data: ppo.Flat, answers: list[Parameters]) -> str:
        """Names the known mistake whose parameters the answer equals on every case, if there is one."""
        for description, how in self.known_mistakes.items():
            if all(
                not _parameter_difference(got, _parameters_after(lambda a: assembled_update(a, data, how), agent, k), self.atol)
                for k, got in zip(self.seeds, answers)
            ):
                return f"\nhint: on all {len(self.seeds)} cases your update equals {description}."
        return ""


def _small_agent_and_batch() -> tuple[ppo.PPO, Batch, ppo.Flat]:
    """A small PPO agent (orthogonal initialisation, entropy bonus on, gradient clipping on), one batch
    it collected on CartPole, and that batch prepared by ``ppo.prepare`` as the learner's function gets
    it.  The learning rate is 0.01, ten times the default, so that during the update some ratios leave
    [1 − ε, 1 + ε] and clipping changes the parameters (at the default, no ratio is clipped here)."""
    cfg = ppo.PPOConfig(seed=0, num_envs=2, steps_per_env=32, update_epochs=3, num_minibatches=4, lr=0.01,
                        ent_coef=0.01, clip_grad_norm=True, total_steps=64)
    agent = ppo.PPO(cfg)
    env = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed)
    batch = Collector(env, agent.policy, cfg.seed).collect(cfg.steps_per_env)
    env.close()
    return agent, batch, ppo.prepare(batch, agent.policy, agent.value_fn, cfg)


def _describe(agent: ppo.PPO) -> str:
    cfg = agent.cfg
    return (f"a batch of {cfg.batch_size} steps, update_epochs={cfg.update_epochs}, minibatch_size={cfg.minibatch_size}, lr={cfg.lr}, "
            f"clip_eps={cfg.clip_eps}, vf_coef={cfg.vf_coef}, ent_coef={cfg.ent_coef}, max_grad_norm={cfg.max_grad_norm}")


PPO_UPDATE = PPOUpdateExercise(
    name="ppo_update(agent, data): update_epochs passes of shuffled minibatches, one Adam step on each",
    known_mistakes=PPO_UPDATE_MISTAKES,
    solutions=(ppo.PPO.update, ppo.PPO._minibatch_step),
)


EXERCISES: dict[str, Exercise | PPOUpdateExercise] = {
    "discounted_return": DISCOUNTED_RETURN,
    "reward_to_go": REWARD_TO_GO,
    "conjugate_gradient": CONJUGATE_GRADIENT,
    "clipped_surrogate": CLIPPED_SURROGATE,
    "approx_kl_k3": APPROX_KL_K3,
    "ppo_update": PPO_UPDATE,
}


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


def check_conjugate_gradient(fn: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """Grade ``fn(Avp, b, iters)``: conjugate gradient for A x = b from x₀ = 0 given only products
    Avp(v) = A·v, exactly one per iteration (on p_k; r₀ = b needs none), leaving b unchanged.  Its x
    after k iterations is compared for every k = 1 … n."""
    return CONJUGATE_GRADIENT.check(fn)


def check_clipped_surrogate(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old, advantages, eps)``: PPO's clipped surrogate objective (a mean, to
    maximise), its value and its gradient with respect to ``logp``."""
    return CLIPPED_SURROGATE.check(fn)


def check_approx_kl_k3(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Grade ``fn(logp, logp_old)``: the k3 estimate of KL(π_old ‖ π_new) from samples of π_old, its
    value and its gradient with respect to ``logp``."""
    return APPROX_KL_K3.check(fn)


def check_ppo_update(fn: Callable[[ppo.PPO, ppo.Flat], Any]) -> CheckResult:
    """Grade ``fn(agent, data)``: one PPO update of ``agent`` (a ``ppo.PPO``) on ``data`` (from
    ``ppo.prepare``).  Run ``agent.cfg.update_epochs`` epochs; each iterates over
    ``torch.randperm(len(data.actions)).split(agent.cfg.minibatch_size)``; per minibatch
    ``mb = data.rows(idx)``, ``adv = whiten(mb.advantages)``, ``dist = agent.policy(mb.obs)``,

        loss = −clipped_surrogate(dist.log_prob(mb.actions), mb.logp_old, adv, cfg.clip_eps)
               + cfg.vf_coef·value_loss(agent.value_fn(mb.obs), mb.returns)
               − cfg.ent_coef·entropy_bonus(dist.entropy()),

    then ``agent.optimizer.zero_grad()``, ``loss.backward()``, clip the gradient norm of the policy
    and of the value function separately to ``cfg.max_grad_norm``, ``agent.optimizer.step()``.

    The checker runs ``fn`` and ``ppo.PPO.update`` on deep copies of one small agent, each after the
    same ``torch.manual_seed(k)``, and compares every parameter of both networks."""
    return PPO_UPDATE.check(fn)


def solution(name: str) -> Source:
    """The package's reference implementation behind an exercise."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; the exercises are: {', '.join(EXERCISES)}")
    sources = [show(fn) for fn in EXERCISES[name].solutions]
    return Source(" and ".join(s.name for s in sources), "\n\n".join(s.code for s in sources))
