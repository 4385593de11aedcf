"""RLHF: PPO fine-tuning of a language model against a sentiment reward (Ziegler et al., 2019; the
TRL gpt2-sentiment example), with the course's own PPO pieces.  Each iteration:

1. sample a batch of training prompts and a fixed-length response to each (pure sampling);
2. log π(a_t|s_t), log π_ref(a_t|s_t) and V(s_t) of every response token (``policy.evaluate``);
3. the per-token reward   r_t = −β·(log π(a_t|s_t) − log π_ref(a_t|s_t)) + [t = last]·score;
4. GAE(γ, λ) over the response tokens with the shared ``advantages.gae`` (the response ends after
   its last token: that next value is 0), the advantages whitened with the shared ``whiten``;
5. ``epochs`` passes over shuffled minibatches of responses minimising
   −L^CLIP + c_V·L^V_clipped − c_H·H̄ (the shared ``losses``), gradient-norm clipping, Adam
   (ε = 1e-5), the learning rate annealed linearly over the run (the shared ``optim``); a
   minibatch may be processed in ``grad_accumulation`` chunks whose gradients add up to its own;
6. β fixed, or adapted by Ziegler et al.'s proportional controller (``kl.ProportionalKLController``).

The settings live in ``lm.config``, the evaluation's measures in ``lm.metrics``, the checkpoint
format in ``lm.checkpoint``.

The same trainer runs data-parallel under Hugging Face Accelerate (``accelerate launch … -m
ppo_teach.lm.train``; alone it is one process): each process samples ``batch_size`` responses of its
own, the engine (DDP) averages the gradients, and the advantages' whitening, the logged statistics
and β's controller use the whole global batch, gathered from every process, so N processes with
``batch_size`` b behave like one process with N·b.  Every process evaluates (the same prompts, seed
and weights); only the main one shows progress and writes checkpoints.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, parse_flag_from_env
from tqdm.auto import tqdm

from ppo_teach.advantages import gae, whiten
from ppo_teach.config import global_rng_state, pick_device, seed_everything, set_global_rng_state
from ppo_teach.errors import ConfigError
from ppo_teach.kl import ProportionalKLController
from ppo_teach.lm import checkpoint
from ppo_teach.lm.config import RLHFConfig, check_bf16, preset, split_prompts
from ppo_teach.lm.grammar import fluency
from ppo_teach.lm.metrics import distinct2, positive_rate
from ppo_teach.lm.policy import Generation, evaluate, generate, load_policy, per_token_kl, reference_model
from ppo_teach.lm.rewards import load_reward
from ppo_teach.losses import approx_kl_k3, clip_fraction, clipped_surrogate, clipped_value_loss, entropy_bonus, explained_variance
from ppo_teach.optim import adam, linear_annealing

EVAL_SEED = 1_000_003  # the held-out prompts' responses are sampled with this seed at every evaluation

__all__ = ["RLHFConfig", "RLHFHistory", "RLHFTrainer", "Rollout", "preset"]


@dataclass
class Rollout:
    """One iteration's batch: the responses and, per response token [B, R], what PPO needs."""

    batch: Generation
    scores: torch.Tensor  # [B]: the reward model's score of prompt + response
    logprobs: torch.Tensor  # log π_old(a_t|s_t)
    ref_logprobs: torch.Tensor  # log π_ref(a_t|s_t)
    values: torch.Tensor  # V_old(s_t)
    rewards: torch.Tensor  # −β·(log π_old − log π_ref), plus the score at the last token
    advantages: torch.Tensor  # GAE(γ, λ), whitened over the batch
    returns: torch.Tensor  # value targets: GAE advantage (before whitening) + V_old

    @property
    def kl(self) -> torch.Tensor:
        """[B]: Σ_t (log π_old(a_t|s_t) − log π_ref(a_t|s_t)), the sampled KL of each response (k1)."""
        return (self.logprobs - self.ref_logprobs).sum(-1)


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = −β·(log π(a_t|s_t) − log π_ref(a_t|s_t)) + [t = R−1]·score  (Ziegler et al., 2019:
    R = score − β·log(π/π_ref), the log-ratio spread over the tokens as in their code and TRL's): [B], [B, R], [B, R] → [B, R]."""
    rewards = -beta * (logprobs - ref_logprobs)
    rewards[:, -1] += scores.to(rewards)
    return rewards


def response_gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """The shared ``gae`` over each response's tokens, [B, R] → [B, R]: the responses are the
    parallel streams (time-major inside), and each ends after its last token, a terminal state of
    value 0: next_values_t = V(s_{t+1}) for t < R−1 and 0 at t = R−1."""
    streams = rewards.T, values.T  # [R, B]
    next_values = torch.cat([values.T[1:], torch.zeros_like(values.T[:1])])
    last = torch.zeros_like(streams[0], dtype=torch.bool)
    last[-1] = True
    return gae(*streams, next_values, terminated=last, ends=last, gamma=gamma, lam=lam).T


@dataclass
class RLHFHistory:
    """What a run logged.  ``iterations``: one entry per PPO iteration (``RLHFTrainer.step``) with
    iteration, seconds (cumulative training seconds, evaluation excluded), score_mean, score_std,
    kl (the rollout's mean Σ_t log π/π_ref), beta (the β the iteration used), entropy, clip_fraction,
    approx_kl (k3 of π_θ from π_old), value_loss (the last four averaged over the minibatch steps,
    each measured before its step), explained_variance (of the returns by V_old), tokens_per_s
    (response tokens sampled and trained on per second).  ``evaluations``: one entry per
    ``RLHFTrainer.evaluate`` with iteration, seconds, positive_rate, kl, fluency, distinct2."""

    iterations: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    def series(self, key: str, evaluations: bool = False) -> tuple[list, list]:
        """(iterations, values of ``key``) of the iteration log, or of the evaluations."""
        log = self.evaluations if evaluations else self.iterations
        return [entry["iteration"] for entry in log], [entry[key] for entry in log]


DATA_PARALLEL = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def check_data_parallel(accelerator: Accelerator) -> None:
    """Refuse an Accelerate setting other than one process or DDP: under FSDP or DeepSpeed the policy's
    parameters are sharded, and sampling, scoring and checkpoints (done with the whole model) would be wrong.
    A launch that asked for either is refused too when Accelerate fell back to DDP (it does so on the CPU)."""
    asked = [name for name, flag in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
             if parse_flag_from_env(flag)]
    if accelerator.distributed_type not in DATA_PARALLEL or asked:
        setting = " and ".join(asked) if asked else accelerator.distributed_type.value
        raise ConfigError(
            f"accelerate is set up for {setting}, but the RLHF trainer runs in one process or "
            "data-parallel (DDP) only: sampling and checkpoints need the whole model in each process. Fix: launch with "
            "--multi_gpu (or from an `accelerate config` that chose multi-GPU), not FSDP or DeepSpeed."
        )


class RLHFTrainer:
    """The policy, its frozen reference, the reward, Adam and β, and the loop (see the module).

    ``policy`` is the model itself (for sampling, evaluation and checkpoints); ``trained`` is what
    ``Accelerator.prepare`` made of it (the same module in one process, wrapped in DDP in several),
    through which every pass that is differentiated goes."""

    def __init__(self, cfg: RLHFConfig) -> None:
        device = pick_device(cfg.device)[0]
        if cfg.bf16:
            check_bf16(device)
        seed_everything(cfg.seed)
        self.cfg = cfg
        # Under ``accelerate launch`` (WORLD_SIZE > 1) each process gets its own device from Accelerate (the
        # current CUDA device, or the CPU with gloo); alone, the run stays on ``cfg.device``'s choice.
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        # Precision is cfg.bf16's and accumulation cfg.grad_accumulation's: nothing from the launcher's settings.
        self.accelerator = Accelerator(cpu=distributed and device.type == "cpu", device_placement=False,
                                       mixed_precision="no", gradient_accumulation_steps=1)
        check_data_parallel(self.accelerator)
        where = self.accelerator.device.type if distributed else cfg.device
        self.train_prompts, self.eval_prompts = split_prompts(cfg.eval_prompts)
        self.policy, self.tokenizer = load_policy(cfg.model, where)
        self.reference = reference_model(self.policy)
        self.device = next(self.policy.parameters()).device
        self.reward = load_reward(cfg.reward, where)
        self.trained, self.optimizer = self.accelerator.prepare(self.policy, adam(self.policy.parameters(), cfg.lr, cfg.adam_eps))
        self.schedule = linear_annealing(self.optimizer, cfg.iterations, cfg.anneal_lr)
        self.controller = ProportionalKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # prompts, sampling seeds, shuffles
        self.history = RLHFHistory()
        self.iteration = 0
        self.seconds = 0.0  # training seconds so far, evaluation excluded

    @property
    def beta(self) -> float:
        return self.controller.beta

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast when ``cfg.bf16``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16)

    # -- steps 1–4 ------------------------------------------------------------------------------

    @property
    def processes(self) -> int:
        """How many processes share the training (1 unless launched by ``accelerate launch``)."""
        return self.accelerator.num_processes

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` from every process, concatenated along the first dimension (``x`` itself in one process)."""
        return self.accelerator.gather(x.contiguous())

    def sample(self) -> Generation:
        """Step 1: ``batch_size`` training prompts (drawn with replacement) and a response to each.  Every
        process draws the same global batch of prompts and sampling seeds and takes its own share."""
        b, rank = self.cfg.batch_size, self.accelerator.process_index
        picks = torch.randint(len(self.train_prompts), (self.processes * b,), generator=self.generator)
        seeds = torch.randint(2**62, (self.processes,), generator=self.generator)
        return self.generate([self.train_prompts[i] for i in picks[rank * b : (rank + 1) * b].tolist()], int(seeds[rank]))

    def generate(self, prompts: list[str], seed: int) -> Generation:
        """The policy's response to each prompt, sampled with ``seed`` at the run's length and temperature."""
        with self.autocast():
            return generate(self.policy, self.tokenizer, prompts, self.cfg.response_length, self.cfg.temperature, seed=seed)

    @torch.no_grad()
    def score(self, batch: Generation) -> Rollout:
        """Steps 2–4 for a sampled batch: log-probs, values, per-token rewards, GAE, returns."""
        scores = self.reward.score(batch.full_texts).to(self.device)
        with self.autocast():
            old, ref = evaluate(self.policy, batch), evaluate(self.reference, batch)
        logprobs, ref_logprobs, values = old.logprobs.float(), ref.logprobs.float(), old.values.float()
        rewards = token_rewards(scores, logprobs, ref_logprobs, self.beta)
        advantages = response_gae(rewards, values, self.cfg.gamma, self.cfg.lam)
        whitened = whiten(advantages, over=self.gathered(advantages))  # the global batch's mean and std
        return Rollout(batch, scores, logprobs, ref_logprobs, values, rewards, whitened, advantages + values)

    def rollout(self) -> Rollout:
        """Steps 1–4: a fresh batch, scored."""
        return self.score(self.sample())

    # -- step 5 ---------------------------------------------------------------------------------

    def loss_terms(self, rollout: Rollout, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """For the responses ``idx``: the loss −L^CLIP + c_V·L^V_clipped − c_H·H̄ under the current
        π_θ, its parts, and the ratio r_t = π_θ(a_t|s_t)/π_old(a_t|s_t) of every token."""
        cfg = self.cfg
        with self.autocast():
            new = evaluate(self.trained, rollout.batch.rows(idx))
        logp, values = new.logprobs.float(), new.values.float()
        logp_old, advantages = rollout.logprobs[idx], rollout.advantages[idx]
        objective = clipped_surrogate(logp, logp_old, advantages, cfg.clip_eps)
        v_loss = clipped_value_loss(values, rollout.values[idx], rollout.returns[idx], cfg.value_clip)
        entropy = entropy_bonus(new.entropy.float())
        return {
            "loss": -objective + cfg.vf_coef * v_loss - cfg.ent_coef * entropy,
            "value_loss": v_loss,
            "entropy": entropy,
            "approx_kl": approx_kl_k3(logp, logp_old),
            "clip_fraction": clip_fraction(logp, logp_old, cfg.clip_eps),
            "ratio": torch.exp(logp - logp_old),
        }

    def accumulate_gradients(self, rollout: Rollout, idx: torch.Tensor) -> dict[str, float]:
        """Backpropagate the loss of the responses ``idx`` in ``grad_accumulation`` equal chunks, each
        chunk's loss weighted by its share, so the summed gradient is theirs (averaged over the
        processes by the engine).  Returns their statistics, local to this process."""
        stats: dict[str, float] = {}
        chunks = idx.split(len(idx) // self.cfg.grad_accumulation)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1  # the processes average the summed gradient once, after the last chunk
            with nullcontext() if last else self.accelerator.no_sync(self.trained):
                terms = self.loss_terms(rollout, chunk)
                self.accelerator.backward(terms.pop("loss") / len(chunks))
            terms.pop("ratio")
            for key, value in terms.items():
                stats[key] = stats.get(key, 0.0) + float(value.detach()) / len(chunks)
        return stats

    def minibatch_step(self, rollout: Rollout, idx: torch.Tensor) -> dict[str, float]:
        """One Adam step on the responses ``idx`` (``accumulate_gradients``), the gradient's global
        norm clipped to ``max_grad_norm``.  Returns the minibatch's statistics, measured before the step."""
        self.optimizer.zero_grad()
        stats = self.accumulate_gradients(rollout, idx)
        self.accelerator.clip_grad_norm_(self.trained.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        return stats

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Step 5: ``epochs`` passes over shuffled minibatches; the minibatches' mean statistics,
        averaged over the processes (each holds the same number of responses)."""
        cfg = self.cfg
        sums: dict[str, float] = {}
        steps = cfg.epochs * cfg.minibatches
        for _ in range(cfg.epochs):
            for idx in torch.randperm(cfg.batch_size, generator=self.generator).split(cfg.minibatch_size):
                for key, value in self.minibatch_step(rollout, idx.to(self.device)).items():
                    sums[key] = sums.get(key, 0.0) + value / steps
        self.schedule.step()
        means = self.gathered(torch.tensor([list(sums.values())], dtype=torch.float64, device=self.device)).mean(0)
        return dict(zip(sums, means.tolist()))

    # -- one iteration, evaluation, the loop ---------------------------------------------------

    def step(self) -> dict[str, float]:
        """One PPO iteration: rollout, update, then β's adaptation (step 6); its statistics are
        appended to ``history.iterations`` and returned."""
        start = time.perf_counter()
        rollout = self.rollout()
        stats = self.update(rollout)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.iteration += 1
        scores, values, returns = (self.gathered(x) for x in (rollout.scores, rollout.values, rollout.returns))
        kl = float(self.gathered(rollout.kl).mean())
        entry = {
            "iteration": self.iteration,
            "seconds": self.seconds,
            "score_mean": float(scores.mean()),
            "score_std": float(scores.std()),
            "kl": kl,
            "beta": self.beta,
            "entropy": stats["entropy"],
            "clip_fraction": stats["clip_fraction"],
            "approx_kl": stats["approx_kl"],
            "value_loss": stats["value_loss"],
            "explained_variance": explained_variance(values, returns),
            "tokens_per_s": self.processes * rollout.logprobs.numel() / elapsed,
        }
        if self.cfg.adaptive_kl:
            self.controller.update(kl, self.processes * self.cfg.batch_size)
        self.history.iterations.append(entry)
        return entry

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """On the held-out prompts, one response each sampled with the fixed ``EVAL_SEED``: positive
        rate (``metrics.positive_rate``: VADER compound > 0.05, or a classifier's POSITIVE logit > 0),
        the exact KL Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t)) per response (mean), the grammar's fluency of
        prompt + response, and distinct-2 of the responses alone (the prompts' shared openings would
        count as repetition).  Appended to ``history.evaluations`` and returned."""
        batch = self.generate(self.eval_prompts, EVAL_SEED)
        with self.autocast():
            kl = per_token_kl(evaluate(self.policy, batch).logits.float(), evaluate(self.reference, batch).logits.float())
        full_texts = batch.full_texts
        entry = {
            "iteration": self.iteration,
            "seconds": self.seconds,
            "positive_rate": positive_rate(self.reward.score(full_texts), self.reward.positive_threshold),
            "kl": float(kl.sum(-1).mean()),
            "fluency": fluency(full_texts),
            "distinct2": distinct2(batch.texts),
        }
        self.history.evaluations.append(entry)
        return entry

    @torch.no_grad()
    def samples(self, prompts: list[str], seed: int = 0) -> list[tuple[str, float]]:
        """(prompt + response, its score) for each prompt, sampled with ``seed``: the same prompts and
        seed before and after training give the before/after table."""
        texts = self.generate(prompts, seed).full_texts
        return list(zip(texts, self.reward.score(texts).tolist()))

    def train(
        self, iterations: int | None = None, callback: Callable[[RLHFTrainer], None] | None = None, progress: bool = True
    ) -> RLHFHistory:
        """Run ``iterations`` more iterations (by default those left of ``cfg.iterations``), with an
        evaluation before the first update, every ``eval_every`` iterations and at the end, a
        checkpoint every ``checkpoint_every`` iterations, and ``callback(self)`` after each iteration
        (after the last one's evaluation, so that a live dashboard shows it), in every process (a
        callback that prints or plots should check ``accelerator.is_main_process``; one that saves must
        save in every process).  Only the main process shows the progress bar and writes the checkpoints.
        Interrupting the kernel stops it and returns the history so far (the iteration in progress
        may be partly applied: resume exactly from a checkpoint, not from an interrupted run)."""
        cfg = self.cfg
        todo = max(cfg.iterations - self.iteration, 0) if iterations is None else iterations
        if not self.history.evaluations:
            self.evaluate()
        try:
            for i in tqdm(range(todo), desc="RLHF", disable=not (progress and self.accelerator.is_main_process)):
                self.step()
                if self.iteration % cfg.eval_every == 0 or i == todo - 1:
                    self.evaluate()
                if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                    self.save(Path(cfg.checkpoint_dir) / f"iteration-{self.iteration:05d}")
                if callback is not None:
                    callback(self)
        except KeyboardInterrupt:
            return self.history
        if self.history.evaluations[-1]["iteration"] != self.iteration:
            self.evaluate()
        return self.history

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, path: Path | str) -> None:
        """A checkpoint folder (``checkpoint``): the policy's weights, and the optimizer, schedule, β,
        iteration, training seconds, history, config, number of processes and every random generator's
        state.  Every process must call it: the main process alone writes, and every process waits until
        the checkpoint is complete."""
        state = {
            "config": dataclasses.asdict(self.cfg),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "beta": self.beta,
            "iteration": self.iteration,
            "seconds": self.seconds,
            "history": dataclasses.asdict(self.history),
            "processes": self.processes,
            "rng": {"trainer": self.generator.get_state(), **global_rng_state()},
        }
        if self.accelerator.is_main_process:
            checkpoint.write(path, self.policy, state)
        self.accelerator.wait_for_everyone()

    @classmethod
    def resume(cls, path: Path | str) -> RLHFTrainer:
        """A trainer that continues exactly where the one that saved ``path`` stopped."""
        state = checkpoint.read_state(path)
        trainer = cls(RLHFConfig(**state["config"]))
        saved = state.get("processes", 1)
        if saved != trainer.processes:
            raise ConfigError(
                f"the checkpoint {str(path)!r} was written by a run of {saved} process(es), and this run has {trainer.processes}: "
                f"its global batch ({saved} × batch_size), β's controller and its random streams would change, and it "
                f"would not continue exactly. Fix: resume with {saved} process(es) (accelerate launch --num_processes {saved})."
            )
        checkpoint.read_weights(path, trainer.policy)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.schedule.load_state_dict(state["schedule"])
        trainer.controller.beta = state["beta"]
        trainer.iteration, trainer.seconds = state["iteration"], state["seconds"]
        trainer.history = RLHFHistory(**state["history"])
        trainer.generator.set_state(state["rng"]["trainer"])
        set_global_rng_state(state["rng"])
        return trainer
