"""Showing corpus text and paths on a terminal safely: one function, used for everything the CLI prints.

A title, an id or a file name comes from the corpus or the file system, and may hold what a
terminal acts on: ESC sequences (``\\x1b[2J`` clears the screen, OSC sets the window title),
CR and LF (a forged line), bidi overrides (U+202E reverses what follows) and bytes that are not
UTF-8 (Python keeps them as lone surrogates). :func:`shown` escapes each such character as
``\\xNN`` / ``\\uNNNN``, so what is printed is inert and stays on one line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import PurePath
from typing import Any

# Lone surrogates: bytes of a file name that were not UTF-8, or a "\ud800" from JSON input.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ECHO_LIMIT = 200  # characters of user text echoed back in a header


def shown(value: object, limit: int | None = None) -> str:
    """``value`` (text, a path, anything) as one printable line; longer than ``limit`` characters is cut with …."""
    text = os.fsdecode(value) if isinstance(value, (PurePath, bytes)) else str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    return "".join(
        c
        if c.isprintable()
        else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        if not _SURROGATE.match(c)
        else f"\\u{ord(c):04x}"
        for c in text
    )


def echo_query(text: str) -> str:
    """A user's query as echoed in a header: quoted, escaped, at most 200 characters."""
    return repr(shown(text, _ECHO_LIMIT))


def dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` with ``ensure_ascii=False`` that can always be written as UTF-8.

    A lone surrogate (in a store written before text fields were all cleaned) is written as its
    JSON escape ``\\udXXX`` instead of failing the whole answer.
    """
    text = json.dumps(data, ensure_ascii=False, **kwargs)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def shown_lines(text: str) -> str:
    """A multi-line block (a table the library formatted) with each line made safe by :func:`shown`."""
    return "\n".join(shown(line) for line in text.split("\n"))
