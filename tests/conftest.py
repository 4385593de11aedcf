import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    """Tiny networks: one thread is fastest; a fixed seed makes every test repeat exactly."""
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def full_mode(monkeypatch):
    """Run a test with the full-mode budgets even when `make test` sets PPO_TEACH_FAST=1."""
    monkeypatch.delenv("PPO_TEACH_FAST", raising=False)


@pytest.fixture(scope="module")
def loaded():
    """The embedded tiny GPT-2 and its tokenizer, on the CPU: one load per test module."""
    from ppo_teach.lm import TINY_GPT2
    from ppo_teach.lm.policy import load_policy

    return load_policy(TINY_GPT2, device="cpu")
