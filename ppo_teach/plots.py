"""Plots the notebooks share.  Each draws on a given Axes (or a new figure) and returns the
numbers it drew, so tests can check a plot's content without looking at pixels."""
from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ppo_teach.advantages import gae
from ppo_teach.history import History
from ppo_teach.losses import clipped_surrogate
from ppo_teach.ppo import REFERENCE_EPS, clipping_range


def _shade(ax: plt.Axes, band: tuple[float, float], label: str) -> None:
    """A horizontal band where a statistic is expected to lie."""
    ax.axhspan(*band, color="C2", alpha=0.15, label=label)


def _axes(ax: plt.Axes | None, figsize: tuple[float, float] = (6.4, 3.6)) -> plt.Axes:
    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def visible_marker(points: int) -> str | None:
    """A marker for a line of ``points`` points that would otherwise be invisible: a line through a
    single point draws nothing (fast mode's runs are evaluated once)."""
    return "o" if points == 1 else None


def binned_episode_returns(history: History, edges: np.ndarray) -> np.ndarray:
    """Mean training-episode return in each env-step bin (edges[i], edges[i+1]] (NaN where none finished)."""
    steps, returns = np.asarray(history.episodes.steps), np.asarray(history.episodes.returns)
    which = np.digitize(steps, edges, right=True) - 1
    return np.array([returns[which == i].mean() if (which == i).any() else np.nan for i in range(len(edges) - 1)])


def learning_curves(
    runs: dict[str, Sequence[History]], ax: plt.Axes | None = None, bins: int = 40, threshold: float | None = 475.0
) -> dict[str, np.ndarray]:
    """Training-episode return against env steps: per label, the median over seeds and a shaded band
    from the lowest to the highest seed (min–max, labelled as such).  Returns {label: (bins, seeds)
    array of binned returns}."""
    ax = _axes(ax)
    end = max(max(h.episodes.steps, default=1) for hs in runs.values() for h in hs)
    edges = np.linspace(0, end, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    drawn = {}
    for label, histories in runs.items():
        curves = np.stack([binned_episode_returns(h, edges) for h in histories], axis=1)
        drawn[label] = curves
        with warnings.catch_warnings():  # bins where no episode finished are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            median, low, high = np.nanmedian(curves, 1), np.nanmin(curves, 1), np.nanmax(curves, 1)
        line, = ax.plot(centres, median, label=f"{label} (median of {len(histories)} seeds)")
        ax.fill_between(centres, low, high, color=line.get_color(), alpha=0.2, label=f"{label}: min–max over the {len(histories)} seeds")
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"solve threshold {threshold:g}")
    ax.set(xlabel="environment steps", ylabel="training episode return")
    ax.legend(loc="lower right", fontsize="small")
    return drawn


def eval_curves(histories: Sequence[History], ax: plt.Axes | None = None, threshold: float = 475.0) -> dict[int, int]:
    """Greedy-policy evaluation return against env steps, one line per seed (a marker where a seed
    was evaluated only once), solve points marked.  Seeds that solve at the same evaluation draw
    their dots on (or next to) each other, so every evaluation where several seeds solve is
    annotated with their number.  Returns {env steps: seeds solving there}."""
    ax = _axes(ax)
    solves: dict[int, list[float]] = {}
    for h in histories:
        line, = ax.plot(h.eval_steps, h.eval_returns, lw=1, marker=visible_marker(len(h.eval_steps)), label=f"seed {h.seed}")
        if h.solved:
            value = h.eval_returns[h.eval_steps.index(h.steps_to_solve)]
            ax.plot([h.steps_to_solve], [value], "o", color=line.get_color())
            solves.setdefault(h.steps_to_solve, []).append(value)
    for step, values in solves.items():
        if len(values) > 1:
            ax.annotate(f"{len(values)} seeds", (step, min(values)), xytext=(-6, -14), textcoords="offset points",
                        ha="right", fontsize="small")
    ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.set(xlabel="environment steps", ylabel="greedy evaluation return (10 episodes)")
    ax.legend(fontsize="small")
    return {step: len(values) for step, values in solves.items()}


def discount_weights(gamma: float, horizons: float = 5.0, ax: plt.Axes | None = None) -> np.ndarray:
    """The weight γ^k that a reward k steps ahead gets, for k < horizons/(1−γ), and the effective
    horizon 1/(1−γ) marked with its weight γ^{1/(1−γ)}.  Since γ^{c/(1−γ)} ≤ e^{−c} (close to it
    only for γ near 1), the default 5 horizons always reach weights below e^{−5} ≈ 0.007,
    whatever γ in [0, 1): the plot never cuts the curve off."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"γ = {gamma} has no finite effective horizon: expected 0 ≤ γ < 1. Fix: use e.g. γ = 0.99.")
    horizon = 1 / (1 - gamma)
    ax = _axes(ax, (6.4, 3.0))
    weights = gamma ** np.arange(math.ceil(horizons * horizon))
    ax.plot(weights)
    ax.axvline(horizon, color="grey", ls="--", lw=1,
               label=f"1/(1−γ) = {horizon:.4g} steps, where γ^k = {gamma ** horizon:.2f} (at most e^(−1) ≈ 0.37)")
    ax.legend()
    ax.set(xlabel="k (steps ahead)", ylabel="γ^k", ylim=(0, 1.05), title=f"γ = {gamma:.3f}")
    return weights


def gradient_spread(samples: dict[str, np.ndarray], ax: plt.Axes | None = None) -> dict[str, np.ndarray]:
    """Histogram of each batch's distance ‖ĝ_i − ḡ‖ from its estimator's mean gradient ḡ.

    The mean of the squared distances is the total variance tr Cov[ĝ]; a histogram further to
    the right is a noisier estimator.  Returns the distances.
    """
    ax = _axes(ax)
    distances = {name: np.linalg.norm(s - s.mean(0), axis=1) for name, s in samples.items()}
    bins = np.histogram_bin_edges(np.concatenate(list(distances.values())), bins=30)
    for name, d in distances.items():
        ax.hist(d, bins=bins, alpha=0.6, label=f"{name}: rms {np.sqrt((d**2).mean()):.3f}")
    ax.set(xlabel="‖ĝ − mean ĝ‖ (one batch's error)", ylabel="batches")
    ax.legend(fontsize="small")
    return distances


def step_size_trials(trials: Sequence, return_before: float, axes: Sequence[plt.Axes] | None = None) -> None:
    """Three panels of ``StepTrial`` objects from ``trpo.StepSizeLab`` (gradient steps and TRPO
    steps apart): the return after one update against its size (η or δ), the KL the update caused
    against its size (with the line KL̄ = δ over the TRPO steps' bounds), and the return after the
    update against that KL, where steps of either kind that moved the policy equally far meet."""
    axes = axes if axes is not None else plt.subplots(1, 3, figsize=(15, 3.6))[1]
    for method, marker in (("gradient step", "o-"), ("TRPO step", "s-")):
        chosen = [t for t in trials if t.method == method]
        label = "gradient step, size = η" if method == "gradient step" else "TRPO step, size = δ"
        axes[0].plot([t.size for t in chosen], [t.return_after for t in chosen], marker, label=label)
        axes[1].plot([t.size for t in chosen], [t.kl for t in chosen], marker, label=label)
        axes[2].plot([t.kl for t in chosen], [t.return_after for t in chosen], marker, label=label)
        for t in chosen:
            axes[2].annotate(f"{t.size:g}", (t.kl, t.return_after), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    for ax in (axes[0], axes[2]):
        ax.axhline(return_before, color="grey", ls="--", lw=1, label="return before the update")
    axes[0].set(xscale="log", xlabel="step size (η or δ)", ylabel="mean return after one update")
    deltas = [t.size for t in trials if t.method == "TRPO step"]
    if deltas:
        axes[1].plot(*[[min(deltas), max(deltas)]] * 2, color="grey", ls=":", lw=1, label="KL̄ = δ")
    axes[1].set(xscale="log", yscale="log", xlabel="step size (η or δ)", ylabel="KL̄(π_old ‖ π_new)")
    axes[2].set(xscale="log", xlabel="KL̄(π_old ‖ π_new) the update reached (labels: its η or δ)", ylabel="mean return after one update")
    for ax in axes:
        ax.legend(fontsize="small")


def line_search(search, max_kl: float, ax: plt.Axes | None = None) -> tuple[list[float], list[float]]:
    """The fractions κᵏ of the full TRPO step a line search tried, with the exact KL̄ (beside the
    quadratic model that sized the step, ½ΔθᵀFΔθ = (κᵏ)²·δ) and the surrogate improvement at
    each; the accepted one is circled.  Returns (fractions, kls)."""
    ax = _axes(ax, (6.4, 3.4))
    f = np.linspace(0, 1, 50)
    ax.plot(f, f**2 * max_kl, color="C0", lw=1, alpha=0.5, label="quadratic model ½ΔθᵀFΔθ = fraction²·δ")
    ax.plot(search.fractions, search.kls, "o-", color="C0", label="exact KL̄ at this fraction")
    ax.axhline(max_kl, color="C0", ls="--", lw=1, label=f"δ = {max_kl:.3g}")
    ax.set(xlabel="fraction of the full step tried", ylabel="KL̄", xlim=(0, 1.05), ylim=(0, max(max(search.kls), max_kl) * 1.2))
    twin = ax.twinx()
    twin.plot(search.fractions, search.improvements, "s-", color="C1", label="L(θ) − L(θ_old)")
    twin.axhline(0, color="C1", ls=":", lw=1)
    twin.set_ylabel("surrogate improvement", color="C1")
    if search.accepted:
        k = search.backtracks
        ax.plot([search.fractions[k]], [search.kls[k]], "o", ms=14, mfc="none", mec="k", label="accepted")
    backtracks = f"{search.backtracks} backtrack{'' if search.backtracks == 1 else 's'}"
    verdict = f"accepted after {backtracks}" if search.accepted else f"all {len(search.fractions)} fractions rejected: parameters unchanged"
    verdict += f"; full step's KL̄ = {search.kls[0] / max_kl:.2f}·δ"
    ax.set_title(verdict)
    ax.legend(loc="upper left", fontsize="small")
    return search.fractions, search.kls


def update_stat(
    histories: Sequence[History],
    key: str,
    ax: plt.Axes | None = None,
    bound: float | None = None,
    label: str = "",
    band: tuple[float, float] | None = None,
    band_label: str = "",
) -> None:
    """One per-update statistic (``key`` in ``History.updates``) against env steps, a line per
    seed, with an optional horizontal bound (δ for TRPO's KL, say) and an optional shaded band
    (a range the statistic is expected in)."""
    ax = _axes(ax)
    for h in histories:
        ax.plot(*h.series(key), lw=1, marker=".", label=f"seed {h.seed}")
    if bound is not None:
        ax.axhline(bound, color="grey", ls="--", lw=1, label=f"bound {bound:g}")
    if band is not None:
        _shade(ax, band, band_label or f"range {band[0]:g}–{band[1]:g}")
    ax.set(xlabel="environment steps", ylabel=label or key)
    ax.legend(fontsize="small")


def clip_objective(eps: float, advantage: float = 1.0, ax: plt.Axes | None = None) -> dict[str, np.ndarray]:
    """L^CLIP for one sample as a function of the ratio r, drawn from the package's own
    ``clipped_surrogate``, beside the unclipped r·Â; where autograd finds ∂L/∂r = 0 is shaded.
    Returns {"r", "clipped", "unclipped", "grad"}."""
    ax = _axes(ax, (6.4, 3.6))
    r = torch.linspace(0.01, 2.5, 500, dtype=torch.float64, requires_grad=True)
    adv = torch.full_like(r, advantage)
    per_sample = torch.stack([clipped_surrogate(torch.log(r[i : i + 1]), torch.zeros(1, dtype=torch.float64), adv[i : i + 1], eps) for i in range(len(r))])
    (grad,) = torch.autograd.grad(per_sample.sum(), r)
    r_np, clipped, g = r.detach().numpy(), per_sample.detach().numpy(), grad.numpy()
    ax.plot(r_np, r_np * advantage, color="grey", ls="--", lw=1, label="unclipped r·Â")
    ax.plot(r_np, clipped, color="C0", lw=2, label="L^CLIP = min(r·Â, clip(r, 1−ε, 1+ε)·Â)")
    ax.fill_between(r_np, *ax.get_ylim(), where=g == 0, color="C3", alpha=0.15, label="∂L/∂r = 0: no gradient")
    ax.axvline(1, color="k", lw=0.5)
    ax.set(xlabel="probability ratio r = π_θ(a|s) / π_θold(a|s)", ylabel="objective",
           title=f"Â {'> 0' if advantage > 0 else '< 0'}, ε = {eps:.2f}: clipped range [{1 - eps:.2f}, {1 + eps:.2f}]")
    ax.legend(fontsize="small", loc="upper left" if advantage > 0 else "lower left")
    return {"r": r_np, "clipped": clipped, "unclipped": r_np * advantage, "grad": g}


def gae_lambda(episode, value_fn, gamma: float, lam: float, ax: plt.Axes | None = None) -> np.ndarray:
    """GAE(λ) advantages along one recorded episode, between the TD(0) (λ = 0) and Monte-Carlo
    (λ = 1) extremes.  Returns the advantages for ``lam``."""
    ax = _axes(ax, (7.5, 3.6))
    values, next_values = episode.values(value_fn)
    args = (episode.rewards, values, next_values, episode.terminated, episode.ends, gamma)
    steps = np.arange(len(episode.rewards))
    for extreme, style in ((0.0, ":"), (1.0, "--")):
        ax.plot(steps, gae(*args, extreme)[:, 0].numpy(), ls=style, color="grey", lw=1, label=f"λ = {extreme:g}")
    adv = gae(*args, lam)[:, 0].numpy()
    ax.plot(steps, adv, color="C0", lw=2, label=f"λ = {lam:.2f}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="step t of the episode", ylabel="advantage Â_t", title=f"GAE(λ) along one episode of {len(steps)} steps")
    ax.legend(fontsize="small")
    return adv


# Where each statistic lay with the default settings on CartPole: the 10th–90th percentile over
# the updates of the lab's default run (20,000 steps) on seeds 0–4, all of which solved.  Explained
# variance over the updates until each run's solve point only: once the pole stays up, no episode
# terminates (episodes end at the time limit, bootstrapped), every target Ĝ^λ_t is nearly the same
# number and the ratio of two tiny variances means nothing.  This course's measured ranges, not universal ones; tests/test_ppo.py re-measures them.
HEALTHY_RANGES: dict[str, tuple[float, float]] = {
    "clip_fraction": (0.0094, 0.13),
    "kl_after": (0.0028, 0.011),
    "explained_variance": (0.28, 0.94),
}
HEALTHY_UNTIL_SOLVED = ("explained_variance",)
HEALTHY_LABEL = "defaults on CartPole, 10th–90th pct."


def ppo_dashboard(history: History, axes: Sequence[plt.Axes] | None = None) -> dict[str, np.ndarray]:
    """Six panels of one PPO run: training returns; the share of ratios outside [1 − ε, 1 + ε] and
    of samples without gradient; the KL per update; explained variance; entropy; the ratio
    distribution after the first and the last update.  Shaded: ``HEALTHY_RANGES`` (explained variance's
    measured until the solve point).  Returns the drawn series."""
    axes = list(axes) if axes is not None else list(plt.subplots(2, 3, figsize=(16, 6.4))[1].flat)
    clips, eps = clipping_range(history.config["variant"], history.config["clip_eps"])
    axes[0].plot(history.episodes.steps, history.episodes.returns, ".", ms=3, alpha=0.5)
    axes[0].set(xlabel="environment steps", ylabel="episode return", title="training episodes (sampled actions)")

    steps, clip = history.series("clip_fraction")
    _, zero_grad = history.series("zero_grad_fraction")
    _, clip_after = history.series("clip_fraction_after")
    axes[1].plot(steps, clip, ".-", label=f"outside [{1 - eps:g}, {1 + eps:g}], before each step")
    if clips:
        axes[1].plot(steps, zero_grad, ".-", label="no gradient (the side Â favours)")
    axes[1].plot(steps, clip_after, ".-", alpha=0.6, label="outside the range after the update")
    if clips and eps == REFERENCE_EPS:
        _shade(axes[1], HEALTHY_RANGES["clip_fraction"], f"clip fraction, {HEALTHY_LABEL}")
    title = "clip fraction" if clips else f"ratios outside [{1 - eps:g}, {1 + eps:g}] (this loss does not clip)"
    axes[1].set(xlabel="environment steps", ylabel="fraction of samples", title=title)
    axes[1].legend(fontsize="small")

    _, kl_after = history.series("kl_after")
    _, k3 = history.series("approx_kl")
    _, k1 = history.series("approx_kl_k1")
    axes[2].plot(steps, kl_after, ".-", lw=2, label="k3 after the update, whole batch")
    axes[2].plot(steps, k3, ".-", alpha=0.6, label="k3 before each step, mean over steps")
    axes[2].plot(steps, k1, ".-", alpha=0.6, label="k1 before each step, mean over steps")
    _shade(axes[2], HEALTHY_RANGES["kl_after"], f"KL after, {HEALTHY_LABEL}")
    axes[2].set(xlabel="environment steps", ylabel="KL(π_old ‖ π) estimate", title="how far each update moved π")
    axes[2].set_yscale("symlog", linthresh=1e-3)
    axes[2].legend(fontsize="small")

    _, explained = history.series("explained_variance")
    axes[3].plot(steps, explained, ".-")
    _shade(axes[3], HEALTHY_RANGES["explained_variance"], f"{HEALTHY_LABEL}, until solved")
    axes[3].set(xlabel="environment steps", ylabel=r"$1 - \mathrm{Var}[\hat G^\lambda - V] \,/\, \mathrm{Var}[\hat G^\lambda]$", title="explained variance of the targets by V", ylim=(min(-0.1, np.min(explained, initial=0)), 1.05))
    axes[3].legend(fontsize="small")

    _, entropy = history.series("entropy")
    axes[4].plot(steps, entropy, ".-")
    axes[4].axhline(math.log(2), color="grey", ls="--", lw=1, label="uniform over 2 actions: log 2")
    axes[4].set(xlabel="environment steps", ylabel="mean entropy H(π(·|s))", title="policy entropy", ylim=(0, None))
    axes[4].legend(fontsize="small")

    ratios = history.distributions.get("ratio", [])
    if ratios:
        bins = np.linspace(0, 2.5, 60)
        axes[5].hist(np.clip(ratios[0], 0, 2.5), bins=bins, alpha=0.6, label="first update")
        axes[5].hist(np.clip(ratios[-1], 0, 2.5), bins=bins, alpha=0.6, label="last update")
        for edge in (1 - eps, 1 + eps):
            axes[5].axvline(edge, color="k", ls="--" if clips else ":", lw=1)
        axes[5].set(xlabel="ratio r after the update (clipped to 2.5 for display)", ylabel="samples", title="ratio distribution", yscale="log")
        axes[5].legend(fontsize="small")
    return {"clip_fraction": clip, "zero_grad_fraction": zero_grad, "clip_fraction_after": clip_after,
            "kl_after": kl_after, "approx_kl": k3, "approx_kl_k1": k1, "explained_variance": explained, "entropy": entropy}


def solve_comparison(groups: dict[str, Sequence], axes: Sequence[plt.Axes] | None = None) -> dict[str, list]:
    """Env steps and training seconds to solve, per group (``{algorithm: [bench.Result, ...]}``), one
    dot per seed, filled where the stopped policy also meets Gymnasium's criterion (sampled return
    over 100 episodes ≥ 475), hollow where it meets only the course's; a seed that did not solve is
    drawn as × above the solved ones; when no seed solved, the steps axis has no scale to draw and
    its one tick says "not solved".  Returns {group: steps}."""
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(11, 3.6))[1]
    solved_steps = [r.steps_to_solve for rows in groups.values() for r in rows if r.steps_to_solve is not None]
    unsolved_at = 1.15 * max(solved_steps, default=1)
    drawn = {}
    for i, (label, rows) in enumerate(groups.items()):
        jitter = np.linspace(-0.12, 0.12, len(rows))
        steps = [r.steps_to_solve for r in rows]
        drawn[label] = steps
        for x, r in zip(i + jitter, rows):
            solved = r.steps_to_solve is not None
            face = f"C{i}" if r.meets_gym_criterion else "none"
            style = {"marker": "o" if solved else "x", "color": f"C{i}", "mfc": face, "ls": "none"}
            axes[0].plot(x, r.steps_to_solve if solved else unsolved_at, **style)
            axes[1].plot(x, r.wall_s, **style)
        if all(s is not None for s in steps):
            axes[0].hlines(np.median(steps), i - 0.25, i + 0.25, color=f"C{i}", lw=2)
            axes[1].hlines(np.median([r.wall_s for r in rows]), i - 0.25, i + 0.25, color=f"C{i}", lw=2)
    # Many labels (notebook 04's ablations) are tilted, a few long ones (notebook 03's) wrapped: either would overlap.
    tilted = len(groups) > 4
    labels = list(groups) if tilted else [textwrap.fill(g, 20) for g in groups]
    for ax, label in zip(axes, ("environment steps to solve", "training seconds to solve")):
        ax.set_xticks(range(len(groups)), labels, **({"rotation": 25, "ha": "right"} if tilted else {}))
        ax.set(ylabel=label, ylim=(0, None))
    if not solved_steps:
        axes[0].set_yticks([unsolved_at], ["not solved"])
    axes[0].set_title("a dot per seed (filled: Gymnasium's criterion met too),\nbar the median; × not solved", fontsize="medium")
    axes[1].set_title("the same runs' training seconds (×: the whole run's),\nbar the median; they depend on the machine", fontsize="medium")
    return drawn


def update_stat_histogram(histories: Sequence[History], key: str, ax: plt.Axes | None = None, bound: float | None = None, label: str = "") -> np.ndarray:
    """Histogram of one per-update statistic (``key`` in ``History.updates``) over every update of
    every run, stacked by seed, with an optional vertical bound (δ for TRPO's KL, say).  Returns
    the bin edges."""
    ax = _axes(ax)
    values = [np.asarray(h.series(key)[1], dtype=float) for h in histories]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=30)
    ax.hist(values, bins=edges, stacked=True, label=[f"seed {h.seed}" for h in histories])
    if bound is not None:
        ax.axvline(bound, color="k", ls="--", lw=1, label=f"bound {bound:g}")
    ax.set(xlabel=label or key, ylabel="updates")
    ax.legend(fontsize="small")
    return edges
