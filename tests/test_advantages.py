"""Returns and advantages on hand-worked episodes."""
import pytest
import torch

from ppo_teach.advantages import discounted_cumsum, discounted_return, gae, reward_to_go, td_errors, whiten

T, F = True, False


def tensor(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def flags(*xs):
    return torch.tensor(xs, dtype=torch.bool)


def test_discounted_return_by_hand():
    # 1 + 0.5·2 + 0.25·4 = 3
    assert discounted_return(tensor(1, 2, 4), 0.5).item() == pytest.approx(3.0)
    assert discounted_return(tensor(1, 2, 4), 1.0).item() == pytest.approx(7.0)
    assert discounted_return(tensor(1, 2, 4), 0.0).item() == pytest.approx(1.0)


def test_reward_to_go_terminated_episode():
    # One episode of 3 steps that terminates: G2 = 4, G1 = 2 + 0.5·4 = 4, G0 = 1 + 0.5·4 = 3.
    rewards, done = tensor(1, 2, 4), flags(F, F, T)
    assert reward_to_go(rewards, done, done, 0.5).tolist() == pytest.approx([3.0, 4.0, 4.0])
    # Its first entry is the episode's discounted return.
    assert reward_to_go(rewards, done, done, 0.5)[0] == pytest.approx(discounted_return(rewards, 0.5))


def test_reward_to_go_stops_at_episode_boundaries():
    # Two episodes in one stream: [1, 1] terminates, then [1, 1, 1] terminates.
    rewards = tensor(1, 1, 1, 1, 1)
    done = flags(F, T, F, F, T)
    assert reward_to_go(rewards, done, done, 0.5).tolist() == pytest.approx([1.5, 1.0, 1.75, 1.5, 1.0])


def test_reward_to_go_truncated_episode_is_bootstrapped():
    # Step 1 ends by truncation (a time limit): not terminal, so the tail is V(final state) = 10.
    # G1 = 1 + 0.5·10 = 6, G0 = 1 + 0.5·6 = 4.  Step 2 starts a new episode that terminates.
    rewards = tensor(1, 1, 1)
    terminated = flags(F, F, T)
    ends = flags(F, T, T)
    next_values = tensor(99, 10, 99)  # only the truncation's bootstrap is used
    assert reward_to_go(rewards, terminated, ends, 0.5, next_values).tolist() == pytest.approx([4.0, 6.0, 1.0])
    # Without values the truncated tail counts as 0 (pure Monte Carlo).
    assert reward_to_go(rewards, terminated, ends, 0.5).tolist() == pytest.approx([1.5, 1.0, 1.0])


def test_reward_to_go_bootstraps_at_the_end_of_the_batch():
    # The batch ends mid-episode: the last row picks up γ·V(s_T) = 0.5·8.
    # G1 = 1 + 0.5·8 = 5, G0 = 1 + 0.5·5 = 3.5.
    rewards, no = tensor(1, 1), flags(F, F)
    assert reward_to_go(rewards, no, no, 0.5, tensor(99, 8)).tolist() == pytest.approx([3.5, 5.0])


def test_reward_to_go_batch_dimensions_are_independent():
    rewards = torch.stack([tensor(1, 2, 4), tensor(1, 1, 1)], dim=1)  # (T=3, N=2)
    done = torch.stack([flags(F, F, T), flags(F, T, T)], dim=1)
    out = reward_to_go(rewards, done, done, 0.5)
    assert out[:, 0].tolist() == pytest.approx([3.0, 4.0, 4.0])
    assert out[:, 1].tolist() == pytest.approx([1.5, 1.0, 1.0])


def test_discounted_cumsum_by_hand():
    assert discounted_cumsum(tensor(1, 1, 1), 0.5, flags(F, F, F)).tolist() == pytest.approx([1.75, 1.5, 1.0])


def test_gae_lambda_one_is_bootstrapped_return_minus_value():
    torch.manual_seed(1)
    rewards, values, next_values = torch.randn(12, 3), torch.randn(12, 3), torch.randn(12, 3)
    terminated = torch.rand(12, 3) < 0.15
    ends = terminated | (torch.rand(12, 3) < 0.15)
    # Inside an episode the next state's value is the next row's value.
    next_values[:-1] = torch.where(ends[:-1], next_values[:-1], values[1:])
    returns = reward_to_go(rewards, terminated, ends, 0.9, next_values)
    assert torch.allclose(gae(rewards, values, next_values, terminated, ends, 0.9, 1.0), returns - values, atol=1e-5)


def test_gae_lambda_zero_is_the_td_error():
    rewards, values, next_values = tensor(1, 2, 3), tensor(0.5, 0.1, 0.2), tensor(0.1, 0.2, 7.0)
    terminated, ends = flags(F, F, T), flags(F, F, T)
    expected = td_errors(rewards, values, next_values, terminated, 0.9)
    assert torch.allclose(gae(rewards, values, next_values, terminated, ends, 0.9, 0.0), expected)
    # The terminal step's δ ignores V(s_{t+1}).
    assert expected[2].item() == pytest.approx(3 - 0.2)


def test_whiten_has_zero_mean_unit_std_and_respects_the_mask():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, True, False])
    w = whiten(x, mask)
    assert w[:3].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert w[:3].std().item() == pytest.approx(1.0, abs=1e-4)
    assert w[3].item() == 0.0
    assert whiten(x).mean().item() == pytest.approx(0.0, abs=1e-6)


def test_whiten_with_the_statistics_of_another_tensor_and_not_with_a_mask_too():
    x, everything = torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0, 5.0, 7.0])
    assert torch.allclose(whiten(x, over=everything), (x - 4.0) / (everything.std() + 1e-8))
    assert torch.equal(whiten(x, over=x), whiten(x))
    with pytest.raises(ValueError, match="not both"):
        whiten(x, mask=torch.tensor([True, False]), over=everything)
