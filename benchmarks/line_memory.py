"""Peak RSS growth while reading a small .jsonl.gz that holds one 60 MB line (issue 12, item 4).

Usage: python benchmarks/line_memory.py   (prints the .gz size, what was skipped, and the RSS growth)
"""

from __future__ import annotations

import gzip
import json
import resource
import tempfile
from pathlib import Path

from paperscope.corpus import ReadReport, read_papers


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "huge.jsonl.gz"
    ok = json.dumps({"title": "Ok", "abstract": "word " * 60}).encode() + b"\n"
    with gzip.open(path, "wb") as fh:  # written in 1 MB pieces, so making the input does not raise the peak
        fh.write(b'{"title": "Huge", "abstract": "')
        for _ in range(60):
            fh.write(b"a" * 1_000_000)
        fh.write(b'"}\n' + ok)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = ReadReport()
    papers = list(read_papers([path], report))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(f"{path.stat().st_size:,} bytes compressed; {len(papers)} paper read; skipped: {report.skip_examples}")
    print(f"peak RSS growth while reading: {grown:.1f} MiB")


if __name__ == "__main__":
    main()
