"""Bad input gets a clear error: field, value, accepted range, fix."""
import math

import pytest
import torch

from ppo_teach import config
from ppo_teach.bench import parse_seeds
from ppo_teach.errors import ConfigError
from ppo_teach.reinforce import ReinforceConfig


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("lr", -1e-3, ["ReinforceConfig.lr", "-0.001", "0 < lr ≤ 1", "Fix"]),
        ("lr", 0.0, ["0 < lr ≤ 1"]),
        ("lr", math.nan, ["lr = nan"]),
        ("gamma", 1.5, ["gamma = 1.5", "0 ≤ gamma ≤ 1"]),
        ("total_steps", 0, ["total_steps = 0", "1 ≤ total_steps"]),
        ("num_envs", 2.5, ["an integer"]),
        ("num_envs", 0, ["1 ≤ num_envs ≤ 256"]),
        ("value_iters", 0, ["value_iters"]),
        ("steps_per_env", True, ["steps_per_env = True"]),
        ("lr", "fast", ["lr = 'fast'"]),
    ],
)
def test_out_of_range_values_name_field_value_range_and_fix(field, value, words):
    with pytest.raises(ConfigError) as err:
        ReinforceConfig(**{field: value})
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_bad_seeds(seed):
    with pytest.raises(ConfigError, match="seed"):
        ReinforceConfig(seed=seed)


def test_unknown_environment_suggests_the_nearest():
    with pytest.raises(ConfigError, match="'CartPole-v1'") as err:
        ReinforceConfig(env_id="CartPole-v7")
    assert "not a registered Gymnasium environment" in str(err.value)


def test_bad_hidden_sizes():
    with pytest.raises(ConfigError, match="hidden"):
        ReinforceConfig(hidden=(64, 0))


def test_valid_config_passes():
    cfg = ReinforceConfig(lr=1.0, gamma=1.0, num_envs=1)
    assert cfg.batch_size == cfg.steps_per_env


def test_fast_mode_and_budget(monkeypatch):
    monkeypatch.setenv("PPO_TEACH_FAST", "1")
    assert config.fast_mode() and config.budget(full=100, fast=3) == 3
    assert ReinforceConfig().total_steps == 8_000
    monkeypatch.setenv("PPO_TEACH_FAST", "0")
    assert not config.fast_mode() and config.budget(full=100, fast=3) == 100
    assert ReinforceConfig().total_steps == 200_000


def test_seed_everything_repeats_torch_draws():
    config.seed_everything(3)
    a = torch.rand(3)
    config.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_pick_device():
    device, why = config.pick_device()
    assert device.type in {"cpu", "cuda", "mps"} and why
    assert config.pick_device("cpu")[0].type == "cpu"
    with pytest.raises(ConfigError, match="Accepted"):
        config.pick_device("tpu")


def test_bench_seed_parsing():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-1,9") == [0, 1, 9]
    for bad in ("a-b", "4-2", ""):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
