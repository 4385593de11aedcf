"""The conjugate-gradient exercise (notebook 02): judged by its iterates, for fewer iterations
than unknowns too, and by the products A·v it makes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ppo_teach import trpo
from ppo_teach.exercises.grading import CheckResult, Exercise


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


def check_conjugate_gradient(fn: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """Grade ``fn(Avp, b, iters)``: conjugate gradient for A x = b from x₀ = 0 given only products
    Avp(v) = A·v, exactly one per iteration (on p_k; r₀ = b needs none), leaving b unchanged.  Its x
    after k iterations is compared for every k = 1 … n."""
    return CONJUGATE_GRADIENT.check(fn)
