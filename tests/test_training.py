"""The shared training loop: fresh evaluation start states, and Gymnasium's criterion reported."""
import numpy as np
import pytest

from ppo_teach import ppo, reinforce, training, trpo
from ppo_teach.envs import make_vec_env
from ppo_teach.history import History, smoke_test_note
from ppo_teach.reinforce import ReinforceConfig

SMALL = dict(total_steps=4_000, num_envs=2, steps_per_env=250, eval_every=500, eval_episodes=10)


def start_states(seed: int, episodes: int) -> np.ndarray:
    env = make_vec_env("CartPole-v1", episodes, seed)
    obs, _ = env.reset(seed=seed)
    env.close()
    return obs


def test_every_evaluation_starts_from_fresh_states(monkeypatch):
    calls = []
    real = training.evaluate_policy

    def spy(policy, env_id, episodes, seed, greedy=True):
        calls.append((seed, episodes, greedy))
        return real(policy, env_id, episodes, seed, greedy)

    monkeypatch.setattr(training, "evaluate_policy", spy)
    h = reinforce.train(ReinforceConfig(seed=0, **SMALL), progress=False)
    greedy = [(s, n) for s, n, g in calls if g]
    assert len(greedy) == len(h.eval_steps) == 8
    states = np.concatenate([start_states(s, n) for s, n in greedy] + [start_states(0, 8)])  # + training's own starts
    assert len(np.unique(states, axis=0)) == len(states), "two episodes started from the same state"
    sampled = [(s, n) for s, n, g in calls if not g]
    assert sampled == [(training.evaluation_seed(0, 0, final=True), 100)]
    assert not set(range(sampled[0][0], sampled[0][0] + 100)) & {s + i for s, n in greedy for i in range(n)}


def test_a_run_reports_gymnasiums_criterion_from_the_sampled_policy():
    h = reinforce.train(ReinforceConfig(seed=0, final_eval_episodes=20, **SMALL), progress=False)
    assert h.final_sampled_return is not None and 8 < h.final_sampled_return < 500
    assert reinforce.train(ReinforceConfig(seed=0, final_eval_episodes=0, **SMALL), progress=False).final_sampled_return is None


@pytest.mark.parametrize(
    "module, config", [(reinforce, ReinforceConfig), (trpo, trpo.TRPOConfig), (ppo, ppo.PPOConfig)], ids=["reinforce", "trpo", "ppo"]
)
def test_every_algorithm_calls_back_after_each_update_with_the_growing_history(module, config):
    """The hook notebook 04's lab redraws its dashboard from while a run trains, shared by all three."""
    seen = []
    history = module.train(config(num_envs=2, steps_per_env=100, total_steps=600, final_eval_episodes=0, eval_every=400),
                           progress=False, callback=lambda h: seen.append((len(h.updates), len(h.eval_steps))))
    assert seen == [(1, 0), (2, 1), (3, 1)] and len(history.updates) == 3


def test_a_history_knows_its_steps_and_says_what_a_fast_run_amounts_to():
    history = History(algo="ppo", seed=0, config={})
    assert history.steps == 0
    history.log_update(2_000, {"loss": 0.5})
    history.eval_steps, history.eval_returns = [2_000], [40.0]
    assert history.steps == 2_000
    assert smoke_test_note([history], "See below.") == "fast mode: 2,000 steps per seed, 1 greedy evaluation(s): a smoke test. See below."
