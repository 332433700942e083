"""One small exception hierarchy: the CLI turns each into a single line and exit code 2."""

from __future__ import annotations


class PaperscopeError(Exception):
    """Base class of every error paperscope raises on purpose (bad input, bad store, bad model)."""


class InputError(PaperscopeError):
    """An input file is missing, unreadable or yields no paper. Names the file (and line)."""


class ModelLockError(PaperscopeError):
    """models.lock is malformed, or the weights on disk do not match its hashes."""


class StoreError(PaperscopeError):
    """The store is missing, damaged, locked by another writer, or built by another model."""


class StoreLockedError(StoreError):
    """Another process is writing to the store."""


class UnknownPaperError(PaperscopeError):
    """A paper id or exact title that is not in the store; carries close titles as suggestions."""

    def __init__(self, key: str, suggestions: list[tuple[str, str]]):
        self.key = key
        self.suggestions = suggestions
        hint = ""
        if suggestions:
            hint = "; did you mean: " + " | ".join(f"{pid} ({title})" for pid, title in suggestions)
        super().__init__(f"no paper with id or title {key!r} in the store{hint}")
