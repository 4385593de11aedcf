"""REINFORCE's estimator against the mathematics: the dropped γ^t, and what "no baseline" means."""
import pytest
import torch

from ppo_teach import reinforce
from ppo_teach.advantages import reward_to_go
from ppo_teach.envs import make_vec_env
from ppo_teach.reinforce import ReinforceConfig
from ppo_teach.rollout import Collector

SMALL = dict(total_steps=1_000, num_envs=2, steps_per_env=250, eval_every=1_000, eval_episodes=1, final_eval_episodes=0)


def test_dropping_the_discount_weight_can_erase_the_gradient_of_the_discounted_objective():
    """Right pays 1 at step 0 and costs 1 at step 1; γ = 0.5, uniform policy (notebook 01's case)."""
    g = reinforce.discount_weight_gradients(torch.tensor([[0.0, 1.0], [0.0, -1.0]]), torch.zeros(2), gamma=0.5)
    # ∇J_γ = (1 − γ)·π_right·π_left·(−1, 1) = (−0.125, 0.125)
    assert torch.allclose(g.exact, torch.tensor([-0.125, 0.125]))
    assert torch.allclose(g.with_discount_weight, g.exact)
    assert torch.allclose(g.without_discount_weight, torch.zeros(2), atol=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_the_discount_weighted_estimator_is_the_exact_gradient_and_the_dropped_one_is_not(seed):
    gen = torch.Generator().manual_seed(seed)
    rewards, logits = torch.randn(3, 3, generator=gen), torch.randn(3, generator=gen)
    g = reinforce.discount_weight_gradients(rewards, logits, gamma=0.8)
    assert torch.allclose(g.with_discount_weight, g.exact, atol=1e-6)
    assert not torch.allclose(g.without_discount_weight, g.exact, atol=1e-3)
    # with γ = 1 there is no weight to drop: all three agree
    g1 = reinforce.discount_weight_gradients(rewards, logits, gamma=1.0)
    assert torch.allclose(g1.without_discount_weight, g1.exact, atol=1e-6)


def a_batch(seed: int = 0):
    agent = reinforce.Reinforce(ReinforceConfig(seed=seed, **SMALL))
    env = make_vec_env("CartPole-v1", 2, seed)
    batch = Collector(env, agent.policy, seed).collect(250)
    env.close()
    return agent, batch


@pytest.mark.parametrize("normalize", [True, False])
def test_without_a_baseline_the_update_weights_log_pi_by_a_positive_multiple_of_the_return(monkeypatch, normalize):
    agent, batch = a_batch()
    agent.cfg = ReinforceConfig(seed=0, baseline=False, normalize_advantages=normalize, **SMALL)
    weights = []
    loss = reinforce.policy_gradient_loss
    monkeypatch.setattr(reinforce, "policy_gradient_loss", lambda logp, adv: weights.append(adv) or loss(logp, adv))
    agent.update(batch)
    returns = reward_to_go(batch.rewards, batch.terminated, batch.ends, agent.cfg.gamma)
    scale = weights[0] / returns
    assert returns.min() > 0 and torch.allclose(scale, scale.mean()) and scale.mean() > 0
    assert weights[0].mean() > 0.5 * weights[0].std()  # not centred


def test_with_a_baseline_normalised_weights_are_centred():
    agent, batch = a_batch()
    advantages, _ = reinforce.advantages_and_returns(batch, agent.value_fn, agent.cfg)
    assert advantages.mean().abs() < 1e-5 and advantages.std() == pytest.approx(1.0, abs=1e-4)


def test_the_update_needs_no_torch_newer_than_the_declared_2_4(monkeypatch):
    """``torch.nn.utils.get_total_norm`` appeared in torch 2.6; the gradient norm comes from ``clip_grad_norm_``."""
    agent, batch = a_batch()
    monkeypatch.delattr(torch.nn.utils, "get_total_norm", raising=False)
    grads = []
    original_step = agent.policy_opt.step
    monkeypatch.setattr(agent.policy_opt, "step", lambda: grads.append([p.grad.clone() for p in agent.policy.parameters()]) or original_step())
    stats = agent.update(batch)
    assert stats["grad_norm"] == pytest.approx(float(torch.cat([g.flatten() for g in grads[0]]).norm()), rel=1e-5)


def test_bootstrapping_counts_the_rows_of_cut_off_episodes_and_the_weight_of_v():
    agent, _ = a_batch()
    cfg = ReinforceConfig(seed=0, **SMALL)
    measured = reinforce.bootstrapping(agent.policy, agent.value_fn, cfg, seed=0)
    # a near-uniform policy's episodes last ~20 steps: only the unfinished tail of each copy's 250 steps is cut off
    assert 0.0 < measured.rows < 0.25 and measured.truncations == 0 and measured.terminations > 10
    # each cut-off row's weight γ^{K+1} is in (0, 1); every other row's is 0
    assert 0.0 < measured.weight < measured.rows


def test_bootstrapping_of_episodes_that_fill_the_batch():
    """A policy that never lets the pole fall: each copy's single episode is cut off at the batch end,
    so row t has weight γ^{T−t}, and with V ≡ 1/(1−γ) (the true value) V's share of Ĝ_t is that weight."""

    class Balancing(torch.nn.Module):  # push towards the side the pole leans to
        def forward(self, obs):
            lean = obs[..., 2] + 0.5 * obs[..., 3]
            return torch.distributions.Categorical(logits=torch.stack([-50 * lean, 50 * lean], dim=-1))

    class Constant(torch.nn.Module):
        def forward(self, obs):
            return torch.full(obs.shape[:-1], 100.0)

    cfg = ReinforceConfig(seed=0, num_envs=2, steps_per_env=200, gamma=0.99)
    measured = reinforce.bootstrapping(Balancing(), Constant(), cfg, seed=0)
    expected = float((0.99 ** torch.arange(1, 201, dtype=torch.float64)).mean())
    assert measured.rows == 1.0 and measured.terminations == 0 and measured.truncations == 0
    assert measured.weight == pytest.approx(expected, rel=1e-4) and measured.value_share == pytest.approx(expected, rel=1e-4)
