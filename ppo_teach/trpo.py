"""Trust Region Policy Optimization (Schulman et al., 2015).

Each update solves, approximately,

    maximise_θ  L(θ) = mean_t[ π_θ(a_t|s_t)/π_θold(a_t|s_t) · Â_t ]
    subject to  KL̄(θ) = mean_t[ KL(π_θold(·|s_t) ‖ π_θ(·|s_t)) ] ≤ δ

Linearising L and taking the quadratic approximation KL̄ ≈ ½ Δθᵀ F Δθ (F is the Fisher
information matrix, the Hessian of KL̄ at θ_old) gives the natural-gradient step

    Δθ = √(2δ / uᵀF u) · u,   u ≈ (F + μI)⁻¹ g,   g = ∇_θ L(θ_old),

where the direction u is found by conjugate gradient using only damped Fisher-vector products
(F + μI)·v, computed by double backpropagation.  The damping μ only regularises the direction (F is
singular when the policy has more parameters than the batch has states); the length uses the
undamped uᵀFu, so the full step's quadratic model ½ΔθᵀFΔθ equals δ.  Because the approximations
can be off, a backtracking line search tries the fractions κ⁰, κ¹, … of the step until the *exact*
KL̄ ≤ δ and L improves; if none of the ``max_backtracks`` fractions does, the old parameters are
kept.  The value function is fitted separately; advantages come from GAE(λ).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.distributions import Categorical
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ppo_teach.advantages import whiten
from ppo_teach.config import Bounds, bounded, budget
from ppo_teach.envs import evaluate_policy
from ppo_teach.history import History
from ppo_teach.losses import mean_kl, surrogate_advantage
from ppo_teach.nets import CategoricalPolicy
from ppo_teach.rollout import Batch, collect_batch
from ppo_teach.optim import adam
from ppo_teach.training import Agent, Callback, TrainConfig, budget_field, fit_value, gae_and_targets, run


@dataclass
class TRPOConfig(TrainConfig):
    total_steps: int = budget_field(full=100_000, fast=8_000)
    steps_per_env: int = bounded(125, Bounds(low=1, high=100_000, integer=True, fix="a batch needs at least one step per copy."))
    max_kl: float = bounded(0.01, Bounds(low=0.0, high=1.0, low_open=True, fix="δ is a small positive KL bound such as 0.01."))
    damping: float = bounded(0.1, Bounds(low=0.0, fix="use a small non-negative damping μ such as 0.1."))  # μ in (F + μI) u = g
    cg_iters: int = bounded(10, Bounds(low=1, high=1_000, integer=True, fix="use e.g. 10 conjugate-gradient iterations."))
    backtrack_ratio: float = bounded(0.8, Bounds(low=0.0, high=1.0, low_open=True, high_open=True, fix="each backtrack shrinks the step by a factor κ in (0, 1), e.g. 0.8."))  # κ
    # the fractions κ⁰ … κ^(max_backtracks − 1) tried, the full step included; also the most fractions an update can reject
    max_backtracks: int = bounded(10, Bounds(low=1, high=100, integer=True, fix="try e.g. 10 fractions of the step, the full step included."))
    lam: float = bounded(0.97, Bounds(low=0.0, high=1.0, fix="λ for GAE lies in [0, 1]; 0.95–0.97 is usual."))
    value_lr: float = bounded(1e-3, Bounds(low=0.0, high=1.0, low_open=True, fix="use a small positive learning rate such as 1e-3."))
    value_iters: int = bounded(80, Bounds(low=1, high=10_000, integer=True, fix="use e.g. 80 value-regression steps per batch."))


def flat_grad(y: torch.Tensor, params: list[torch.Tensor], create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
    """∇_θ y for a scalar y, flattened into one vector in the order of ``params``."""
    grads = torch.autograd.grad(y, params, create_graph=create_graph, retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def fisher_vector_product(kl_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], v: torch.Tensor, damping: float) -> torch.Tensor:
    """(F + μI) v with μ = ``damping``, F = ∇²_θ KL̄(π_θold ‖ π_θ) at θ = θ_old, by double backprop:

        F v = ∇_θ ( (∇_θ KL̄)ᵀ v ),

    a Hessian-vector product that costs two backward passes and never forms F.  At θ_old the
    Hessian of KL̄ is the Fisher information matrix mean_s E_{a~π}[∇log π(a|s) ∇log π(a|s)ᵀ].
    F is only positive semi-definite: at each state the π-weighted score vectors sum to zero,
    Σ_a π(a|s) ∇log π(a|s) = ∇Σ_a π(a|s) = 0, so each state adds rank at most (actions − 1) and
    F's rank is at most states·(actions − 1).  μ > 0 makes F + μI positive definite, as conjugate
    gradient needs.
    """
    grad_kl = flat_grad(kl_fn(), params, create_graph=True)
    return flat_grad(grad_kl @ v, params) + damping * v


def fisher_factor(policy: CategoricalPolicy, obs: torch.Tensor) -> torch.Tensor:
    """S with F = SᵀS: one row √(π(a|s)/N) · ∇_θ log π(a|s) for each of the N states s in ``obs``
    and each action a, built from per-sample score vectors.  F's nonzero eigenvalues are those of
    the (N·actions)² matrix SSᵀ, which is small when the policy has more parameters than that."""
    params = list(policy.parameters())
    rows = []
    for s in obs:
        dist = policy(s)
        for a in range(dist.probs.shape[-1]):
            score = flat_grad(dist.log_prob(torch.tensor(a)), params, retain_graph=True)
            rows.append(torch.sqrt(dist.probs[a].detach() / len(obs)) * score)
    return torch.stack(rows)


def explicit_fisher(policy: CategoricalPolicy, obs: torch.Tensor) -> torch.Tensor:
    """F = mean_s Σ_a π(a|s) ∇_θ log π(a|s) ∇_θ log π(a|s)ᵀ = SᵀS (``fisher_factor``).

    For teaching and testing only: it needs (number of parameters)² memory, which is why TRPO
    never forms F and uses ``fisher_vector_product`` instead.
    """
    S = fisher_factor(policy, obs)
    return S.T @ S


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only products A·p.

        x₀ = 0, r₀ = p₀ = b
        α_k = r_kᵀr_k / p_kᵀA p_k,  x_{k+1} = x_k + α_k p_k,  r_{k+1} = r_k − α_k A p_k
        β_k = r_{k+1}ᵀr_{k+1} / r_kᵀr_k,  p_{k+1} = r_{k+1} + β_k p_k

    (Nocedal and Wright, Algorithm 5.2, with the residual's sign flipped, r = b − Ax; their β_{k+1}
    is this β_k.)  One product A·p_k per iteration serves both α_k and r_{k+1}.  In exact arithmetic
    the directions are A-conjugate (p_iᵀA p_j = 0 for i ≠ j), x_k minimises the error's A-norm
    √((x − A⁻¹b)ᵀA(x − A⁻¹b)) over span{b, Ab, …, A^{k−1}b}, and x_n solves an n×n system exactly.
    In floating point the directions lose conjugacy, so n iterations give an approximation whose
    accuracy depends on A's conditioning.  TRPO runs far fewer iterations than unknowns and uses
    x_k as it is.  Stops early once ‖r‖² < tol (``tol=0.0`` runs all ``iters``).
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_next = r @ r
        p = r + (rr_next / rr) * p
        rr = rr_next
    return x


@dataclass
class NaturalGradient:
    """What one batch determines before the step size: g = ∇L(θ_old), the direction
    u ≈ (F + μI)⁻¹g from conjugate gradient, and uᵀFu with the undamped Fisher matrix F."""

    g: torch.Tensor
    u: torch.Tensor
    uFu: float
    damping: float  # μ

    def full_step(self, max_kl: float, damped_length: bool = False) -> torch.Tensor:
        """Δθ = √(2δ / uᵀFu) · u: the step whose quadratic KL model ½ΔθᵀFΔθ equals δ.

        With ``damped_length`` the length uses uᵀ(F + μI)u = uᵀFu + μ‖u‖² instead, as Schulman's
        modular_rl and OpenAI's Spinning Up do; then ½ΔθᵀFΔθ = δ · uᵀFu / uᵀ(F + μI)u < δ.
        """
        curvature = self.uFu + self.damping * float(self.u @ self.u) if damped_length else self.uFu
        return math.sqrt(2 * max_kl / curvature) * self.u


@dataclass
class LineSearch:
    """The outcome of a backtracking line search, with every fraction it tried."""

    accepted: bool
    backtracks: int  # fractions rejected: k when κᵏ was accepted, all max_backtracks tried when none was
    kl: float  # KL̄ at the accepted step (at the last tried step if none was)
    improvement: float  # L(θ_new) − L(θ_old) at the same step
    fractions: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    improvements: list[float] = field(default_factory=list)


class TrustRegionProblem:
    """The surrogate and the KL constraint of one batch, as functions of the current policy parameters."""

    def __init__(self, policy: CategoricalPolicy, obs: torch.Tensor, actions: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor):
        self.policy, self.obs, self.actions, self.logp_old, self.advantages = policy, obs, actions, logp_old, advantages
        self.params = list(policy.parameters())
        with torch.no_grad():
            self.old_dist = Categorical(logits=policy(obs).logits)

    def surrogate(self) -> torch.Tensor:
        return surrogate_advantage(self.policy(self.obs).log_prob(self.actions), self.logp_old, self.advantages)

    def kl(self) -> torch.Tensor:
        return mean_kl(self.old_dist, self.policy(self.obs))

    def natural_gradient(self, damping: float, cg_iters: int) -> NaturalGradient:
        g = flat_grad(self.surrogate(), self.params)
        def Fvp(v: torch.Tensor) -> torch.Tensor:
            return fisher_vector_product(self.kl, self.params, v, damping)

        u = conjugate_gradient(Fvp, g, cg_iters)
        uFu = float(u @ fisher_vector_product(self.kl, self.params, u, damping=0.0))
        return NaturalGradient(g=g, u=u, uFu=uFu, damping=damping)

    @torch.no_grad()
    def line_search(self, full_step: torch.Tensor, max_kl: float, ratio: float, max_backtracks: int) -> LineSearch:
        """Try θ_old + κᵏ·Δθ for k = 0, 1, …, max_backtracks − 1, with κ = ``ratio``; accept the first
        with KL̄ ≤ δ and L(θ) > L(θ_old).  If none qualifies, restore θ_old exactly; ``backtracks``
        then counts all max_backtracks fractions as rejected."""
        theta_old = parameters_to_vector(self.params).clone()
        surrogate_old = float(self.surrogate())
        result = LineSearch(accepted=False, backtracks=0, kl=0.0, improvement=0.0)
        for k in range(max_backtracks):
            fraction = ratio**k
            vector_to_parameters(theta_old + fraction * full_step, self.params)
            kl, improvement = float(self.kl()), float(self.surrogate()) - surrogate_old
            result.fractions.append(fraction)
            result.kls.append(kl)
            result.improvements.append(improvement)
            result.backtracks, result.kl, result.improvement = k, kl, improvement
            if kl <= max_kl and improvement > 0:
                result.accepted = True
                return result
        result.backtracks = max_backtracks
        vector_to_parameters(theta_old, self.params)
        return result


class TRPO(Agent):
    """TRPO's value optimizer and its update."""

    def __init__(self, cfg: TRPOConfig):
        super().__init__(cfg)
        self.value_opt = adam(self.value_fn.parameters(), cfg.value_lr)

    def update(self, batch: Batch) -> dict[str, float]:
        """One TRPO update on ``batch``: GAE(λ) advantages, the policy step (``policy_step``), then
        value regression.  Returns their statistics."""
        cfg = self.cfg
        advantages, returns, _ = gae_and_targets(batch, self.value_fn, cfg.gamma, cfg.lam)
        problem = TrustRegionProblem(
            self.policy, batch.obs.flatten(0, 1), batch.actions.flatten(), batch.logp.flatten(), whiten(advantages).flatten()
        )
        stats = self.policy_step(problem)
        stats["entropy"] = float(problem.old_dist.entropy().mean())
        stats["value_loss"] = fit_value(self.value_fn, self.value_opt, batch.obs, returns, cfg.value_iters)
        return stats

    def policy_step(self, problem: TrustRegionProblem) -> dict[str, float]:
        """The policy's step: natural-gradient direction, full step to the boundary of the quadratic
        trust region (½ΔθᵀFΔθ = δ), line search on the exact KL.  Returns its statistics, among them
        the exact KL̄ of the full step and of the accepted one (of the last one tried if none was
        accepted) as fractions of δ, beside the quadratic model's prediction for the latter,
        ½ΔθᵀFΔθ/δ = (κᵏ)²."""
        cfg = self.cfg
        direction = problem.natural_gradient(cfg.damping, cfg.cg_iters)
        full_step = direction.full_step(cfg.max_kl)
        search = problem.line_search(full_step, cfg.max_kl, cfg.backtrack_ratio, cfg.max_backtracks)
        fraction = search.fractions[-1]
        return {
            "kl": search.kl,
            "kl_over_delta": search.kl / cfg.max_kl,
            "model_kl_over_delta": fraction**2,
            "full_step_kl_over_delta": search.kls[0] / cfg.max_kl,
            "surrogate_improvement": search.improvement,
            "expected_improvement": float(direction.g @ full_step),
            "backtracks": search.backtracks,
            "accepted": float(search.accepted),
            "step_norm": float(full_step.norm()) * (fraction if search.accepted else 0.0),
        }


def train(cfg: TRPOConfig | None = None, progress: bool = True, callback: Callback | None = None) -> History:
    """Train TRPO with the settings in ``cfg`` (defaults if None); ``callback(history)`` after every update."""
    return run(cfg or TRPOConfig(), "trpo", TRPO, progress, callback)


# --------------------------------------------------------------------------------------
# Notebook 02's experiments: one update of a given size, from one batch, measured.
# --------------------------------------------------------------------------------------


@dataclass
class StepTrial:
    """One candidate update from the same batch, and what it did."""

    method: str  # "gradient step" or "TRPO step"
    size: float  # the learning rate η, or δ
    kl: float  # KL̄(π_old ‖ π_new) on the batch's states
    return_after: float  # mean return of the new (sampling) policy


class StepSizeLab:
    """A partly trained policy, one batch of its experience, and the natural-gradient direction
    from that batch.  Tries updates of different sizes from the same starting point and
    restores the policy after each, so they can be compared.  ``progress`` shows a bar over the
    policy's training."""

    def __init__(self, seed: int = 0, eval_episodes: int = 20, progress: bool = True):
        cfg = TRPOConfig(seed=seed, total_steps=budget(full=10_000, fast=3_000))
        trained = train(cfg, progress=progress)
        self.policy, self.env_id, self.seed, self.eval_episodes = trained.models["policy"], cfg.env_id, seed, eval_episodes
        self.trained_steps = trained.steps
        batch = collect_batch(cfg.env_id, cfg.num_envs, self.policy, seed + 1, cfg.steps_per_env)
        advantages, _, _ = gae_and_targets(batch, trained.models["value"], cfg.gamma, cfg.lam)
        self.problem = TrustRegionProblem(
            self.policy, batch.obs.flatten(0, 1), batch.actions.flatten(), batch.logp.flatten(), whiten(advantages).flatten()
        )
        self.direction = self.problem.natural_gradient(cfg.damping, cfg.cg_iters)
        self.return_before = self._mean_return()

    def _mean_return(self) -> float:
        """Mean return of the sampling policy, with the same start states and the same random
        stream for every candidate, so differences come from the policy, not from luck."""
        with torch.random.fork_rng():
            torch.manual_seed(10_000 + self.seed)
            return evaluate_policy(self.policy, self.env_id, self.eval_episodes, seed=10_000 + self.seed, greedy=False)

    def _measure(self, method: str, size: float, theta_new: torch.Tensor, evaluate: bool) -> StepTrial:
        theta_old = parameters_to_vector(self.problem.params).clone()
        vector_to_parameters(theta_new, self.problem.params)
        with torch.no_grad():
            kl = float(self.problem.kl())
        after = self._mean_return() if evaluate else math.nan
        vector_to_parameters(theta_old, self.problem.params)
        return StepTrial(method, size, kl, after)

    def gradient_step(self, lr: float, evaluate: bool = True) -> StepTrial:
        """Plain gradient ascent on the surrogate, θ_new = θ_old + η·g, with no control of the KL."""
        theta = parameters_to_vector(self.problem.params).detach()
        return self._measure("gradient step", lr, theta + lr * self.direction.g, evaluate)

    def trpo_search(self, max_kl: float, backtrack_ratio: float = 0.8, max_backtracks: int = 10) -> LineSearch:
        """The line search a TRPO update with bound δ = ``max_kl`` would run; the policy is left unchanged."""
        theta_old = parameters_to_vector(self.problem.params).clone()
        search = self.problem.line_search(self.direction.full_step(max_kl), max_kl, backtrack_ratio, max_backtracks)
        vector_to_parameters(theta_old, self.problem.params)
        return search

    def full_step_kl(self, max_kl: float, damped_length: bool = False) -> float:
        """Exact KL̄ of TRPO's full step for the bound δ = ``max_kl``, before any line search; its
        length from uᵀFu, or from uᵀ(F + μI)u with ``damped_length`` (``NaturalGradient.full_step``)."""
        theta = parameters_to_vector(self.problem.params).detach()
        return self._measure("full step", max_kl, theta + self.direction.full_step(max_kl, damped_length), evaluate=False).kl

    def trpo_step(self, max_kl: float, evaluate: bool = True) -> StepTrial:
        """The step TRPO takes with bound δ = ``max_kl`` (after its line search)."""
        search = self.trpo_search(max_kl)
        theta = parameters_to_vector(self.problem.params).detach()
        fraction = search.fractions[search.backtracks] if search.accepted else 0.0
        return self._measure("TRPO step", max_kl, theta + fraction * self.direction.full_step(max_kl), evaluate)
