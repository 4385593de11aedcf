"""The adaptive KL penalty coefficient of PPO's second variant (Schulman et al., 2017, §4).

The objective is L^KLPEN(θ) = mean_t[ r_t(θ)·Â_t ] − β · KL̄(π_old ‖ π_θ).  After each
update the measured KL d is compared with a target d_targ:

    d < d_targ / 1.5  →  β ← β / 2      (the policy moved too little: penalise less)
    d > d_targ · 1.5  →  β ← β · 2      (it moved too much: penalise more)

This adapts the *penalty coefficient* β.  The learning rate is untouched: calling this
variant "an adaptive learning rate" is a common mistake.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AdaptiveKLCoefficient:
    beta: float = 1.0
    target: float = 0.01

    def update(self, measured_kl: float) -> float:
        """Adapt β to the KL the last update reached; returns the new β."""
        if measured_kl < self.target / 1.5:
            self.beta /= 2.0
        elif measured_kl > self.target * 1.5:
            self.beta *= 2.0
        return self.beta
