"""Executed inside the notebook's kernel by test_widgets.py (not a test module): find the notebook's
controls and change them as a learner would, through their values and buttons."""
from __future__ import annotations

import ipywidgets

NEXT = "next option"  # for a selection widget: move to the next of its options
NOT_CONTROLS = ("HTML", "HTMLMath", "Label", "Text", "Textarea", "IntProgress", "FloatProgress")  # tqdm's bars, read-outs


def live_widgets() -> list[ipywidgets.Widget]:
    """Every widget the kernel holds (ipywidgets 7 keeps them in Widget.widgets, 8 in _instances)."""
    registry = getattr(ipywidgets.Widget, "widgets", None)
    if registry is None:
        registry = ipywidgets.widgets.widget._instances
    return list(registry.values())


def controls() -> list[ipywidgets.Widget]:
    """The widgets a learner can change: buttons and value widgets with a description, enabled."""
    return [
        w for w in live_widgets()
        if isinstance(w, (ipywidgets.Button, ipywidgets.ValueWidget)) and getattr(w, "description", "")
        and type(w).__name__ not in NOT_CONTROLS and not w.disabled
    ]


def control_names() -> list[str]:
    return sorted(w.description for w in controls())


def find(description: str) -> ipywidgets.Widget:
    """The newest enabled control whose description starts with ``description``."""
    found = [w for w in controls() if w.description.startswith(description)]
    if not found:
        raise LookupError(f"no enabled control described {description!r}; there are {control_names()}")
    return found[-1]


def change(settings: dict, click: str | None = None) -> None:
    """Set each control named in ``settings`` (NEXT: the next option), then click the button ``click``."""
    for description, value in settings.items():
        widget = find(description)
        if value == NEXT:
            widget.index = (widget.index + 1) % len(widget.options)
        else:
            widget.value = value
    if click is not None:
        find(click).click()
