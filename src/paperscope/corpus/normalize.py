"""Text clean-up and stable paper ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+")
_SPACE = re.compile(r"\s+")
# C0/C1 control characters other than tab/newline carry no meaning in a title or abstract;
# lone surrogates (JSON "\\ud800") cannot even be stored as UTF-8.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Longer than any real title or abstract; a field beyond these is skipped, never embedded.
MAX_TITLE_CHARS = 2_000
MAX_ABSTRACT_CHARS = 100_000


def clean_text(text: str) -> str:
    """Drop control characters (and lone surrogates), collapse whitespace (arXiv abstracts wrap lines)."""
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def normalise_title(title: str) -> str:
    """Case- and punctuation-insensitive form of a title, used for ids and exact-title lookup.

    NFKC folds compatibility characters (full-width letters, ligatures) so that the same
    title typed on two systems normalises alike; ``μ`` and ``µ`` (micro sign) both become ``μ``.
    """
    t = unicodedata.normalize("NFKC", title).casefold()
    return _NON_WORD.sub(" ", t).strip()


def _is_meaningful_symbol(c: str) -> bool:
    # Math symbols (+ = ≠ < > ± ...) and '#' change what a title names: "C++" is not "C", "P = NP"
    # is not "P ≠ NP", "C#" is not "C". Other punctuation ('?', ':', '-', '$' of LaTeX, '&') does not.
    return c == "#" or unicodedata.category(c) == "Sm"


def id_key(title: str) -> str:
    """The form of a title that its id hashes: :func:`normalise_title`, plus its meaningful symbols.

    Titles with no meaningful symbol hash exactly as before (ids of existing stores stay), so case,
    whitespace and punctuation variants of one title still share an id; a title that normalises
    to nothing (only emoji, combining marks or punctuation) hashes its NFC form, so two such titles
    never share the id of the empty string.
    """
    norm = normalise_title(title)
    if not norm:
        return "\x00raw\x00" + " ".join(unicodedata.normalize("NFC", title).split())
    symbols = "".join(c for c in unicodedata.normalize("NFKC", title) if _is_meaningful_symbol(c))
    return norm if not symbols else f"{norm}\x00{symbols}"


def title_id(title: str) -> str:
    """A stable id for a paper that has no arXiv id: ``t-`` + 12 hex digits of the hash of :func:`id_key`."""
    digest = hashlib.sha256(id_key(title).encode("utf-8", "surrogatepass")).hexdigest()
    return "t-" + digest[:12]


_ARXIV_NEW = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")
_ARXIV_OLD = re.compile(r"^[a-z\-]+(\.[A-Z]{2})?/\d{7}(v\d+)?$")


def is_arxiv_id(value: str) -> bool:
    """True for arXiv identifiers in either scheme (``2203.03466``, ``math/0601001``)."""
    return bool(_ARXIV_NEW.match(value) or _ARXIV_OLD.match(value))


def too_long(title: str, abstract: str) -> str | None:
    """Why a paper is too long to index (a reason for the skip report), or None."""
    if len(title) > MAX_TITLE_CHARS:
        return f"title longer than {MAX_TITLE_CHARS:,} characters ({len(title):,})"
    if len(abstract) > MAX_ABSTRACT_CHARS:
        return f"abstract longer than {MAX_ABSTRACT_CHARS:,} characters ({len(abstract):,})"
    return None
