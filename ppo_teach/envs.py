"""Gymnasium vector environments, and greedy evaluation of a policy.

Gymnasium 1.x has three autoreset modes.  The default, NEXT_STEP, resets a finished
sub-environment on the *following* call to ``step``: that call ignores its action and
returns the first observation of the new episode with reward 0, a step that does not
belong in the training data.  We use SAME_STEP instead: the step that ends an episode
returns the first observation of the next one, and the true final observation in
``info["final_obs"]``.  Every row the rollout stores is then a real transition, and a
truncated episode can be bootstrapped from the value of its true final observation.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from ppo_teach.config import check_env_id
from ppo_teach.errors import ConfigError


def make_vec_env(env_id: str, num_envs: int, seed: int) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` stepped together, with SAME_STEP autoreset.

    ``seed`` seeds the action space; the caller resets the environment with its own seed.
    """
    check_env_id(env_id)
    env = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, disable_env_checker=True) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        env.close()
        raise ConfigError(
            f"env_id = {env_id!r} has a {type(env.single_action_space).__name__} action space; the course's "
            "categorical policies need a Discrete one. Fix: use e.g. 'CartPole-v1' or 'Acrobot-v1'."
        )
    env.action_space.seed(seed)
    return env


def space_sizes(env: gym.vector.VectorEnv) -> tuple[int, int]:
    """(observation size, number of actions) of a vector environment with a Discrete action space."""
    return int(np.prod(env.single_observation_space.shape)), int(env.single_action_space.n)


@torch.no_grad()
def evaluate_policy(policy: torch.nn.Module, env_id: str, episodes: int, seed: int, greedy: bool = True) -> float:
    """Mean undiscounted return over ``episodes`` episodes, acting greedily, a = argmax π(a|s),
    or (``greedy=False``) sampling a ~ π(·|s).

    The greedy policy is used only to *measure* progress (the solve criterion); training
    always samples actions from π.
    """
    env = make_vec_env(env_id, episodes, seed)  # one episode per copy; later episodes are not counted
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        dist = policy(torch.as_tensor(obs, dtype=torch.float32))
        actions = (dist.probs.argmax(-1) if greedy else dist.sample()).numpy()
        obs, reward, terminated, truncated, _ = env.step(actions)
        returns += reward * running
        running &= ~(terminated | truncated)
    env.close()
    return float(returns.mean())
