"""Regenerate tests/e2e/pinned_related.json: the top-10 related ids of a few bundled papers.

Run from the repository root:  python tests/e2e/pin_related.py
It indexes the bundled corpus with the real pinned model (default backend) into a temporary store
and writes, for each pinned title, the ids `Explorer.related(title, k=10)` returns in the default
mode. Regenerate only with a stated reason (a tokenizer, fusion or model change), in the commit message.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

# Titles spread over the corpus's themes: diffusion sampling, LoRA, μP, 3-D generation.
TITLES = [
    "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical Model Statistics",
    "LoRA-GA: Low-Rank Adaptation with Gradient Approximation",
    "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer",
    "DIRECT-3D: Learning Direct Text-to-3D Generation on Massive Noisy 3D Data",
]
PINNED = Path(__file__).with_name("pinned_related.json")


def compute(store: Path) -> dict[str, object]:
    """The pinned record for a store built from the bundled corpus with the default model."""
    from paperscope.explorer import Explorer
    from paperscope.rank import DEFAULT_MODE

    with Explorer(store) as ex:
        related = {t: [h.paper.id for h in ex.related(t, k=10)] for t in TITLES}
    return {"mode": DEFAULT_MODE, "k": 10, "related": related}


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from paperscope.pipeline import build

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        build(None, store)
        record = compute(store)
    PINNED.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {PINNED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
