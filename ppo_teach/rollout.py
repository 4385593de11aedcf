"""Collecting experience from a vector environment with the current policy.

A ``Batch`` is time-major, shape ``(T, N, ...)`` for T steps of N environment copies.
Every row is a real transition (s_t, a_t, r_t, s_{t+1}); ``next_obs`` holds the true
s_{t+1}, which at an episode end is the final observation of that episode, not the
first observation of the next (see ``envs``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import gymnasium as gym
import numpy as np
import torch

from ppo_teach.envs import make_vec_env, space_sizes


@dataclass
class Batch:
    obs: torch.Tensor  # (T, N, obs_dim) float32, s_t
    actions: torch.Tensor  # (T, N) int64, a_t ~ π_old(·|s_t)
    logp: torch.Tensor  # (T, N) float32, log π_old(a_t|s_t) at collection time
    rewards: torch.Tensor  # (T, N) float32, r_t
    terminated: torch.Tensor  # (T, N) bool, s_{t+1} is terminal
    ends: torch.Tensor  # (T, N) bool, the episode ends after step t (terminated or truncated)
    next_obs: torch.Tensor  # (T, N, obs_dim) float32, the true s_{t+1}

    @property
    def num_steps(self) -> int:
        """Number of environment steps in the batch, T·N."""
        return self.rewards.numel()

    def first(self, steps: int) -> Batch:
        """The batch's first ``steps`` rows (time steps) of every field."""
        return Batch(*(getattr(self, f.name)[:steps] for f in fields(self)))

    @torch.no_grad()
    def values(self, value_fn: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(V(s_t), V(s_{t+1})) for every row, each of shape (T, N)."""
        return value_fn(self.obs), value_fn(self.next_obs)


@dataclass
class EpisodeLog:
    """Undiscounted return and length of each finished training episode, with the global
    step count at which it finished."""

    steps: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


class Collector:
    """Steps a vector environment with a policy and hands out fixed-size batches.

    It keeps the current observation between batches, so an episode that a batch cuts
    off goes on in the next batch.
    """

    def __init__(self, env: gym.vector.VectorEnv, policy: torch.nn.Module, seed: int):
        self.env, self.policy = env, policy
        self.obs_dim, _ = space_sizes(env)
        self.obs, _ = env.reset(seed=seed)
        self.global_step = 0
        self.episodes = EpisodeLog()
        self._ep_return = np.zeros(env.num_envs)
        self._ep_length = np.zeros(env.num_envs, dtype=np.int64)

    @torch.no_grad()
    def collect(self, steps_per_env: int) -> Batch:
        """Run ``steps_per_env`` steps in every copy, sampling a_t ~ π(·|s_t)."""
        T, N = steps_per_env, self.env.num_envs
        obs = np.zeros((T, N, self.obs_dim), dtype=np.float32)
        next_obs = np.zeros_like(obs)
        actions = np.zeros((T, N), dtype=np.int64)
        logp = np.zeros((T, N), dtype=np.float32)
        rewards = np.zeros((T, N), dtype=np.float32)
        terminated = np.zeros((T, N), dtype=bool)
        truncated = np.zeros((T, N), dtype=bool)
        for t in range(T):
            obs[t] = self.obs
            dist = self.policy(torch.from_numpy(obs[t]))
            action = dist.sample()
            logp[t] = dist.log_prob(action).numpy()
            actions[t] = action.numpy()
            self.obs, rewards[t], terminated[t], truncated[t], info = self.env.step(actions[t])
            next_obs[t] = self.obs
            done = terminated[t] | truncated[t]
            if done.any():
                next_obs[t, done] = np.stack(info["final_obs"][done])
            self._track_episodes(rewards[t], done)
        return Batch(
            obs=torch.from_numpy(obs),
            actions=torch.from_numpy(actions),
            logp=torch.from_numpy(logp),
            rewards=torch.from_numpy(rewards),
            terminated=torch.from_numpy(terminated),
            ends=torch.from_numpy(terminated | truncated),
            next_obs=torch.from_numpy(next_obs),
        )

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        self.global_step += self.env.num_envs
        self._ep_return += reward
        self._ep_length += 1
        for i in np.flatnonzero(done):
            self.episodes.steps.append(self.global_step)
            self.episodes.returns.append(float(self._ep_return[i]))
            self.episodes.lengths.append(int(self._ep_length[i]))
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0


def collect_batch(env_id: str, num_envs: int, policy: torch.nn.Module, seed: int, steps_per_env: int) -> Batch:
    """One batch of ``steps_per_env`` steps in each of ``num_envs`` fresh copies of ``env_id`` reset with
    ``seed``, acting with ``policy``; the environments are closed afterwards."""
    env = make_vec_env(env_id, num_envs, seed)
    batch = Collector(env, policy, seed).collect(steps_per_env)
    env.close()
    return batch


def record_episode(env: gym.vector.VectorEnv, policy: torch.nn.Module, seed: int, max_steps: int = 1_000) -> Batch:
    """The first complete episode of a single-copy vector environment, as a batch of shape (T, 1)."""
    if env.num_envs != 1:
        raise ValueError(f"record_episode needs a single-copy environment, got num_envs = {env.num_envs}.")
    batch = Collector(env, policy, seed).collect(max_steps)
    ends = torch.nonzero(batch.ends[:, 0])
    if len(ends) == 0:
        raise ValueError(f"no episode ended within {max_steps} steps. Fix: raise max_steps.")
    return batch.first(int(ends[0]) + 1)
