"""Progress bars that show in a notebook as in a terminal (tqdm.auto picks the widget or the text bar)."""

from __future__ import annotations

import sys
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where stderr is no TTY but a progress bar still helps).

    The running IPython shell decides, not a loaded module: a test run or a script may import
    ipykernel (to run a notebook) without being one.
    """
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def auto_progress(unit: str = "text") -> Any:
    """A ``(total, desc) -> bar`` factory built on tqdm.auto."""

    def factory(total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)

    return factory
