"""Gymnasium 1.x vector semantics: real transitions only, truncation is not termination."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo_teach.envs import evaluate_policy, make_vec_env
from ppo_teach.nets import CategoricalPolicy
from ppo_teach.rollout import Collector

gym.register("ShortCartPole-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=10)


def collect(env_id, steps=200, num_envs=4):
    env = make_vec_env(env_id, num_envs, seed=0)
    collector = Collector(env, CategoricalPolicy(4, 2), seed=0)
    return collector, collector.collect(steps)


def is_terminal(obs):
    x, theta = obs[..., 0], obs[..., 2]
    return (np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360)


def test_next_obs_is_the_following_obs_inside_an_episode():
    _, b = collect("CartPole-v1")
    inside = ~b.ends[:-1]
    assert torch.equal(b.next_obs[:-1][inside], b.obs[1:][inside])


def test_an_episode_end_stores_its_final_obs_not_the_reset_obs():
    _, b = collect("CartPole-v1")
    assert b.ends.any()
    t, i = torch.nonzero(b.ends[:-1])[0]
    final, first_of_next = b.next_obs[t, i].numpy(), b.obs[t + 1, i].numpy()
    assert is_terminal(final)  # the terminal state itself is kept for the transition
    assert np.all(np.abs(first_of_next) <= 0.05)  # the next row starts a fresh episode (reset range ±0.05)
    assert not np.allclose(final, first_of_next)


def test_every_row_is_a_real_transition():
    # SAME_STEP autoreset: no row is a NEXT_STEP dummy step with reward 0.
    _, b = collect("CartPole-v1")
    assert torch.all(b.rewards == 1.0)


def test_truncation_is_not_termination():
    collector, b = collect("ShortCartPole-v0", steps=300)
    truncated = b.ends & ~b.terminated
    assert truncated.any() and b.terminated.any()
    # A truncated episode stops at the time limit in a non-terminal state ...
    assert not is_terminal(b.next_obs[truncated].numpy()).any()
    # ... and every terminated one in a terminal state.
    assert is_terminal(b.next_obs[b.terminated].numpy()).all()
    assert max(collector.episodes.lengths) == 10


def test_episode_log_counts_every_finished_episode():
    collector, b = collect("CartPole-v1", steps=300)
    assert len(collector.episodes.returns) == int(b.ends.sum())
    assert collector.episodes.returns == [float(n) for n in collector.episodes.lengths]  # CartPole pays 1 per step
    assert collector.global_step == b.num_steps == 1200


def test_episodes_continue_across_batches():
    env = make_vec_env("CartPole-v1", 1, seed=0)
    collector = Collector(env, CategoricalPolicy(4, 2), seed=0)
    first, second = collector.collect(5), collector.collect(5)
    if not first.ends[-1, 0]:
        assert torch.equal(first.next_obs[-1, 0], second.obs[0, 0])


def test_greedy_evaluation_of_a_balancing_rule():
    class PushTowardsPole(torch.nn.Module):
        """Push the cart the way the pole leans: a simple rule that balances for a while."""

        def forward(self, obs):
            return torch.distributions.Categorical(logits=torch.stack([-obs[:, 2] - obs[:, 3], obs[:, 2] + obs[:, 3]], -1) * 100)

    assert evaluate_policy(PushTowardsPole(), "CartPole-v1", episodes=5, seed=0) > 100
    assert evaluate_policy(CategoricalPolicy(4, 2), "CartPole-v1", episodes=5, seed=0) < 100


def test_continuous_action_environments_are_refused():
    with pytest.raises(ValueError, match="Discrete"):
        make_vec_env("Pendulum-v1", 1, seed=0)
