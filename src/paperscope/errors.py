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


# The one repair for a damaged store file: every message that says "damaged" ends with it.
REPAIR = "re-index to repair: paperscope index --rebuild"


class DamagedError(StoreError):
    """A store file is damaged or missing: the message names the file, what is wrong, and the repair.

    The one constructor for "damaged, here is the repair"; ``problem`` is a short phrase such as
    ``"missing"`` or ``f"damaged ({e})"``.
    """

    def __init__(self, path: object, problem: str, repair: str = REPAIR):
        self.path = str(path)
        self.problem = problem
        self.repair = repair
        super().__init__(f"{path}: {problem}; {repair}")


class InvalidArgument(PaperscopeError, ValueError):
    """A value the caller passed is out of range or of the wrong kind (k, mode, chunk size, ...).

    Also a ValueError, so callers that caught ValueError before keep working; a bare ValueError
    raised anywhere else is a bug and keeps its traceback in the CLI.
    """


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


class MissingExtraError(PaperscopeError):
    """An optional feature whose packages are not installed; names the extra that installs them."""

    def __init__(self, what: str, extra: str, detail: str = ""):
        self.extra = extra
        why = f" ({detail})" if detail else ""
        super().__init__(
            f'{what} needs the paperscope[{extra}] extra{why}; install it: pip install "paperscope[{extra}]"'
        )


def require_extra(modules: tuple[str, ...], extra: str, what: str) -> None:
    """MissingExtraError unless every module in ``modules`` can be imported (nothing is imported)."""
    from importlib.util import find_spec

    for name in modules:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtraError(what, extra, f"no module named {name!r}")
