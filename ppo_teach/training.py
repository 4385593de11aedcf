"""The parts of training every CartPole algorithm shares: the base config, building the
environment and networks, fitting the value function, and the loop

    collect a batch → update → log → every ``eval_every`` steps evaluate the greedy policy

which stops at the step budget, or at the solve criterion if asked, or when the learner
interrupts the kernel (the history so far is returned).  A run that was not interrupted
ends by measuring the *sampled* policy on ``final_eval_episodes`` fresh episodes, for
Gymnasium's own criterion (see ``TrainConfig``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ppo_teach.advantages import gae
from ppo_teach.config import Bounds, bounded, budget, check_env_id, check_seed, seed_everything, torch_threads, validate
from ppo_teach.envs import evaluate_policy, make_vec_env, space_sizes
from ppo_teach.errors import ConfigError, check_finite
from ppo_teach.history import History
from ppo_teach.losses import value_loss
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.rollout import Batch, Collector

STEP_BUDGET = Bounds(low=1, high=1e9, integer=True, fix="give a positive budget of environment steps.")


def budget_field(*, full: int, fast: int) -> int:
    """A ``total_steps`` field whose default is read from fast mode when the config is created."""
    return field(default_factory=lambda: budget(full=full, fast=fast), metadata={"bounds": STEP_BUDGET})


@dataclass
class TrainConfig:
    """Settings common to REINFORCE, TRPO and PPO on a Gymnasium environment.

    A batch holds ``num_envs × steps_per_env`` environment steps.  Progress is measured as in
    the course's benchmark: at the end of the first batch past every multiple of ``eval_every``
    env steps, the greedy policy plays ``eval_episodes`` episodes from fresh start states; the
    run is solved when their mean return ≥ ``solve_threshold``.

    That is the course's criterion.  Gymnasium registers CartPole-v1 with ``reward_threshold``
    475, and the Gym wiki's solve rule averages the return over 100 consecutive trials; the
    course reads a trial as an episode of the policy as it acts, sampling its actions.  Every run
    that is not interrupted reports that too: when it ends (at the solve point, with
    ``stop_when_solved``), the sampled policy plays ``final_eval_episodes`` fresh episodes.
    """

    env_id: str = "CartPole-v1"
    seed: int = 0
    num_envs: int = bounded(8, Bounds(low=1, high=256, integer=True, fix="use between 1 and 256 parallel copies, e.g. 8."))
    steps_per_env: int = bounded(500, Bounds(low=1, high=100_000, integer=True, fix="a batch needs at least one step per copy."))
    total_steps: int = budget_field(full=100_000, fast=5_000)
    gamma: float = bounded(0.99, Bounds(low=0.0, high=1.0, fix="γ is a discount factor in [0, 1]; 0.99 is usual."))
    hidden: tuple[int, ...] = (64, 64)
    orthogonal_init: bool = True  # orthogonal weights, zero biases, a near-uniform initial policy
    eval_every: int = bounded(5_000, Bounds(low=1, integer=True, fix="evaluate every few thousand steps, e.g. 5000."))
    eval_episodes: int = bounded(10, Bounds(low=1, high=1_000, integer=True, fix="use e.g. 10 evaluation episodes."))
    solve_threshold: float = bounded(475.0, Bounds(fix="CartPole-v1's threshold is 475."))
    stop_when_solved: bool = False
    final_eval_episodes: int = bounded(100, Bounds(low=0, high=10_000, integer=True, fix="Gymnasium's criterion uses 100 episodes; 0 skips it."))

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_env_id(self.env_id)
        validate(self)
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(
                f"{type(self).__name__}.hidden = {self.hidden!r} is not valid: expected a non-empty tuple of "
                "positive layer widths. Fix: e.g. hidden=(64, 64)."
            )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.steps_per_env

    @property
    def num_updates(self) -> int:
        """The number of batches, and so of updates, the budget allows: ⌈total_steps / batch_size⌉."""
        return math.ceil(self.total_steps / self.batch_size)


def build(cfg: TrainConfig) -> tuple[torch.nn.Module, ValueFunction]:
    """Seed everything, then create the policy and value networks for ``cfg.env_id``."""
    seed_everything(cfg.seed)
    probe = make_vec_env(cfg.env_id, 1, cfg.seed)
    obs_dim, n_actions = space_sizes(probe)
    probe.close()
    return (
        CategoricalPolicy(obs_dim, n_actions, cfg.hidden, orthogonal=cfg.orthogonal_init),
        ValueFunction(obs_dim, cfg.hidden, orthogonal=cfg.orthogonal_init),
    )


class Agent(ABC):
    """An algorithm as the training loop sees it: a policy that acts, a value function, and an
    update that turns one batch of experience into new parameters and returns its statistics."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.policy, self.value_fn = build(cfg)

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, float | torch.Tensor]:
        """One update from ``batch``; the statistics to record."""

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "value": self.value_fn}


def gae_and_targets(
    batch: Batch, value_fn: ValueFunction, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Â_t from GAE(λ), value targets Ĝ_t = Â_t + V(s_t), V(s_t)) for every row of the batch, shape (T, N)."""
    values, next_values = batch.values(value_fn)
    advantages = gae(batch.rewards, values, next_values, batch.terminated, batch.ends, gamma, lam)
    return advantages, advantages + values, values


def fit_value(value_fn: ValueFunction, optimizer: torch.optim.Optimizer, obs: torch.Tensor, returns: torch.Tensor, iters: int) -> float:
    """Regress V_φ onto the return targets with ``iters`` full-batch steps; the last loss."""
    for _ in range(iters):
        loss = value_loss(value_fn(obs), returns)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


Callback = Callable[[History], None]


def run(
    cfg: TrainConfig, algo: str, make_agent: Callable[[TrainConfig], Agent], progress: bool = True, callback: Callback | None = None
) -> History:
    """The training loop shared by every algorithm: ``make_agent(cfg)`` builds the networks and
    optimizers, then batches are collected and handed to ``agent.update`` until the budget ends.
    ``callback(history)``, if given, sees the history after every update (and its evaluation, if
    one was due): notebook 04's lab redraws its dashboard from it while the run trains."""
    history = History(algo=algo, seed=cfg.seed, config=dataclasses.asdict(cfg))
    # One thread for the whole run, network initialisation included: the networks are tiny, so
    # more threads only add overhead, and the same seed then gives the same curve whatever the thread setting.
    with torch_threads(1):
        agent = make_agent(cfg)
        history.models = agent.models
        env = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed)
        collector = Collector(env, agent.policy, cfg.seed)
        history.episodes = collector.episodes
        next_eval = cfg.eval_every
        bar = tqdm(total=cfg.total_steps, desc=algo, disable=not progress, leave=False)
        try:
            while collector.global_step < cfg.total_steps:
                start = time.perf_counter()
                batch = collector.collect(cfg.steps_per_env)
                stats = agent.update(batch)
                history.train_wall_s += time.perf_counter() - start
                for name, value in stats.items():
                    check_finite(name, value, update=len(history.updates) + 1, last_stats=history.last_stats())
                history.log_update(collector.global_step, stats)
                bar.update(batch.num_steps)
                if collector.global_step >= next_eval:
                    next_eval = (collector.global_step // cfg.eval_every + 1) * cfg.eval_every
                    _evaluate(cfg, agent.policy, collector.global_step, history)
                    bar.set_postfix(greedy_return=f"{history.eval_returns[-1]:.0f}")
                if callback is not None:
                    callback(history)
                if history.solved and cfg.stop_when_solved:
                    break
            if cfg.final_eval_episodes:
                history.final_sampled_return = evaluate_policy(
                    agent.policy, cfg.env_id, cfg.final_eval_episodes, evaluation_seed(cfg.seed, 0, final=True), greedy=False
                )
        except KeyboardInterrupt:
            history.interrupted = True
        finally:
            bar.close()
            env.close()
    return history


def evaluation_seed(seed: int, first_episode: int, final: bool = False) -> int:
    """The reset seed of an evaluation whose episodes are numbered from ``first_episode`` on.

    Episode i of an evaluation starts from Gymnasium's start state for seed ``evaluation_seed + i``,
    so numbering the episodes of a run consecutively gives every evaluation fresh start states,
    none shared with another evaluation, with the final sampled one, or with training (seeds
    ``seed, seed + 1, …``).  Evaluations never touch the training random stream.
    """
    return 1_000_000_000 * (2 if final else 1) + 1_000_000 * seed + first_episode


def _evaluate(cfg: TrainConfig, policy: torch.nn.Module, step: int, history: History) -> None:
    eval_seed = evaluation_seed(cfg.seed, cfg.eval_episodes * len(history.eval_steps))
    mean_return = evaluate_policy(policy, cfg.env_id, cfg.eval_episodes, eval_seed)
    history.eval_steps.append(step)
    history.eval_returns.append(mean_return)
    if not history.solved and mean_return >= cfg.solve_threshold:
        history.steps_to_solve = step
        history.wall_s_to_solve = history.train_wall_s
