"""RLHF checkpoints: a folder with the policy's weights (LM and value head) as safetensors and a
``state.pt`` of plain types and tensors only, read back with ``torch.load(weights_only=True)``.

The random generators' states (torch's, Python's, NumPy's) are stored as tensors and plain types,
so that a resumed run draws exactly what the uninterrupted one would have drawn."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

WEIGHTS = "policy.safetensors"
STATE = "state.pt"


def write(folder: Path | str, policy: torch.nn.Module, state: dict[str, Any]) -> None:
    """The policy's weights (tied ones once) and ``state`` into ``folder``, created if needed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(policy, str(folder / WEIGHTS))
    torch.save(state, folder / STATE)


def read_state(folder: Path | str) -> dict[str, Any]:
    """The ``state`` a checkpoint folder holds, loaded safely (``weights_only=True``) onto the CPU: the
    optimizer's ``load_state_dict`` moves its tensors to each parameter's device."""
    return torch.load(Path(folder) / STATE, map_location="cpu", weights_only=True)


def read_weights(folder: Path | str, policy: torch.nn.Module) -> None:
    """The checkpoint's weights, into ``policy`` (on its device)."""
    load_model(policy, str(Path(folder) / WEIGHTS), device=str(next(policy.parameters()).device))
