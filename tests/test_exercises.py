"""The exercise checkers accept right answers and say precisely what is wrong with wrong ones."""
import torch

from ppo_teach import exercises


def right_reward_to_go(rewards, gamma):
    out, running = torch.zeros_like(rewards), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def test_reward_to_go_checker_accepts_a_right_answer():
    result = exercises.check_reward_to_go(right_reward_to_go)
    assert result.passed and "all 25 cases" in result.message


def test_a_list_is_accepted_as_well_as_a_tensor():
    assert exercises.check_reward_to_go(lambda rewards, gamma: right_reward_to_go(rewards, gamma).tolist())


def test_missing_discount_is_named():
    result = exercises.check_reward_to_go(lambda rewards, gamma: rewards.flip(0).cumsum(0).flip(0))
    assert not result.passed
    assert "case 1 of 25" in result.message and "gamma=0.5" in result.message
    assert "first difference at entry [0]: expected 1.75, got 3" in result.message
    assert "γ left out" in result.message


def test_forward_sum_is_named():
    def forward(rewards, gamma):
        out, running = torch.zeros_like(rewards), 0.0
        for t in range(len(rewards)):
            running = rewards[t] + gamma * running
            out[t] = running
        return out

    result = exercises.check_reward_to_go(forward)
    assert not result.passed and "forward sum" in result.message


def test_whole_return_at_every_step_is_named():
    from ppo_teach.advantages import discounted_return

    result = exercises.check_reward_to_go(lambda rewards, gamma: discounted_return(rewards, gamma).expand_as(rewards))
    assert not result.passed and "whole episode's return" in result.message


def test_wrong_shape_is_reported():
    result = exercises.check_reward_to_go(lambda rewards, gamma: rewards.sum())
    assert not result.passed and "expected shape (3,), got shape ()" in result.message


def test_unfinished_and_crashing_answers_are_reported_without_raising():
    def todo(rewards, gamma):
        raise NotImplementedError

    assert "NotImplementedError" in exercises.check_reward_to_go(todo).message
    crash = exercises.check_reward_to_go(lambda rewards, gamma: rewards[10])
    assert not crash.passed and "raised IndexError" in crash.message


def test_an_answer_that_edits_its_input_in_place_is_still_graded_fairly():
    def in_place(rewards, gamma):
        for t in reversed(range(len(rewards) - 1)):
            rewards[t] += gamma * rewards[t + 1]
        return rewards

    assert exercises.check_reward_to_go(in_place).passed


def test_discounted_return_checker():
    assert exercises.check_discounted_return(lambda rewards, gamma: sum(r * gamma**t for t, r in enumerate(rewards)))
    undiscounted = exercises.check_discounted_return(lambda rewards, gamma: rewards.sum())
    assert not undiscounted.passed and "undiscounted sum" in undiscounted.message


def test_results_render_in_a_notebook_and_solutions_show_source():
    result = exercises.check_reward_to_go(right_reward_to_go)
    assert "correct" in result._repr_html_() and "correct" in repr(result)
    assert "def reward_to_go" in exercises.solution("reward_to_go").code


def test_clipped_surrogate_checker_names_the_circulating_mistakes():
    from ppo_teach.losses import clipped_surrogate

    assert exercises.check_clipped_surrogate(clipped_surrogate)

    def no_min(logp, logp_old, advantages, eps):
        return (torch.exp(logp - logp_old).clamp(1 - eps, 1 + eps) * advantages).mean()

    def unclipped(logp, logp_old, advantages, eps):
        return (torch.exp(logp - logp_old) * advantages).mean()

    assert "without the min" in exercises.check_clipped_surrogate(no_min).message
    assert "no clipping at all" in exercises.check_clipped_surrogate(unclipped).message


def test_approx_kl_checker():
    from ppo_teach.losses import approx_kl_k1, approx_kl_k3

    assert exercises.check_approx_kl_k3(approx_kl_k3)
    assert "k1" in exercises.check_approx_kl_k3(approx_kl_k1).message
