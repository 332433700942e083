"""Hostile-input helpers shared by the fuzz, corruption and concurrency tests."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from hypothesis import strategies as st

# Text that has broken parsers, terminals and HTML pages before.
NASTY = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</script><!--",
    "&amp;&lt;",
    "\u202eevil\u202c",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "e\u0301\u0301\u0301",
    "Z\u0351\u0352\u0353",
    "\x00",
    "\x1b[31m",
    "\ufeff",
    "\u2028",
    "\ud800",
    "\U0001f600",
    "  ",
    "\t\n",
    ",",
    '"',
    "\\",
    "{",
    "]",
]
WORDS = ["neural", "network", "scaling", "laws", "diffusion", "model", "graph", "attention", "robust", "data"]

nasty_text = st.lists(st.sampled_from(NASTY + WORDS) | st.text(max_size=8), min_size=0, max_size=12).map(" ".join)
long_text = st.lists(st.sampled_from(WORDS + NASTY), min_size=30, max_size=80).map(" ".join)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True)
    | nasty_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def jsonl_bytes(draw: st.DrawFn) -> bytes:
    """JSON Lines whose rows mix sane papers, hostile values, duplicate ids and broken lines."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        row = {
            "id": draw(st.sampled_from(["a", "b", "2203.03466"]) | json_value),
            "title": draw(nasty_text | json_value),
            "abstract": draw(long_text | json_value),
        }
        for key in draw(st.lists(st.sampled_from(["authors", "authors_count", "date", "categories"]), max_size=4)):
            row[key] = draw(json_value)
        lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=30)))
    data = b"\n".join(lines)
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]  # truncated
    return data


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(draw(st.sampled_from([["id", "title", "abstract"], ["title", "abstract", "authors"], ["name", "text"]])))
    for _ in range(draw(st.integers(0, 5))):
        w.writerow([draw(nasty_text), draw(nasty_text), draw(long_text)])
    data = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return data


@st.composite
def page_bytes(draw: st.DrawFn) -> bytes:
    """A saved daily-papers page: chrome, titles, abstracts, metadata lines, noise."""
    parts = ["Subscribe", "new"]
    for _ in range(draw(st.integers(0, 5))):
        parts += [
            draw(nasty_text),
            draw(long_text) * 3,
            draw(st.sampled_from(["", "• 3 authors", "Jun 13, 2022 4", "Oct 17", "·", "naver-ai NAVER"])),
        ]
    text = "\n".join(parts).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    if draw(st.booleans()):
        text += draw(st.binary(max_size=20))
    return text


def snapshot(store: Path) -> dict[str, str]:
    """sha256 of every file in the store (the writer lock excepted): equal before and after means unchanged."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != ".writer.lock"
    }
