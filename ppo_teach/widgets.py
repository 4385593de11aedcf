"""Interactive explorers for the notebooks.

Each widget is a thin ``ipywidgets.interactive_output`` wrapper around a plain plotting
function in ``plots`` (tests call those directly).  ``interactive_output`` with the inline
matplotlib backend works in JupyterLab (ipywidgets 8) and on Colab (ipywidgets 7.7).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt

from ppo_teach import plots


def explorer(draw: Callable[..., Any], controls: dict[str, w.Widget]) -> w.VBox:
    """Controls above an output area that redraws ``draw(**values)`` whenever a control moves."""

    def redraw(**values: Any) -> None:
        draw(**values)
        plt.show()

    return w.VBox([w.HBox(list(controls.values())), w.interactive_output(redraw, controls)])


def discount_explorer() -> w.VBox:
    """A γ slider over the discount weights γ^k (notebook 00)."""
    gamma = w.FloatSlider(value=0.99, min=0.5, max=0.999, step=0.001, readout_format=".3f", description="γ")
    return explorer(lambda gamma: plots.discount_weights(gamma), {"gamma": gamma})


def trust_region_explorer(lab) -> w.VBox:
    """A δ slider over the line search TRPO would run on one batch (notebook 02); ``lab`` is a
    ``trpo.StepSizeLab``."""
    delta = w.FloatLogSlider(value=0.01, base=10, min=-4, max=1, step=0.1, readout_format=".4f", description="δ")
    return explorer(lambda max_kl: plots.line_search(lab.trpo_search(max_kl), max_kl), {"max_kl": delta})
