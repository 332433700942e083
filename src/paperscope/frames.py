"""Small helpers for notebooks: pandas on demand, HTML escaping and truncation for ``_repr_html_``.

pandas is optional (``pip install 'paperscope[notebook]'``): only ``to_pandas()`` needs it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

PANDAS_HINT = "to_pandas() needs pandas: pip install 'paperscope[notebook]'"


def pandas() -> Any:
    """The pandas module, or ImportError with a one-line install hint."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_HINT) from None
    return pd


def short(text: str | None, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut + "…"


def esc(value: object) -> str:
    """HTML-escaped text of ``value`` (corpus text is never trusted as markup)."""
    return html.escape("" if value is None else str(value), quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str | None = None) -> str:
    """A compact HTML table; every cell is escaped."""
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;vertical-align:top'>{esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left'>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
