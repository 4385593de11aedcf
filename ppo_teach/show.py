"""``show(fn)``: a package function's source, syntax-highlighted, in a notebook."""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


@dataclass
class Source:
    """Source code that renders highlighted in Jupyter and as plain text elsewhere."""

    name: str
    code: str

    def _repr_html_(self) -> str:
        # Inline styles (noclasses) so it renders the same in JupyterLab, on Colab and on GitHub.
        body = highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, style="friendly"))
        return f"<div style='font-size:0.9em'><b><code>{self.name}</code></b>{body}</div>"

    def __repr__(self) -> str:
        return f"# {self.name}\n{self.code}"


def show(obj: Any) -> Source:
    """The source of a function, class or method from ``ppo_teach``, ready to display."""
    try:
        code = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show() takes a function, class or method written in Python, not {obj!r}.") from err
    return Source(f"{obj.__module__}.{obj.__qualname__}", textwrap.dedent(code))
