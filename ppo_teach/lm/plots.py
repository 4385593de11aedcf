"""Plots of notebooks 05–06: the next-token distribution at a temperature, the per-token KL beside
its estimates, the tiny model's pretraining loss, an RLHF run's dashboard and reward against KL.
Each draws on a given Axes (or a new figure) and returns the numbers it drew, so tests can check a
plot's content without looking at pixels."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ppo_teach.lm.policy import PerTokenKL, PolicyWithValueHead, generate, next_token_probs
from ppo_teach.plots import _axes

if TYPE_CHECKING:  # only the type: plotting a history needs nothing of the trainer
    from ppo_teach.lm.rlhf import RLHFHistory


def next_token_distribution(
    policy: PolicyWithValueHead,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    temperature: float,
    k: int = 12,
    ax: plt.Axes | None = None,
) -> dict[str, object]:
    """The ``k`` most likely next tokens after ``prompt`` under softmax(logits / temperature) and, in
    grey, the mass of all the others together; the distribution's entropy H = −Σ_v π(v) log π(v)
    (over the whole vocabulary) in the title."""
    probs = next_token_probs(policy, tokenizer, [prompt], temperature)[0].cpu()
    top = probs.topk(k)
    tokens = [repr(tokenizer.decode([int(i)])) for i in top.indices]
    others = float(1 - top.values.sum())
    entropy = float(torch.special.entr(probs).sum())  # −Σ p log p, with 0·log 0 = 0
    ax = _axes(ax, figsize=(7, 3.4))
    ax.bar(range(k), top.values.numpy(), color="C0")
    ax.bar(k, others, color="grey")
    ax.set_xticks(range(k + 1), [*tokens, f"the other {len(probs) - k}"], rotation=45, ha="right", fontsize="small")
    ax.set(ylim=(0, 1), ylabel="π(next token | prompt)",
           title=f"after {prompt!r} at temperature {temperature:g}: entropy {entropy:.2f} nats")
    return {"tokens": tokens, "probs": top.values.numpy(), "others": others, "entropy": entropy}


def temperature_view(
    policy: PolicyWithValueHead,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    temperature: float,
    draw: int = 0,
    n_samples: int = 4,
    response_length: int = 12,
) -> dict[str, object]:
    """What the temperature widget shows: the next-token distribution, then ``n_samples`` responses
    sampled at the same temperature (draw ``draw`` is the sampling seed: a new draw, new samples)."""
    drawn = next_token_distribution(policy, tokenizer, prompt, temperature)
    samples = generate(policy, tokenizer, [prompt] * n_samples, response_length, temperature, seed=draw).texts
    plt.tight_layout()
    plt.show()
    for text in samples:
        print(f"{prompt} ▸{text}")
    return {**drawn, "samples": samples}


def kl_by_position(kl: PerTokenKL, ax: plt.Axes | None = None) -> dict[str, np.ndarray]:
    """At each response position t, the batch mean of the exact per-token KL(π_θ ‖ π_ref) and of its k1
    and k3 estimates from the sampled tokens, with bars of ±2 standard errors of those means.  The
    exact KL's comes from its spread over the batch; an estimator's from the law of total variance,
    Var(k_t) = Var(KL_t) + E[Var(k_t | s_t)], with the exact per-token variances (a heavy-tailed
    estimator's sample spread would understate it)."""
    ax = _axes(ax, figsize=(7, 3.4))
    exact = _numpy(kl.exact)
    batch = len(exact)
    drawn = {}
    for offset, (name, label) in zip((-0.2, 0.0, 0.2), (
        ("exact", "exact Σ_v π log(π/π_ref)"),
        ("k1", "k1 = log π(a) − log π_ref(a)"),
        ("k3", "k3 = (ρ − 1) − log ρ, ρ = π_ref(a)/π(a)"),
    )):
        variance = exact.var(0, ddof=1) + (0 if name == "exact" else (_numpy(getattr(kl, f"{name}_std")) ** 2).mean(0))
        mean = _numpy(getattr(kl, name)).mean(0)
        ax.errorbar(np.arange(len(mean)) + offset, mean, yerr=2 * np.sqrt(variance / batch), fmt="o", ms=4, capsize=2, label=label)
        drawn[name] = mean
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="response position t", ylabel="KL per token (nats)", title="per-token KL to the reference: exact and estimated")
    ax.legend(fontsize="small")
    return drawn


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def pretraining_loss(log: dict, ax: plt.Axes | None = None) -> np.ndarray:
    """The tiny GPT-2's next-token cross-entropy during pretraining, as its build logged it."""
    steps = np.array([point["step"] for point in log["loss_curve"]])
    losses = np.array([point["loss"] for point in log["loss_curve"]])
    ax = _axes(ax)
    ax.plot(steps, losses)
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats per token)", title="pretraining the embedded tiny GPT-2")
    return losses


def rlhf_dashboard(history: RLHFHistory, axes: Sequence[plt.Axes] | None = None) -> dict[str, np.ndarray]:
    """Four panels of an RLHF run against PPO iterations: the reward (mean score of the batch, ±1
    std), the KL to the reference per response with β on a second axis, the clip fraction and the
    approximate KL of the updates, and the held-out evaluations (positive rate, fluency)."""
    if axes is None:
        axes = plt.subplots(1, 4, figsize=(16, 3.4))[1]
    reward_ax, kl_ax, update_ax, eval_ax = axes
    its, score = history.series("score_mean")
    spread = np.asarray(history.series("score_std")[1])
    reward_ax.plot(its, score, color="C0")
    reward_ax.fill_between(its, np.asarray(score) - spread, np.asarray(score) + spread, color="C0", alpha=0.2)
    reward_ax.set(xlabel="iteration", ylabel="score", title="reward (batch mean ± std)")
    kl_ax.plot(*history.series("kl"), color="C1", label="sampled, training batch")
    kl_ax.plot(*history.series("kl", evaluations=True), "o", color="C3", ms=4, label="exact, held out")
    kl_ax.set(xlabel="iteration", ylabel="KL per response (nats)", title="KL to the reference, and β (dashed)")
    kl_ax.legend(fontsize="small", loc="upper left")
    beta_ax = kl_ax.twinx()
    beta_ax.plot(*history.series("beta"), color="C2", ls="--")
    beta_ax.set_ylim(bottom=0, top=1.5 * (max(history.series("beta")[1], default=0) or 1))  # β = 0 throughout: an axis to 1.5
    beta_ax.set_ylabel("β", color="C2")
    update_ax.plot(*history.series("clip_fraction"), label="clip fraction")
    update_ax.plot(*history.series("approx_kl"), label="approx. KL per token (update)")
    update_ax.set(xlabel="iteration", title="the PPO updates")
    update_ax.legend(fontsize="small")
    for key in ("positive_rate", "fluency"):
        eval_ax.plot(*history.series(key, evaluations=True), marker="o", label=key.replace("_", " "))
    eval_ax.set(xlabel="iteration", xlim=kl_ax.get_xlim(), ylim=(0, 1.05), title="held-out evaluation")  # the KL panel's iterations
    eval_ax.legend(fontsize="small")
    return {"score": np.asarray(score), "kl": np.asarray(history.series("kl")[1])}


def reward_vs_kl(runs: dict[str, RLHFHistory], ax: plt.Axes | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One curve per run (labelled, e.g. by its β): the held-out positive rate against the KL to the
    reference per response, evaluation by evaluation.  How much reward each nat of KL bought."""
    ax = _axes(ax, figsize=(6.4, 4))
    drawn = {}
    for label, history in runs.items():
        kl = np.asarray(history.series("kl", evaluations=True)[1])
        positive = np.asarray(history.series("positive_rate", evaluations=True)[1])
        ax.plot(kl, positive, marker="o", ms=3, label=label)
        drawn[label] = (kl, positive)
    ax.set_xscale("symlog", linthresh=1.0)  # β = 0 runs reach KLs a hundred times the others'
    ax.set(xlabel="KL to the reference per response (nats, log scale above 1)", ylabel="positive rate (held out)", ylim=(0, 1.05),
           title="reward against KL, one curve per run")
    ax.legend(fontsize="small")
    return drawn
