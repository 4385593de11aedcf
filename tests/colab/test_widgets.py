"""Every widget in the notebooks, changed in a real kernel under Colab's ipywidgets, shows something new.

Each notebook runs top to bottom in a kernel (jupyter_client); then each step below changes
controls in that kernel the way the front end does (a new value, a button's click) and collects
what the kernel sends.  A step must send at least one PNG that the kernel had not sent before
(or, for notebook 05's sample button, which redraws the samples under the same distribution,
printed text it had not printed before).  A control that no step names fails the test, so a new
widget cannot go unchecked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[2]
KERNEL_SIDE = Path(__file__).with_name("kernel_side.py").read_text()
NEXT = "next option"  # kernel_side.NEXT
TIMEOUT_S = 900


@dataclass(frozen=True)
class Step:
    """Controls to set (description → value, or NEXT) and the button to click afterwards, if any."""

    settings: dict = field(default_factory=dict)
    click: str | None = None
    shows: str = "figure"  # or "text": what must be new after the step

    def code(self) -> str:
        return f"change({self.settings!r}, {self.click!r})"

    def names(self) -> set[str]:
        return set(self.settings) | ({self.click} if self.click else set())


# Values the notebooks do not draw themselves (a figure the notebook drew already would not be new).
STEPS = {
    "00_start_here.ipynb": [Step({"γ": 0.8})],
    "01_reinforce.ipynb": [],
    "02_trpo.ipynb": [Step({"δ": 0.05})],
    "03_ppo.ipynb": [Step({"ε": 0.4}), Step({"advantage": NEXT}), Step({"λ": 0.5})],
    "04_ppo_lab.ipynb": [
        Step({"ε": 0.3, "epochs": 10, "lr": NEXT, "minibatches": NEXT}, click="train"),
        Step({"variant": NEXT}, click="train"),
    ],
    "05_lm_policy.ipynb": [Step({"temperature": 0.5}), Step(click="draw new samples", shows="text")],
    "06_rlhf.ipynb": [Step({"β": NEXT}, click="train a short run")],
    "07_mistakes.ipynb": [],
}


@dataclass
class Sent:
    """What a kernel sent while executing some code: the PNG images (base64) and the printed text."""

    pngs: list[str] = field(default_factory=list)
    stdout: str = ""

    def shown(self) -> set[str]:
        return set(self.pngs) | {self.stdout}


class Kernel:
    """A kernel in the notebooks' folder; ``run`` executes code and returns the PNGs it sent."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(ROOT / "notebooks"))

    def run(self, code: str, where: str) -> Sent:
        """Execute ``code``; fail the test, naming ``where``, if it raises."""
        sent, errors = Sent(), []

        def collect(message: dict) -> None:
            content = message["content"]
            if message["msg_type"] in {"display_data", "update_display_data", "execute_result"}:
                if "image/png" in content["data"]:
                    sent.pngs.append(content["data"]["image/png"])
            elif message["msg_type"] == "stream" and content["name"] == "stdout":
                sent.stdout += content["text"]
            elif message["msg_type"] == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=TIMEOUT_S, output_hook=collect)
        assert reply["content"]["status"] == "ok" and not errors, f"{where} failed:\n" + "\n".join(errors)
        return sent

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def code_cells(notebook: str) -> list[str]:
    book = json.loads((ROOT / "notebooks" / notebook).read_text())
    return ["".join(c["source"]) for c in book["cells"] if c["cell_type"] == "code"]


@pytest.fixture
def kernel(setup_cell_run):  # the set-up cell installs the package's dependencies first
    kernel = Kernel()
    yield kernel
    kernel.shutdown()


@pytest.mark.parametrize("notebook", list(STEPS))
def test_every_widget_changed_in_a_real_kernel_draws_a_new_figure(notebook, kernel):
    seen: set[str] = set()  # every PNG and every printed text the kernel has sent
    for i, source in enumerate(code_cells(notebook)):
        seen |= kernel.run(source, f"{notebook} code cell {i}").shown()
    kernel.run(KERNEL_SIDE, "kernel_side.py")
    names = json.loads(kernel.run("import json; print(json.dumps(control_names()))", "control_names").stdout)
    covered = set().union(*(step.names() for step in STEPS[notebook]))
    unchecked = [n for n in names if not any(n.startswith(c) for c in covered)]
    assert not unchecked, f"{notebook}: controls {unchecked} are changed by no step; add a step to STEPS"
    for step in STEPS[notebook]:
        sent = kernel.run(step.code(), f"{notebook}: {step}")
        new = (set(sent.pngs) if step.shows == "figure" else {sent.stdout} - {""}) - seen
        assert new, f"{notebook}: {step} showed no new {step.shows}"
        seen |= sent.shown()

