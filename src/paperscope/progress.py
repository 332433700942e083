"""Progress bars that show in a notebook as in a terminal (tqdm.auto picks the widget or the text bar)."""

from __future__ import annotations

import sys
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where stderr is no TTY but a progress bar still helps)."""
    return "ipykernel" in sys.modules


def auto_progress(unit: str = "text") -> Any:
    """A ``(total, desc) -> bar`` factory built on tqdm.auto."""

    def factory(total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)

    return factory
