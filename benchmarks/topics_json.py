"""topics.json of a large map: size, write time and memory, streamed against one indented document.

    python benchmarks/topics_json.py --store STORE [--way streamed|indented]

Loads the map saved in STORE (``Explorer.saved_map``) and writes its topics.json into a temporary
directory: ``streamed`` with ``paperscope.render.write_topics_json`` (what ``paperscope map``
writes: the head indented, one compact line per paper), ``indented`` as it was written before
round 6 (``json.dumps(topics_document(tm), indent=1)``: the whole document as one string). Without
``--way`` each way runs in its own process, so that each peak RSS (VmHWM) is its own. Prints the
size, the seconds and the peak RSS above the loaded map.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paperscope
from paperscope.render import topics_document, write_topics_json


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(store: Path, way: str) -> dict[str, float | str | int]:
    with paperscope.open(store) as ex:
        tm = ex.saved_map()
    if tm is None:
        raise SystemExit(f"{store}: no saved map (run paperscope map first)")
    loaded = vm_hwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "topics.json"
        t0 = time.perf_counter()
        if way == "streamed":
            write_topics_json(tm, out)
        else:
            out.write_text(json.dumps(topics_document(tm), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        seconds = time.perf_counter() - t0
        size = out.stat().st_size
    return {
        "way": way,
        "papers": len(tm),
        "size_mb": size / 1e6,
        "seconds": seconds,
        "loaded_map_mb": loaded,
        "peak_above_map_mb": vm_hwm_mb() - loaded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--way", choices=("streamed", "indented"), default=None)
    args = ap.parse_args()
    if args.way is not None:
        print("RESULT " + json.dumps(measure(args.store, args.way)), flush=True)
        return
    for way in ("streamed", "indented"):
        cmd = [sys.executable, __file__, "--store", str(args.store), "--way", way]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
        print(
            f"{way}: {r['papers']:,} papers, {r['size_mb']:.1f} MB in {r['seconds']:.1f} s, "
            f"peak RSS {r['peak_above_map_mb']:+.0f} MB above the loaded map ({r['loaded_map_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
