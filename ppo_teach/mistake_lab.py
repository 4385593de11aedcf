"""Notebook 07's measurements: each circulating mistake (``ppo_teach.mistakes``) run beside the
right code, with what it changes measured.

Each ``measure_…`` function returns a result with ``row()``, one line of the notebook's summary
table (the mistake, what it does, what was measured wrong vs right), and ``plot()``.  Budgets
shrink in fast mode (``config.budget``); the full budgets are the ones the tests check, and each
comparison takes under a minute on a 2-core CPU.
"""
from __future__ import annotations

import copy
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.distributions import Categorical

from ppo_teach import mistakes, plots, ppo, trpo
from ppo_teach.advantages import reward_to_go, whiten
from ppo_teach.config import budget, fast_mode, seed_everything
from ppo_teach.grid import run_grid
from ppo_teach.history import History
from ppo_teach.losses import clipped_surrogate, entropy_bonus, explained_variance, mean_kl, policy_gradient_loss
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.optim import adam
from ppo_teach.rollout import Batch, collect_batch
from ppo_teach.training import Agent, TrainConfig, fit_value, gae_and_targets, run


# --------------------------------------------------------------------------------------
# The summary table.
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary table."""

    mistake: str
    what_it_does: str
    wrong: str  # what was measured with the mistake
    right: str  # the same measurement with the right code

    def _repr_html_(self) -> str:
        return Table([self])._repr_html_()


@dataclass
class Table:
    """Rows that render as an HTML table in a notebook and as aligned text elsewhere."""

    rows: list[Row]

    HEADER = ("mistake", "what it does", "measured: wrong", "measured: right")

    def _repr_html_(self) -> str:
        cells = lambda tag, values: "".join(f"<{tag} style='text-align:left'>{html.escape(v)}</{tag}>" for v in values)  # noqa: E731
        body = "".join(f"<tr>{cells('td', astuple(r))}</tr>" for r in self.rows)
        return f"<table><tr>{cells('th', self.HEADER)}</tr>{body}</table>"

    def __repr__(self) -> str:
        return "\n".join(" | ".join(values) for values in [self.HEADER, *map(astuple, self.rows)])


# --------------------------------------------------------------------------------------
# Shared pieces: a tiny problem whose policy gradient is exact, training runs, one batch.
# --------------------------------------------------------------------------------------


def expected_score_gradient(
    logits: torch.Tensor, weights: torch.Tensor, log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """E_{a~π}[ ∇_z f(z, a) · w(a) ] with respect to the logits z of a one-state policy π = softmax(z),
    computed exactly by summing over the actions (π itself held fixed): with f = log π it is the
    policy gradient ∇_z Σ_a π(a)·w(a) (the log-derivative trick); ``log_prob(z, a)`` is f."""
    z = logits.detach().clone().requires_grad_(True)
    actions = torch.arange(len(weights))
    pi = torch.softmax(z, -1).detach()
    surrogate = (pi * log_prob(z.expand(len(actions), -1), actions) * weights).sum()  # a row of logits per action
    return torch.autograd.grad(surrogate, z)[0]


def log_softmax_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The right log π(a) = log-softmax of the logits at a, as ``Categorical(logits=…).log_prob`` computes it."""
    return Categorical(logits=logits).log_prob(actions)


def no_evaluation(total_steps: int) -> dict[str, int]:
    """A budget of ``total_steps`` with no evaluation episodes: the comparisons read the training episodes."""
    return {"total_steps": total_steps, "eval_every": 10**12, "final_eval_episodes": 0}


def training_runs(
    make_agent: Callable[[TrainConfig], Agent], cfg_class: type[TrainConfig], label: str, seeds: Sequence[int], total_steps: int, **overrides
) -> list[History]:
    """One run of ``make_agent`` per seed with ``cfg_class(seed=…, **overrides)`` and the budget ``total_steps``,
    side by side in worker processes (``grid.run_grid``)."""
    runs = {f"{label}, seed {seed}": partial(run, cfg_class(seed=seed, **no_evaluation(total_steps), **overrides), label, make_agent, progress=False)
            for seed in seeds}
    return list(run_grid(runs, progress=False).values())


def final_return(history: History, last: int = 10) -> float:
    """Mean return of the run's last ``last`` training episodes."""
    return float(np.mean(history.episodes.returns[-last:]))


@dataclass
class TrainedBatch:
    """A PPO policy trained briefly on CartPole, its critic, and one fresh batch it collected,
    prepared as ``ppo.PPO.update`` prepares it (GAE(λ) advantages, value targets)."""

    policy: CategoricalPolicy
    value_fn: ValueFunction
    batch: Batch
    data: ppo.Flat
    cfg: ppo.PPOConfig


def trained_batch(seed: int, train_steps: int = 5_000, steps_per_env: int = 125) -> TrainedBatch:
    """PPO trained ``train_steps`` steps from ``seed`` (its return is then roughly 100–300), then one batch of
    8 × ``steps_per_env`` steps from fresh environments (seed + 100)."""
    cfg = ppo.PPOConfig(seed=seed, **no_evaluation(train_steps))
    history = ppo.train(cfg, progress=False)
    policy, value_fn = history.models["policy"], history.models["value"]
    batch = collect_batch(cfg.env_id, cfg.num_envs, policy, seed + 100, steps_per_env)
    return TrainedBatch(policy, value_fn, batch, ppo.prepare(batch, policy, value_fn, cfg), cfg)


Objective = Callable[[Categorical, torch.Tensor, ppo.Flat, torch.Tensor, torch.Tensor], torch.Tensor]


def update_on_batch(
    policy: CategoricalPolicy, data: ppo.Flat, objective: Objective, epochs: int = 10, minibatches: int = 4, lr: float = 1e-3, seed: int = 0
) -> CategoricalPolicy:
    """A copy of ``policy`` after ``epochs`` passes of Adam over shuffled minibatches of ``data``,
    maximising ``objective(dist, logp, mb, advantages, idx)`` (Â whitened per minibatch, ``idx`` the
    minibatch's rows).  The policy half of PPO's update, simplified the same way for every objective
    compared: 10 epochs by default (``ppo.PPOConfig`` has 20), no value loss, no gradient-norm clipping."""
    policy = copy.deepcopy(policy)
    optimizer = adam(policy.parameters(), lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.actions)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=generator).split(n // minibatches):
            mb = data.rows(idx)
            dist = policy(mb.obs)
            loss = -objective(dist, dist.log_prob(mb.actions), mb, whiten(mb.advantages), idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return policy


def updated_policies(tb: TrainedBatch, objectives: dict[str, Objective], seed: int) -> tuple[Categorical, dict[str, Categorical]]:
    """π_old and, for each objective, π_new after ``update_on_batch`` from the same policy and batch,
    both as distributions on the batch's states."""
    updated = {label: update_on_batch(tb.policy, tb.data, objective, seed=seed) for label, objective in objectives.items()}
    with torch.no_grad():
        return tb.policy(tb.data.obs), {label: policy(tb.data.obs) for label, policy in updated.items()}


def clip_objective(eps: float = 0.2) -> Objective:
    """L^CLIP as an ``Objective``."""
    return lambda dist, logp, mb, adv, idx: clipped_surrogate(logp, mb.logp_old, adv, eps)


def _seeds(full: int, fast: int) -> list[int]:
    return list(range(budget(full=full, fast=fast)))


def budget_note() -> str:
    """What the comparisons run in this mode."""
    if fast_mode():
        return ("fast mode: a smoke test. The training comparisons run 2 seeds × 4,000 steps and the one-batch ones 2 seeds; "
                "the text describes full mode (3 seeds × 20,000 steps; 4–5 seeds), whose claims the tests check.")
    return "full mode: the training comparisons run 3 seeds × 20,000 steps, the one-batch comparisons 4–5 seeds."


# --------------------------------------------------------------------------------------
# 1. Greedy actions.
# --------------------------------------------------------------------------------------

BANDIT_REWARDS = (1.0, 0.0, 3.0, 2.0)
BANDIT_LOGITS = (1.0, 0.5, 0.0, 0.0)  # the most probable action (0) is not the best (2)


@dataclass
class ArgmaxGradient:
    """Errors ‖ĝ − ∇J‖ / ‖∇J‖ of two estimates of a one-step problem's policy gradient, against the
    exact ∇J: mean over ``repeats`` draws for each number of samples n."""

    samples: list[int]
    sampled_error: np.ndarray  # a ~ π: shrinks like 1/√n
    argmax_error: np.ndarray  # a = argmax π every time: the same for every n

    def row(self) -> Row:
        return Row(
            "1. greedy argmax actions in a policy-gradient loop",
            "estimates ∇log π·r at the most probable action only: deterministic and biased",
            f"gradient error {self.argmax_error[-1]:.0%} of ‖∇J‖ at n = {self.samples[-1]:,} (the same at every n)",
            f"sampled actions: {self.sampled_error[0]:.0%} at n = {self.samples[0]}, {self.sampled_error[-1]:.1%} at n = {self.samples[-1]:,}",
        )

    def plot(self, ax: plt.Axes | None = None) -> None:
        ax = plots._axes(ax)
        ax.loglog(self.samples, self.sampled_error, "o-", label="a ~ π (sampled)")
        ax.loglog(self.samples, self.argmax_error, "s-", label="a = argmax π (greedy)")
        ax.loglog(self.samples, self.sampled_error[0] / np.sqrt(self.samples), "k:", lw=1, label="∝ 1/√n")
        ax.set(xlabel="samples n per estimate", ylabel="‖ĝ − ∇J‖ / ‖∇J‖", title="policy-gradient estimate vs the exact gradient")
        ax.legend(fontsize="small")


def measure_argmax_gradient(
    rewards: Sequence[float] = BANDIT_REWARDS,
    logits: Sequence[float] = BANDIT_LOGITS,
    samples: Sequence[int] = (1, 4, 16, 64, 256, 1024, 4096),
    repeats: int = 200,
    seed: int = 0,
) -> ArgmaxGradient:
    """A one-step problem: action a pays ``rewards[a]``, π = softmax(``logits``).  The exact gradient
    ∇_z J = ∇_z Σ_a π(a)·r(a), by summing over the actions; the estimates
    ĝ = −∇_z L^PG = ∇_z mean_i[ log π(a_i)·r(a_i) ] (``losses.policy_gradient_loss``) from n actions
    drawn from π, or n copies of the greedy action (``mistakes.ArgmaxCategorical``)."""
    r, z = torch.tensor(rewards), torch.tensor(logits)
    exact = expected_score_gradient(z, r, log_softmax_log_prob)
    generator = torch.Generator().manual_seed(seed)

    def estimate(actions: torch.Tensor) -> torch.Tensor:
        theta = z.clone().requires_grad_(True)
        logp = log_softmax_log_prob(theta.expand(len(actions), -1), actions)
        return torch.autograd.grad(-policy_gradient_loss(logp, r[actions]), theta)[0]

    def error(g: torch.Tensor) -> float:
        return float((g - exact).norm() / exact.norm())

    greedy = mistakes.ArgmaxCategorical(logits=z)
    sampled_error, argmax_error = [], []
    for n in samples:
        draws = [torch.multinomial(torch.softmax(z, -1), n, replacement=True, generator=generator) for _ in range(repeats)]
        sampled_error.append(np.mean([error(estimate(a)) for a in draws]))
        argmax_error.append(error(estimate(greedy.sample((n,)))))
    return ArgmaxGradient(list(samples), np.array(sampled_error), np.array(argmax_error))


@dataclass
class TrainingComparison:
    """Training runs of the right and the wrong version, over the same seeds."""

    mistake: str
    what_it_does: str
    runs: dict[str, list[History]]  # label → one History per seed; the right version first

    def entropies(self, label: str) -> list[tuple[float, float]]:
        """Per seed, the policy's mean entropy at the first and at the last update of the run ``label``."""
        return [(float(e[0]), float(e[-1])) for _, e in (h.series("entropy") for h in self.runs[label])]

    def final_returns(self) -> dict[str, list[float]]:
        """Mean return of each run's last 10 training episodes."""
        return {label: [final_return(h) for h in hs] for label, hs in self.runs.items()}

    def row(self) -> Row:
        (right, right_returns), (_, wrong_returns) = self.final_returns().items()
        seeds, steps = len(right_returns), self.runs[right][0].steps
        describe = lambda returns: f"last 10 episodes' return {np.median(returns):.0f} (median of {seeds} seeds)"  # noqa: E731
        return Row(self.mistake, self.what_it_does, f"{describe(wrong_returns)} after {steps:,} steps", f"{right}: {describe(right_returns)}")

    def plot(self, ax: plt.Axes | None = None) -> None:
        ax = plots._axes(ax)
        plots.learning_curves(self.runs, ax=ax, bins=20)
        ax.legend(loc="upper left", fontsize="small")  # the curves rise on the right


def right_ppo_runs(seeds: Sequence[int], total_steps: int) -> list[History]:
    """PPO with its defaults: the right version the training comparisons share."""
    return training_runs(ppo.PPO, ppo.PPOConfig, "ppo", seeds, total_steps)


def training_budget() -> tuple[list[int], int]:
    """(seeds, steps) of the training comparisons: 3 seeds × 20,000 steps; 2 × 4,000 in fast mode."""
    return _seeds(full=3, fast=2), budget(full=20_000, fast=4_000)


def measure_greedy_training(right: list[History] | None = None) -> TrainingComparison:
    """PPO against PPO that collects with greedy actions (``mistakes.ArgmaxPPO``), over the same seeds."""
    seeds, steps = training_budget()
    return TrainingComparison(
        "1. greedy argmax actions in a policy-gradient loop",
        "collects with a = argmax π: actions are not sampled from π",
        {"PPO, sampled actions": right or right_ppo_runs(seeds, steps),
         "PPO, argmax actions": training_runs(mistakes.ArgmaxPPO, ppo.PPOConfig, "ppo argmax", seeds, steps)},
    )


# --------------------------------------------------------------------------------------
# 2. Clamped probabilities instead of a clipped ratio.
# --------------------------------------------------------------------------------------


@dataclass
class RatioAfterUpdate:
    """Ratios r = π_new/π_old on the batch after one update (10 epochs × 4 minibatches, Adam 1e-3)
    with L^CLIP and with the clamped-probability surrogate, one batch per seed."""

    eps: float
    ratios: dict[str, list[np.ndarray]]  # objective → one array of ratios per seed
    kls: dict[str, list[float]]  # objective → KL̄(π_old ‖ π_new) per seed
    wrong_gradient_share: list[float]  # per seed: among the samples where L^CLIP's gradient is 0, the share where the clamped one's is not

    def outside(self, label: str) -> list[float]:
        """Per seed, the share of ratios outside [1 − ε, 1 + ε]."""
        return [float(np.mean(np.abs(r - 1) > self.eps)) for r in self.ratios[label]]

    def row(self) -> Row:
        def describe(label: str) -> str:
            highest = max(float(r.max()) for r in self.ratios[label])
            return f"{np.median(self.outside(label)):.0%} of ratios outside [{1 - self.eps:g}, {1 + self.eps:g}], max r = {highest:.2f}, median KL̄ {np.median(self.kls[label]):.3f}"

        clamped, clipped = self.ratios
        return Row(
            "2. the (log-)probabilities clamped instead of the ratio clipped",
            "lets the ratio move by any factor while π stays in [ε, 1 − ε]",
            describe(clamped) + f"; still pushes on {min(self.wrong_gradient_share):.0%}–{max(self.wrong_gradient_share):.0%} "
            f"(median {np.median(self.wrong_gradient_share):.0%}) of the samples where L^CLIP's gradient is zero",
            describe(clipped),
        )

    def plot(self, ax: plt.Axes | None = None) -> None:
        ax = plots._axes(ax)
        values = {label: np.concatenate(rs) for label, rs in self.ratios.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=60)
        for label, r in values.items():
            ax.hist(r, bins=edges, alpha=0.6, label=label)
        for x in (1 - self.eps, 1 + self.eps):
            ax.axvline(x, color="k", ls="--", lw=1)
        ax.set(xlabel="ratio π_new(a|s) / π_old(a|s) after the update", ylabel="samples", yscale="log",
               title=f"after one update on the same batches ({len(self.kls[next(iter(self.kls))])} seeds); dashed: 1 ± ε")
        ax.legend(fontsize="small")


def clipped_gradient_is_zero(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(where L^CLIP's per-sample gradient ∂L/∂log π is exactly 0, the clamped surrogate's per-sample
    gradient), at the given log-probabilities."""
    logp = logp.detach().requires_grad_(True)
    clipped_grad = torch.autograd.grad(clipped_surrogate(logp, logp_old, advantages, eps), logp)[0]
    clamped_grad = torch.autograd.grad(mistakes.clamped_logprob_surrogate(logp, logp_old, advantages, eps), logp)[0]
    return clipped_grad == 0, clamped_grad


def measure_clamped_ratio(eps: float = 0.2) -> RatioAfterUpdate:
    """On one batch per seed (``trained_batch``; 5 seeds, 2 in fast mode) the same update with L^CLIP and
    with ``mistakes.clamped_logprob_surrogate``; the ratios and KL it leaves, and, at the clipped
    update's end point, where L^CLIP has no gradient and the clamped surrogate still has one (with Â
    whitened over the whole batch there, where the update whitens per minibatch, so which samples
    count as clipped can differ slightly from the update's own)."""
    clipped = "clipped ratio, L^CLIP (right)"
    labels = {"clamped probabilities (wrong)": lambda d, lp, mb, a, i: mistakes.clamped_logprob_surrogate(lp, mb.logp_old, a, eps),
              clipped: clip_objective(eps)}
    result = RatioAfterUpdate(eps, {k: [] for k in labels}, {k: [] for k in labels}, [])
    for seed in _seeds(full=5, fast=2):
        tb = trained_batch(seed)
        old, new = updated_policies(tb, labels, seed)
        logps = {label: dist.log_prob(tb.data.actions) for label, dist in new.items()}
        for label, dist in new.items():
            result.ratios[label].append(torch.exp(logps[label] - tb.data.logp_old).numpy())
            result.kls[label].append(float(mean_kl(old, dist)))
        zero, clamped_grad = clipped_gradient_is_zero(logps[clipped], tb.data.logp_old, whiten(tb.data.advantages), eps)
        result.wrong_gradient_share.append(float((clamped_grad[zero] != 0).float().mean()) if zero.any() else math.nan)
    return result


# --------------------------------------------------------------------------------------
# 3. The immediate reward as the return.
# --------------------------------------------------------------------------------------


def measure_immediate_reward(right: list[History] | None = None) -> TrainingComparison:
    """PPO against PPO with Â_t = r_t − V(s_t) and value target r_t (``mistakes.immediate_reward_advantage``,
    which is GAE with γ = 0: the run sets γ = 0, and a test checks the two are equal)."""
    seeds, steps = training_budget()
    return TrainingComparison(
        "3. the immediate reward r_t in place of the return Ĝ_t in Â = Ĝ_t − V(s_t)",
        "optimises the next reward only; on CartPole r_t = 1 whatever the action",
        {"PPO, GAE(λ) advantages": right or right_ppo_runs(seeds, steps),
         "PPO, Â = r_t − V(s_t)": training_runs(ppo.PPO, ppo.PPOConfig, "ppo r-V", seeds, steps, gamma=0.0)},
    )


# --------------------------------------------------------------------------------------
# 4. Log-probabilities of raw logits.
# --------------------------------------------------------------------------------------


@dataclass
class RawLogitAscent:
    """Gradient ascent on a one-step problem with the exact expected gradient of each estimator:
    π(best action) after each step."""

    rewards: tuple[float, ...]
    start: tuple[float, ...]  # π at the start
    trajectories: dict[str, np.ndarray]  # label → π(best) at steps 0 … steps
    first_gradients: dict[str, torch.Tensor]  # label → the expected gradient at the start

    def row(self) -> Row:
        right, wrong, centred = self.trajectories.values()
        return Row(
            "4. log-probabilities taken of raw logits",
            "∇ = e_a instead of e_a − π: adds E[Â]·π to the expected gradient, with positive returns towards the actions π already prefers",
            f"π(best action) {right[0]:.2f} → {wrong[-1]:.3f} after {len(right) - 1} steps (rewards all positive); "
            f"{centred[-1]:.3f} with advantages centred on E[r]",
            f"log-softmax: → {right[-1]:.3f}",
        )

    def plot(self, ax: plt.Axes | None = None) -> None:
        ax = plots._axes(ax)
        for label, t in self.trajectories.items():
            ax.plot(t, label=label, ls="--" if "centred" in label else "-")
        ax.set(xlabel="gradient-ascent steps (exact expected gradient)", ylabel="π(best action)", ylim=(-0.02, 1.02),
               title=f"rewards {self.rewards}, π at the start {tuple(round(p, 2) for p in self.start)}")
        ax.legend(fontsize="small")


def measure_raw_logits(rewards: Sequence[float] = (1.0, 2.0), start: Sequence[float] = (0.8, 0.2), lr: float = 1.0, steps: int = 100) -> RawLogitAscent:
    """Follow E_{a~π}[∇_z f(z, a)·Â(a)] from π = ``start`` for ``steps`` steps of size ``lr``, with
    f = log-softmax (right) and f = the raw logit (``mistakes.raw_logit_log_prob``), Â = r(a) (plain
    returns, as REINFORCE without a baseline), and the raw logit with Â = r(a) − E_π[r] (a baseline
    that centres the advantages exactly: then the extra term E[Â]·π is 0 and the expected gradient is
    the right one)."""
    r = torch.tensor(rewards)
    best = int(r.argmax())
    variants = {
        "log-softmax, Â = r (right)": (log_softmax_log_prob, False),
        "raw logit, Â = r (wrong)": (mistakes.raw_logit_log_prob, False),
        "raw logit, Â = r − E_π[r] (centred)": (mistakes.raw_logit_log_prob, True),
    }
    trajectories, first = {}, {}
    for label, (log_prob, centred) in variants.items():
        z = torch.tensor(start).log()
        seen = [float(torch.softmax(z, -1)[best])]
        for step in range(steps):
            weights = r - (torch.softmax(z, -1) * r).sum() if centred else r
            g = expected_score_gradient(z, weights, log_prob)
            first.setdefault(label, g)
            z = z + lr * g
            seen.append(float(torch.softmax(z, -1)[best]))
        trajectories[label] = np.array(seen)
    return RawLogitAscent(tuple(rewards), tuple(start), trajectories, first)


# --------------------------------------------------------------------------------------
# 5. "TRPO" as a parameter-distance penalty.
# --------------------------------------------------------------------------------------


@dataclass
class KLBound:
    """Per-update KL̄(π_old ‖ π_new)/δ of TRPO and of the penalised gradient "TRPO" at each penalty, over seeds."""

    max_kl: float
    runs: dict[str, list[History]]  # TRPO first, then the penalised runs

    def kl_over_delta(self, label: str) -> np.ndarray:
        return np.concatenate([h.series("kl_over_delta")[1] for h in self.runs[label]])

    def describe(self, label: str) -> str:
        kl = self.kl_over_delta(label)
        returns = np.median([final_return(h) for h in self.runs[label]])
        return (f"KL̄ from {kl.min():.2f}·δ to {kl.max():.2f}·δ, > δ in {np.mean(kl > 1):.0%} of {len(kl)} updates; "
                f"last 10 episodes' return {returns:.0f} (median of {len(self.runs[label])} seeds)")

    def row(self) -> Row:
        right, *wrong = self.runs
        return Row(
            "5. \"TRPO\" as gradient ascent with a penalty on ‖θ − θ_old‖²",
            "penalises the distance of the parameters, not of the policies; no line search",
            "; ".join(f"{label}: {self.describe(label)}" for label in wrong),
            f"TRPO: {self.describe(right)}",
        )

    def plot(self, axes: Sequence[plt.Axes] | None = None) -> None:
        if axes is None:
            _, axes = plt.subplots(1, len(self.runs), figsize=(5 * len(self.runs), 3.6), sharey=True)
        for ax, (label, histories) in zip(axes, self.runs.items()):
            for h in histories:
                ax.semilogy(*h.series("kl_over_delta"), ".-", lw=1, label=f"seed {h.seed}")
            ax.axhline(1.0, color="k", ls="--", lw=1, label="the bound KL̄ = δ")
            ax.set(xlabel="environment steps", title=label)
            ax.legend(fontsize="small")
        axes[0].set_ylabel("KL̄(π_old ‖ π_new) / δ per update")


PENALTIES = (1.0, 0.1)


def measure_trpo_kl(max_kl: float = 0.01, penalties: Sequence[float] = PENALTIES) -> KLBound:
    """TRPO and ``mistakes.PenalisedGradientTRPO`` (10 steps of size 0.5 on L(θ) − c·‖θ − θ_old‖², for each
    penalty c in ``penalties``; the same advantages and critic) trained over the same seeds; the exact
    KL̄ of every update, measured against δ = ``max_kl``."""
    seeds, steps = training_budget()
    runs = {"TRPO (right)": training_runs(trpo.TRPO, trpo.TRPOConfig, "trpo", seeds, steps, max_kl=max_kl)}
    for c in penalties:
        runs[f"penalty c = {c:g} (wrong)"] = training_runs(
            mistakes.PenalisedGradientTRPO, mistakes.PenalisedTRPOConfig, "penalised", seeds, steps, max_kl=max_kl, penalty=c)
    return KLBound(max_kl, runs)


# --------------------------------------------------------------------------------------
# 6. "An adaptive learning rate": the KL-penalty variant adapts β.
# --------------------------------------------------------------------------------------


@dataclass
class PenaltyCoefficient:
    """One run of PPO's KL-penalty variant: per update, the learning rate, the measured KL d and the β it used."""

    history: History

    def row(self) -> Row:
        _, lr = self.history.series("lr")
        _, beta = self.history.series("kl_coef")
        return Row(
            "6. the KL-penalty variant called \"an adaptive learning rate\"",
            "names the wrong quantity: the rule adapts the penalty coefficient β",
            f"the optimizer's learning rate: {lr.min():g} at all {len(lr)} updates (annealing off; the rule never touches it)",
            f"β, adapted by the rule from the measured KL: {beta.min():.3g} to {beta.max():.3g}",
        )

    def plot(self, axes: Sequence[plt.Axes] | None = None) -> None:
        """The learning rate; the measured KL d of each update against [d_targ/1.5, 1.5·d_targ]; the β each update used."""
        if axes is None:
            _, axes = plt.subplots(1, 3, figsize=(14, 3.2), layout="constrained")
        target = self.history.config["kl_target"]
        axes[0].plot(*self.history.series("lr"), ".-")
        axes[0].set(ylabel="learning rate", yscale="log", title="the learning rate: left alone")
        axes[1].semilogy(*self.history.series("kl_after"), ".-", label="d, measured after each update")
        plots._shade(axes[1], (target / 1.5, target * 1.5), "d_targ/1.5 to 1.5·d_targ: β kept")
        axes[1].set(ylabel="KL (k3 over the batch)", title="above the band β doubles, below it β halves")
        axes[1].legend(fontsize="small")
        axes[2].plot(*self.history.series("kl_coef"), ".-")
        axes[2].set_yscale("log", base=2)
        axes[2].set(ylabel="β used by the update", title="β: what the rule adapts")
        for ax in axes:
            ax.set_xlabel("environment steps")


def measure_penalty_coefficient(seed: int = 0) -> PenaltyCoefficient:
    """PPO with ``variant="kl_penalty"`` and a constant learning rate (``anneal_lr=False``), 20,000 steps
    (4,000 in fast mode)."""
    cfg = ppo.PPOConfig(seed=seed, variant="kl_penalty", anneal_lr=False, **no_evaluation(budget(full=20_000, fast=4_000)))
    return PenaltyCoefficient(ppo.train(cfg, progress=False))


# --------------------------------------------------------------------------------------
# 8. The entropy term.
# --------------------------------------------------------------------------------------

def _signed(x: float) -> str:
    """A signed number with a true minus sign."""
    return f"{x:+.3f}".replace("-", "−")


ENTROPY_VARIANTS = ("no entropy term", "exact H̄, subtracted (right)", "exact H̄, wrong sign",
                    "−log π·(1 − done), subtracted", "−log π·(1 − done), wrong sign (as circulated)")


@dataclass
class EntropyTerms:
    """One update (L^CLIP plus an entropy term with coefficient ``coef``) per seed and variant: the
    change of the policy's exact mean entropy on the batch's states, and KL̄(π_old ‖ π_new)."""

    coef: float
    entropy_change: dict[str, list[float]]
    kls: dict[str, list[float]]

    def median(self, label: str, what: str = "entropy") -> float:
        return float(np.median((self.entropy_change if what == "entropy" else self.kls)[label]))

    def row(self) -> Row:
        none, right, exact_wrong, _, circulated = ENTROPY_VARIANTS
        return Row(
            "8. entropy as −log π·(1 − done), added to the loss",
            "as circulated, a penalty on KL(π_old ‖ π_θ), no entropy bonus at all; with the exact H̄, the wrong sign lowers the entropy",
            f"ΔH̄ {_signed(self.median(circulated))} and KL̄ {self.median(circulated, 'kl'):.4f} as circulated; "
            f"ΔH̄ {_signed(self.median(exact_wrong))} with the exact H̄ and the wrong sign",
            f"ΔH̄ {_signed(self.median(right))} (no entropy term: ΔH̄ {_signed(self.median(none))}, KL̄ {self.median(none, 'kl'):.4f})",
        )

    def plot(self, axes: Sequence[plt.Axes] | None = None) -> None:
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
        for ax, values, label in zip(axes, (self.entropy_change, self.kls), ("change of the mean entropy H̄", "KL̄(π_old ‖ π_new)")):
            for i, name in enumerate(ENTROPY_VARIANTS):
                ax.plot(values[name], [i] * len(values[name]), "o", alpha=0.7)
            ax.set(xlabel=label)
        axes[0].axvline(0, color="grey", lw=1)
        axes[0].set_yticks(range(len(ENTROPY_VARIANTS)), ENTROPY_VARIANTS)
        axes[0].set_title(f"one update, c_H = {self.coef:g}; a dot per seed", fontsize="medium")


def measure_entropy_terms(coef: float = 0.5) -> EntropyTerms:
    """On one batch per seed (``trained_batch``; 4 seeds, 2 in fast mode) the update with L^CLIP plus each
    of ``ENTROPY_VARIANTS``.  ``coef`` is large (0.5; 0.01 is usual) so that one update shows the effect."""
    clip = clip_objective()
    result = EntropyTerms(coef, {k: [] for k in ENTROPY_VARIANTS}, {k: [] for k in ENTROPY_VARIANTS})
    for seed in _seeds(full=4, fast=2):
        tb = trained_batch(seed)
        ends = tb.batch.ends.flatten()
        terms = {
            ENTROPY_VARIANTS[0]: lambda d, lp, i: 0.0,
            ENTROPY_VARIANTS[1]: lambda d, lp, i: coef * entropy_bonus(d.entropy()),
            ENTROPY_VARIANTS[2]: lambda d, lp, i: -coef * entropy_bonus(d.entropy()),
            ENTROPY_VARIANTS[3]: lambda d, lp, i: coef * mistakes.sampled_entropy(lp, ends[i]),
            ENTROPY_VARIANTS[4]: lambda d, lp, i: -coef * mistakes.sampled_entropy(lp, ends[i]),
        }
        objectives = {label: (lambda d, lp, mb, a, i, term=term: clip(d, lp, mb, a, i) + term(d, lp, i)) for label, term in terms.items()}
        old, new = updated_policies(tb, objectives, seed)
        for label, dist in new.items():
            result.entropy_change[label].append(float(dist.entropy().mean() - old.entropy().mean()))
            result.kls[label].append(float(mean_kl(old, dist)))
    return result


# --------------------------------------------------------------------------------------
# 9. The advantage as the value target.
# --------------------------------------------------------------------------------------


@dataclass
class ValueTargets:
    """Rounds of (GAE(λ) with the current V → targets → refit V) on one fixed batch per seed: the
    explained variance of the Monte-Carlo returns by V after each round."""

    explained: dict[str, np.ndarray]  # label → (seeds, rounds + 1), round 0 the untrained critic
    scale: dict[str, list[float]]  # label → per seed, mean V / mean G on the same rows after the last refit

    def row(self) -> Row:
        (right, r), (wrong, w) = self.explained.items()
        rounds = r.shape[1] - 1
        return Row(
            "9. the value target built from the advantage",
            "regresses V onto Â = G^λ − V, a target that moves with V, instead of onto the return",
            f"explained variance of the returns after {rounds} refits: {np.median(w[:, -1]):.2f} (best round {np.median(w.max(1)):.2f}); "
            f"mean V / mean return {np.median(self.scale[wrong]):.2f}",
            f"target Â + V: {np.median(r[:, -1]):.2f}; mean V / mean return {np.median(self.scale[right]):.2f}",
        )

    def plot(self, ax: plt.Axes | None = None) -> None:
        ax = plots._axes(ax)
        for label, ev in self.explained.items():
            line, = ax.plot(np.median(ev, 0), "o-", label=f"{label} (median)")
            ax.fill_between(range(ev.shape[1]), ev.min(0), ev.max(0), color=line.get_color(), alpha=0.2)
        ax.axhline(0, color="grey", lw=1)
        ax.set(xlabel="refits of V (each 40 Adam steps)", ylabel="explained variance of the returns",
               title="a fresh critic fitted on one batch; band: min–max over seeds",
               ylim=(min(-0.1, min(float(ev.min()) for ev in self.explained.values()) - 0.05), 1.05))
        ax.legend(fontsize="small")


def finished_rows(ends: torch.Tensor) -> torch.Tensor:
    """The rows whose episode ends inside the batch (an end at the same or a later step of the stream)."""
    return ends.flip(0).cummax(0).values.flip(0)


def measure_value_targets(rounds: int = 10, iters: int = 40) -> ValueTargets:
    """On one long batch per seed (8 × 500 steps of ``trained_batch``'s policy; 4 seeds, 2 in fast mode), a
    fresh critic refitted ``rounds`` times, each time ``iters`` Adam steps (lr 0.03) on the targets of
    GAE(λ = 0.95) from the current V: Â + V (right) or Â (``mistakes.advantage_as_value_target``).
    Measured on the rows whose episode ends in the batch, against their Monte-Carlo discounted return."""
    labels = {"target Â + V (right)": lambda a, v: a + v, "target Â (wrong)": mistakes.advantage_as_value_target}
    explained, scale = {label: [] for label in labels}, {label: [] for label in labels}
    for seed in _seeds(full=4, fast=2):
        tb = trained_batch(seed, steps_per_env=500)
        cfg, batch = tb.cfg, tb.batch
        finished = finished_rows(batch.ends)
        returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, cfg.gamma)[finished]
        obs_dim = batch.obs.shape[-1]
        for label, target in labels.items():
            seed_everything(seed)
            value_fn = ValueFunction(obs_dim, cfg.hidden)
            optimizer = adam(value_fn.parameters(), 3e-2)
            predictions = lambda: value_fn(batch.obs)[finished].detach()  # noqa: E731
            curve = [explained_variance(predictions(), returns)]
            for _ in range(rounds):
                advantages, _, values = gae_and_targets(batch, value_fn, cfg.gamma, cfg.lam)
                fit_value(value_fn, optimizer, batch.obs, target(advantages, values), iters)
                curve.append(explained_variance(predictions(), returns))
            explained[label].append(curve)
            scale[label].append(float(predictions().mean() / returns.mean()))
    return ValueTargets({label: np.array(curves) for label, curves in explained.items()}, scale)
