"""Small MLP networks: a categorical actor π_θ(a|s) and a critic V_φ(s)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh, out_gain: float = 1.0, orthogonal: bool = True) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last).

    With ``orthogonal=True`` the weights get orthogonal initialisation (gain √2 for hidden
    layers, ``out_gain`` for the output layer) and the biases zero: the initialisation used by
    the reference PPO implementation.  A small ``out_gain`` on a policy's output layer makes
    the initial policy close to uniform.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        if orthogonal:
            nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class CategoricalPolicy(nn.Module):
    """π_θ(a|s) = softmax(f_θ(s))_a over a discrete set of actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64), orthogonal: bool = True):
        super().__init__()
        self.logits_net = mlp([obs_dim, *hidden, n_actions], out_gain=0.01, orthogonal=orthogonal)

    def forward(self, obs: torch.Tensor) -> Categorical:
        # validate_args=False: the logits come from our own network; skipping the checks
        # saves a noticeable share of each environment step.
        return Categorical(logits=self.logits_net(obs), validate_args=False)


class ValueFunction(nn.Module):
    """V_φ(s): a scalar estimate of the expected return from state s."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64), orthogonal: bool = True):
        super().__init__()
        self.v_net = mlp([obs_dim, *hidden, 1], out_gain=1.0, orthogonal=orthogonal)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v_net(obs).squeeze(-1)
