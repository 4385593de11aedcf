"""The PPO-update exercise (notebook 03): the learner assembles one update from the package's
pieces, judged by the network parameters it leaves behind."""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ppo_teach import advantages, losses, ppo
from ppo_teach.config import global_rng_state, set_global_rng_state, torch_threads
from ppo_teach.exercises.grading import UNFINISHED, CheckResult
from ppo_teach.rollout import Batch, collect_batch


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
    states = global_rng_state()
    try:
        with torch_threads(1), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Seems like `optimizer.step\\(\\)` has been overridden")
            yield
    finally:
        set_global_rng_state(states)


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
    batch = collect_batch(cfg.env_id, cfg.num_envs, agent.policy, cfg.seed, cfg.steps_per_env)
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
