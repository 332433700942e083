"""paperscope: explore a corpus of research papers by meaning, offline.

>>> import paperscope
>>> ex = paperscope.build()                 # bundled corpus -> default store
>>> ex = paperscope.open()                  # later: open the store
>>> ex.related("Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer", k=5)
>>> ex.search("learning-rate transfer across model widths")
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paperscope.explorer import Explorer
    from paperscope.verify import VerifyReport

__version__ = "0.1.0"

from paperscope.errors import (  # noqa: E402
    InputError,
    ModelLockError,
    PaperscopeError,
    StoreError,
    StoreLockedError,
    UnknownPaperError,
)
from paperscope.paper import Hit, Paper  # noqa: E402


def build(paths: Iterable[str | Path] | None = None, store: str | Path | None = None, **options: Any) -> Explorer:
    """Index ``paths`` (default: the bundled corpus) into ``store`` and return an Explorer on it.

    Options are those of :func:`paperscope.pipeline.build` (``prune``, ``rebuild``, ``lock``,
    ``embedder``, ``chunk_size``, ``progress``).
    """
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build as _build
    from paperscope.progress import auto_progress, in_notebook

    if "progress" not in options and in_notebook():  # a bar in Jupyter, as the CLI shows one in a terminal
        options["progress"] = auto_progress()
    _build(paths, store, **options)
    return Explorer(store, embedder=options.get("embedder"))


def open(store: str | Path | None = None, **options: Any) -> Explorer:  # noqa: A001 - the API's verb
    """Open an existing store (default: ``$PAPERSCOPE_HOME`` or ``~/.local/share/paperscope``)."""
    from paperscope.explorer import Explorer

    return Explorer(store, **options)


def verify_store(store: str | Path | None = None) -> VerifyReport:
    """Check every file of a store against the digest in its manifest; see :mod:`paperscope.verify`.

    Returns a report (``.ok``, ``.damaged``) instead of raising, so every damaged file is listed.
    """
    from paperscope.store import Store
    from paperscope.verify import verify as _verify

    return _verify(Store(store))


def __getattr__(name: str) -> Any:
    # Explorer imports FAISS; keep `import paperscope` itself light.
    if name == "Explorer":
        from paperscope.explorer import Explorer

        return Explorer
    raise AttributeError(name)


__all__ = [
    "Explorer",
    "Hit",
    "InputError",
    "ModelLockError",
    "Paper",
    "PaperscopeError",
    "StoreError",
    "StoreLockedError",
    "UnknownPaperError",
    "build",
    "open",
    "verify_store",
    "__version__",
]
