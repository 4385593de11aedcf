"""Interactive explorers for the notebooks.

Each widget is a thin ``ipywidgets.interactive_output`` wrapper around a plain plotting
function in ``plots`` (tests call those directly).  ``interactive_output`` with the inline
matplotlib backend works in JupyterLab (ipywidgets 8) and on Colab (ipywidgets 7.7).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import clear_output, display

from ppo_teach import plots, ppo
from ppo_teach.errors import ConfigError
from ppo_teach.history import History
from ppo_teach.rollout import Batch


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


def clip_explorer() -> w.VBox:
    """An ε slider and the sign of Â over L^CLIP(r) (notebook 03)."""
    eps = w.FloatSlider(value=0.2, min=0.05, max=0.8, step=0.05, description="ε")
    sign = w.ToggleButtons(options=[("Â > 0", 1.0), ("Â < 0", -1.0)], value=1.0, description="advantage")
    return explorer(lambda eps, advantage: plots.clip_objective(eps, advantage), {"eps": eps, "advantage": sign})


def gae_explorer(episode: Batch, value_fn: Any, gamma: float) -> w.VBox:
    """A λ slider over GAE(λ) on one recorded episode (notebook 03)."""
    lam = w.FloatSlider(value=0.95, min=0.0, max=1.0, step=0.01, description="λ")
    return explorer(lambda lam: plots.gae_lambda(episode, value_fn, gamma, lam), {"lam": lam})


@contextmanager
def disabled(controls: Sequence[w.Widget]) -> Iterator[None]:
    """Disable ``controls`` for the duration of the block (a run that trains), then give each back the
    state it had, even if the block raises: a control that was disabled before stays disabled."""
    before = [c.disabled for c in controls]
    for c in controls:
        c.disabled = True
    try:
        yield
    finally:
        for c, state in zip(controls, before):
            c.disabled = state


class LiveFigure:
    """A figure redrawn in place while something runs: called with the run's state (a ``History``, a
    trainer) after every step, it draws ``make_figure(state)`` every ``every`` calls, and ``finish(state)``
    draws the last state if that call did not.  The figure replaces the previous one in ``out`` (an
    Output widget, inside which display handles do not update) or, without one, through a display
    handle under the running cell; both work with the inline backend in JupyterLab and on Colab."""

    def __init__(self, make_figure: Callable[[Any], plt.Figure], every: int = 1, out: w.Output | None = None) -> None:
        if every < 1:
            raise ConfigError(f"every = {every} would never redraw: expected an integer ≥ 1. Fix: e.g. every=2.")
        self.make_figure, self.every, self.out = make_figure, every, out
        self.calls = 0
        self.handle = None

    def __call__(self, state: Any) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            self.show(state)

    def finish(self, state: Any) -> None:
        """Draw the final state, unless the last call already drew it."""
        if self.calls % self.every:
            self.show(state)

    def show(self, state: Any) -> None:
        fig = self.make_figure(state)
        if self.out is not None:
            with self.out:
                clear_output(wait=True)
                display(fig)
        elif self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


def lab_figure(history: History, total_steps: int) -> plt.Figure:
    """The lab's dashboard of a run so far: ``plots.ppo_dashboard`` under a title that says how far it is."""
    fig, axes = plt.subplots(2, 3, figsize=(16, 6.4))
    plots.ppo_dashboard(history, axes.flat)
    updates = len(history.updates)
    fig.suptitle(f"after {history.steps:,} of {total_steps:,} environment steps ({updates} update{'' if updates == 1 else 's'})",
                 x=0.01, ha="left", fontweight="bold")
    fig.tight_layout()
    return fig


LAB_REDRAWS = 5  # how many times the lab's dashboard is redrawn during a run, at most


def ppo_lab(seed: int = 0, total_steps: int = 20_000, variant: str = "clip") -> w.VBox:
    """Sliders for ε, epochs, learning rate and minibatches, a choice of variant (``variant`` at first),
    and a button that trains PPO for ``total_steps`` (with a progress bar) while ``lab_figure`` redraws
    its dashboard about ``LAB_REDRAWS`` times, and at the end (notebook 04).  The ε slider is disabled
    for the variants that do not use it (no clipping, the KL penalty), and every control while a run trains."""
    ppo.check_lab_variant(variant)
    controls = {
        "clip_eps": w.FloatSlider(value=0.2, min=0.05, max=1.0, step=0.05, description="ε"),
        "update_epochs": w.IntSlider(value=20, min=1, max=40, description="epochs"),
        "lr": w.SelectionSlider(options=[("1e-4", 1e-4), ("3e-4", 3e-4), ("1e-3", 1e-3), ("3e-3", 3e-3), ("1e-2", 1e-2)], value=1e-3, description="lr"),
        "num_minibatches": w.Dropdown(options=[1, 2, 4, 8, 20, 40], value=4, description="minibatches"),
        "variant": w.Dropdown(options=list(ppo.LAB_VARIANTS), value=variant, description="variant"),
    }
    button = w.Button(description=f"train {total_steps:,} steps", button_style="primary")
    progress_out, figure_out = w.Output(), w.Output()

    def eps_only_when_clipping(*_: Any) -> None:
        # The other variants set ε themselves (∞) or do not clip: the slider would be ignored.
        controls["clip_eps"].disabled = controls["variant"].value != "clip"

    eps_only_when_clipping()
    controls["variant"].observe(eps_only_when_clipping, names="value")

    def train(_: Any) -> None:
        with disabled([*controls.values(), button]), progress_out:
            clear_output()
            cfg = ppo.lab_config(**{k: c.value for k, c in controls.items()}, seed=seed, total_steps=total_steps)
            live = LiveFigure(lambda history: lab_figure(history, total_steps), every=max(1, cfg.num_updates // LAB_REDRAWS), out=figure_out)
            live.finish(ppo.train(cfg, callback=live))

    button.on_click(train)
    return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox([*list(controls.values())[3:], button]), progress_out, figure_out])


def temperature_explorer(policy: Any, tokenizer: Any, prompt: str = "the movie was") -> w.VBox:
    """A temperature slider over the next-token distribution after ``prompt``, and a button that
    draws new samples at that temperature (notebook 05); ``lm.plots.temperature_view`` draws it."""
    from ppo_teach.lm.plots import temperature_view  # here, so notebooks 00–04 do not import transformers

    temperature = w.FloatLogSlider(value=1.0, base=10, min=-2, max=0.5, step=0.05, readout_format=".2f", description="temperature")
    button = w.Button(description="draw new samples", button_style="primary")
    seed = w.IntText(value=0, description="seed", disabled=True, layout=w.Layout(width="140px"))
    button.on_click(lambda _: setattr(seed, "value", seed.value + 1))  # a new seed redraws the samples
    output = w.interactive_output(
        lambda temperature, seed: temperature_view(policy, tokenizer, prompt, temperature, draw=seed),
        {"temperature": temperature, "seed": seed},
    )
    return w.VBox([w.HBox([temperature, button, seed]), output])


def rlhf_figure(trainer: Any) -> plt.Figure:
    """``lm.plots.rlhf_dashboard`` of a trainer's history so far, on one row of four panels."""
    from ppo_teach.lm.plots import rlhf_dashboard  # here, so notebooks 00–04 do not import transformers

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    rlhf_dashboard(trainer.history, axes)
    fig.tight_layout()
    return fig


class LiveDashboard(LiveFigure):
    """A callback for ``RLHFTrainer.train`` that redraws ``rlhf_figure`` in place after every ``every``
    iterations, under the running cell (notebook 06)."""

    def __init__(self, every: int = 1) -> None:
        super().__init__(rlhf_figure, every)


def beta_explorer(
    make_trainer: Callable[[float], Any], betas: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.2, 0.3), runs: dict | None = None
) -> w.VBox:
    """A choice of β and a button that trains a short RLHF run with it (``make_trainer(beta)`` builds
    the trainer) and adds its curve to the previous runs' (``runs``: label → history, shown from the
    start) on ``lm.plots.reward_vs_kl`` (notebook 06)."""
    from ppo_teach.lm.plots import reward_vs_kl

    beta = w.Dropdown(options=[(f"β = {b:g}", b) for b in betas], value=betas[min(2, len(betas) - 1)], description="β")
    button = w.Button(description="train a short run", button_style="primary")
    out, runs = w.Output(), dict(runs or {})

    def train(_: Any) -> None:
        with disabled([beta, button]), out:
            clear_output(wait=True)
            runs[f"β = {beta.value:g}"] = make_trainer(beta.value).train()
            reward_vs_kl(runs)
            plt.tight_layout()
            plt.show()

    button.on_click(train)
    return w.VBox([w.HBox([beta, button]), out])
