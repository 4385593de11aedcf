"""The policy-gradient loss against its analytic gradient, and the other shared losses."""
import pytest
import torch
from torch.distributions import Categorical

from ppo_teach.losses import entropy_bonus, masked_mean, mean_kl, policy_gradient_loss, value_loss


def test_policy_gradient_matches_the_analytic_softmax_gradient():
    # A one-state policy π = softmax(θ).  For L = −mean_i log π(a_i)·A_i,
    #   ∂L/∂θ = −mean_i A_i · (onehot(a_i) − π).
    theta = torch.tensor([0.2, -0.5, 1.0], requires_grad=True)
    actions = torch.tensor([0, 2, 2, 1])
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    logp = Categorical(logits=theta).log_prob(actions)
    policy_gradient_loss(logp, adv).backward()
    pi = torch.softmax(theta.detach(), 0)
    analytic = -(adv[:, None] * (torch.nn.functional.one_hot(actions, 3) - pi)).mean(0)
    assert torch.allclose(theta.grad, analytic, atol=1e-6)


def test_policy_gradient_loss_does_not_differentiate_the_advantages():
    adv = torch.tensor([1.0, 2.0], requires_grad=True)
    logp = torch.tensor([-0.1, -0.2], requires_grad=True)
    policy_gradient_loss(logp, adv).backward()
    assert adv.grad is None
    assert torch.allclose(logp.grad, torch.tensor([-0.5, -1.0]))


def test_masked_mean_ignores_masked_entries():
    x = torch.tensor([[1.0, 2.0], [3.0, 1000.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert policy_gradient_loss(x, torch.ones_like(x), mask).item() == pytest.approx(-2.0)


def test_value_loss_and_entropy():
    assert value_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])).item() == pytest.approx(2.5)
    uniform = Categorical(logits=torch.zeros(2, 4))
    assert entropy_bonus(uniform.entropy()).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_mean_kl_is_exact_for_categoricals():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    exact = (p * (p / q).log()).sum()
    assert mean_kl(Categorical(probs=p), Categorical(probs=q)).item() == pytest.approx(exact.item(), rel=1e-5)
    assert mean_kl(Categorical(probs=p), Categorical(probs=p)).item() == pytest.approx(0.0, abs=1e-7)
