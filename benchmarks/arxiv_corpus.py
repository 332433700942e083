"""A realistic arXiv metadata snapshot of any size, generated deterministically.

    python benchmarks/arxiv_corpus.py N OUT.jsonl.gz [--seed 0] [--stats OUT.json]
    python benchmarks/arxiv_corpus.py N OUT2.jsonl.gz --edit-fraction 0.01 --edit-seed 1

Writes N distinct papers as gzipped JSON lines in the format of Kaggle's arXiv metadata snapshot
(``id, submitter, authors, title, comments, journal-ref, doi, report-no, categories, license,
abstract, versions, update_date, authors_parsed``). The same arguments give a byte-identical
file (fixed gzip header, seeded generators, a batch size that does not depend on N).

Text: word-level bigram chains fitted on the bundled corpus (read with paperscope's own reader),
one chain per theme of ``data/labels/themes.csv`` (13 themes) interpolated with a chain over all
papers, so lengths and token statistics follow the bundled titles and abstracts and papers of one
synthetic topic share vocabulary. A theme's papers carry its own primary category (``THEMES``),
so a test can check that related papers share a topic.

Work for dedupe and re-indexing: ``--version-fraction`` of the ids appear twice, first as v1 and,
later in the file, as v2 with a small edit (the last reading wins); ``--dup-fraction`` of the ids
are a second id for another paper's text (an exact copy, or one with a sentence dropped). With
``--edit-fraction F --edit-seed S`` the same corpus is written with F of the papers' final
abstracts edited (a sentence appended); the base text does not depend on the edit arguments.

Memory is flat in N: papers are made and written in batches of ``BATCH``; no list of N things is
held. The summary (counts, bytes, seconds) is printed as JSON, and written to ``--stats``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

from paperscope.corpus import bundled_corpus, normalise_title, read_corpus

BATCH = 2048
BOS = 0  # the start/end-of-text state; never written

# theme -> (primary category, cross-lists drawn from, old-style archive)
THEMES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "3d": ("cs.GR", ("cs.CV", "cs.LG"), "cs"),
    "compression": ("cs.AR", ("cs.LG", "cs.CV"), "cs"),
    "diffusion": ("cs.CV", ("cs.LG", "stat.ML"), "cs"),
    "llm": ("cs.CL", ("cs.AI", "cs.LG"), "cs"),
    "merging": ("cs.NE", ("cs.LG", "cs.AI"), "cs"),
    "mup": ("stat.ML", ("cs.LG",), "math.ST"),
    "other": ("cs.AI", ("cs.LG", "cs.MS"), "cs"),
    "peft": ("cs.DC", ("cs.CL", "cs.LG"), "cs"),
    "scaling": ("cs.PF", ("cs.LG", "cs.CL"), "cs"),
    "sciml": ("physics.comp-ph", ("cs.LG", "math.NA"), "physics"),
    "ssm": ("eess.SP", ("cs.LG",), "cs"),
    "theory": ("math.OC", ("cs.LG", "stat.ML"), "math.OC"),
    "vision": ("eess.IV", ("cs.CV", "cs.LG"), "cs"),
}
GLOBAL_MIX = 0.3  # chance that a step follows the all-papers chain instead of the theme's

SURNAMES = (
    "Smith Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Luo Kim Lee Park Choi "
    "Jung Kang Cho Yoon Jang Lim Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato "
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Rossi Russo Ferrari Esposito "
    "Bianchi Romano Colombo Ricci Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau "
    "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Díaz Silva Santos Oliveira Souza "
    "Pereira Costa Ivanov Smirnov Kuznetsov Popov Sokolov Novak Kowalski Nowak Wiśniewski Jensen Nielsen "
    "Hansen Johansson Andersson Karlsson Nilsson Eriksson Larsson Virtanen Korhonen Patel Sharma Singh Kumar "
    "Gupta Shah Mehta Iyer Reddy Rao Nair Das Khan Ahmed Ali Hassan Hussain Cohen Levi Friedman Brown Johnson "
    "Williams Jones Miller Davis Wilson Anderson Taylor Moore Jackson White Harris Clark Lewis Walker Hall "
    "Allen Young King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips "
    "Evans Turner Torres Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson"
).split()
GIVEN = (
    "Alice Amir Ana Andrea Anna Arjun Ben Carlos Chen Chloe Daniel David Elena Emma Fatima Felix Gabriel "
    "Hana Hiro Ines Ivan Jakob James Jia Jin Jonas Julia Kai Karim Laura Lei Leo Lin Lucas Maria Mark Marta "
    "Mei Min Mohamed Nadia Nina Noah Olga Omar Pablo Paul Priya Qian Rahul Rosa Ruth Sara Sofia Tariq Tom "
    "Uma Victor Wei Xin Yan Yuki Yusuf Zoe Hao Jun Ming Tao Yu Rui Ravi Sven Lars Ingrid Pierre Marco"
).split()
LICENSES = (
    None,
    "http://arxiv.org/licenses/nonexclusive-distrib/1.0/",
    "http://creativecommons.org/licenses/by/4.0/",
    "http://creativecommons.org/licenses/by-sa/4.0/",
    "http://creativecommons.org/licenses/by-nc-sa/4.0/",
    "http://creativecommons.org/publicdomain/zero/1.0/",
)
LICENSE_P = (0.15, 0.45, 0.28, 0.04, 0.06, 0.02)
REVISIONS = (
    "In this revised version we add experiments on two further benchmarks.",
    "This version corrects an error in the proof of the main theorem.",
    "We additionally release code and pretrained checkpoints.",
    "The revised manuscript includes an extended ablation study.",
    "We further compare against recent baselines and report confidence intervals.",
    "An appendix with implementation details has been added.",
    "This version clarifies the assumptions of the analysis.",
    "Results on larger models are included in this version.",
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
OLD_MONTHS = [(y, m) for y in range(1992, 2007) for m in range(1, 13)] + [(2007, m) for m in (1, 2, 3)]
NEW_MONTHS = [(y, m) for y in range(2007, 2026) for m in range(1, 13) if (y, m) >= (2007, 4)]


class Chain:
    """Bigram chains (one over all texts, one per theme) flattened for vectorised sampling.

    Row ``r`` is a state: rows ``0..V-1`` are the global chain's words, row ``(t+1)*V + w`` is
    word ``w`` in theme ``t``. ``succ[start[r] : start[r] + count[r]]`` lists every word that
    followed the state in the bundled texts, once per occurrence: a uniform pick from that
    slice is an exact draw from the bigram counts, and a whole batch takes two gathers.
    """

    def __init__(self, vocab_size: int, themes: int, pairs: dict[tuple[int, int], list[int]]):
        self.v = vocab_size
        rows = (themes + 1) * vocab_size
        self.start = np.zeros(rows, dtype=np.int64)
        self.count = np.zeros(rows, dtype=np.int64)
        succ: list[int] = []
        for theme, word in sorted(pairs):
            r = theme * vocab_size + word
            nexts = pairs[(theme, word)]
            self.start[r], self.count[r] = len(succ), len(nexts)
            succ.extend(nexts)
        self.succ = np.array(succ, dtype=np.int32)

    def step(self, cur: np.ndarray, theme: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        row = (theme + 1) * self.v + cur
        glob = (rng.random(cur.shape[0]) < GLOBAL_MIX) | (self.count[row] == 0)
        row = np.where(glob, cur, row)
        pick = (rng.random(cur.shape[0]) * self.count[row]).astype(np.int64)
        return self.succ[self.start[row] + pick]

    def run(self, theme: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
        """A (batch, steps) matrix of word ids, every row starting after BOS."""
        out = np.empty((theme.shape[0], steps), dtype=np.int32)
        cur = np.full(theme.shape[0], BOS, dtype=np.int32)
        for s in range(steps):
            cur = self.step(cur, theme, rng)
            out[:, s] = cur
        return out


@dataclass
class Model:
    """What the bundled corpus gives: vocabulary, chains, length distributions, theme sizes."""

    vocab: list[str]
    ends: np.ndarray  # word ends a sentence
    titles: Chain
    abstracts: Chain
    title_len: np.ndarray
    abstract_len: np.ndarray
    theme_names: list[str]
    theme_p: np.ndarray


def fit() -> Model:
    """Fit the chains on the bundled corpus (432 papers; under a second)."""
    papers = read_corpus([bundled_corpus()])
    themes_csv = Path(str(resources.files("paperscope") / "data" / "labels" / "themes.csv"))
    with open(themes_csv, encoding="utf-8", newline="") as fh:
        theme_of = {normalise_title(r["title"]): r["theme"] for r in csv.DictReader(fh)}
    names = sorted(THEMES)
    vocab: list[str] = ["<s>"]
    index: dict[str, int] = {"<s>": BOS}

    def ids(text: str) -> list[int]:
        out = []
        for w in text.split():
            if w not in index:
                index[w] = len(vocab)
                vocab.append(w)
            out.append(index[w])
        return out

    tpairs: dict[tuple[int, int], list[int]] = defaultdict(list)
    apairs: dict[tuple[int, int], list[int]] = defaultdict(list)
    tlen, alen, per_theme = [], [], np.zeros(len(names))
    for p in papers:
        t = names.index(theme_of.get(normalise_title(p.title), "other"))
        per_theme[t] += 1
        for pairs, text, lens in ((tpairs, p.title, tlen), (apairs, p.abstract, alen)):
            seq = [BOS, *ids(text), BOS]
            lens.append(len(seq) - 2)
            for a, b in zip(seq, seq[1:]):
                pairs[(0, a)].append(b)
                pairs[(t + 1, a)].append(b)
    ends = np.array([w.endswith((".", "?", "!")) for w in vocab], dtype=bool)
    return Model(
        vocab=vocab,
        ends=ends,
        titles=Chain(len(vocab), len(names), tpairs),
        abstracts=Chain(len(vocab), len(names), apairs),
        title_len=np.array(tlen),
        abstract_len=np.array(alen),
        theme_names=names,
        theme_p=per_theme / per_theme.sum(),
    )


def _texts(chain: Chain, model: Model, theme: np.ndarray, target: np.ndarray, rng, sentence: bool) -> list[str]:
    """Sample one text per row: at least ``target`` words, ending at a sentence end if ``sentence``."""
    steps = int(target.max() * (1.4 if sentence else 1.0)) + 2
    toks = chain.run(theme, steps, rng)
    real = toks != BOS
    count = np.cumsum(real, axis=1)
    vocab = model.vocab
    out = []
    if sentence:
        stop = (count >= target[:, None]) & (model.ends[toks] | ~real)
    else:
        stop = count >= target[:, None]
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), steps - 1)
    for i in range(toks.shape[0]):
        row = toks[i, : first[i] + 1]
        out.append(" ".join([vocab[w] for w in row[row != BOS].tolist()]))
    return out


def _wrap(text: str, r: random.Random) -> str:
    """The snapshot's layout: leading spaces, lines of about 80 characters, a final newline."""
    words = text.split(" ")
    k = r.randrange(11, 14)
    return "  " + "\n".join([" ".join(words[i : i + k]) for i in range(0, len(words), k)]) + "\n"


def _arxiv_id(k: int, n: int, n_old: int, archive: str) -> tuple[str, int, int]:
    """Id, year and month of paper ``k`` (chronological: old-style ids first)."""
    if k < n_old:
        y, m = OLD_MONTHS[k % len(OLD_MONTHS)]
        seq = k // len(OLD_MONTHS) + 1
        return f"{archive}/{y % 100:02d}{m:02d}{seq:03d}", y, m
    j, n_new = k - n_old, n - n_old
    mi = j * len(NEW_MONTHS) // n_new
    first = -(-mi * n_new // len(NEW_MONTHS))
    seq = j - first + 1
    y, m = NEW_MONTHS[mi]
    yymm = f"{y % 100:02d}{m:02d}"
    return (f"{yymm}.{seq:04d}" if (y, m) < (2015, 1) and seq < 10000 else f"{yymm}.{seq:05d}"), y, m


def _created(y: int, m: int, r: random.Random) -> str:
    d = r.randrange(1, 29)
    wd = DAYS[(y * 365 + y // 4 + m * 31 + d) % 7]
    return f"{wd}, {d} {MONTHS[m - 1]} {y} {r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d} GMT"


def _record(pid: str, title: str, abstract: str, theme: str, y: int, m: int, r: random.Random, versions: int) -> dict:
    primary, cross, _ = THEMES[theme]
    cats = [primary] + [c for c in cross if r.random() < 0.5]
    n_auth = min(1 + int(math.log(1.0 - r.random()) / math.log(0.72)), 25)  # geometric, mean about 4
    people = [(r.choice(SURNAMES), r.choice(GIVEN)) for _ in range(n_auth)]
    shown = [f"{g[0]}. {s}" if r.random() < 0.4 else f"{g} {s}" for s, g in people]
    authors = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    vs = []
    for v in range(versions):
        vy, vm = (y, m) if v == 0 else (y + (m + v - 1) // 12, (m + v - 1) % 12 + 1)
        vs.append({"version": f"v{v + 1}", "created": _created(vy, vm, r)})
    uy, um = (y + r.randrange(3), r.randrange(1, 13)) if r.random() < 0.5 else (y, m)
    if (uy, um) < (y, m):
        uy, um = y, m
    comments = None if r.random() < 0.3 else f"{r.randrange(4, 40)} pages, {r.randrange(1, 15)} figures"
    journal = None if r.random() < 0.85 else f"Proc. Conf. {y} ({r.randrange(1, 400)})"
    doi = None if r.random() < 0.8 else f"10.{r.randrange(1000, 9999)}/{pid.replace('/', '.')}"
    return {
        "id": pid,
        "submitter": f"{people[0][1]} {people[0][0]}",
        "authors": authors,
        "title": title,
        "comments": comments,
        "journal-ref": journal,
        "doi": doi,
        "report-no": None,
        "categories": " ".join(cats),
        "license": r.choices(LICENSES, LICENSE_P)[0],
        "abstract": abstract,
        "versions": vs,
        "update_date": f"{uy:04d}-{um:02d}-{r.randrange(1, 29):02d}",
        "authors_parsed": [[s, g, ""] for s, g in people],
    }


def _small_edit(text: str, r: random.Random) -> str:
    """Drop one sentence (or, for a text of under three sentences, append a revision note)."""
    parts = text.split(". ")
    if len(parts) < 3:
        return text + " " + r.choice(REVISIONS)
    i = r.randrange(1, len(parts) - 1)
    return ". ".join(parts[:i] + parts[i + 1 :])


def generate(
    n: int,
    out: Path,
    seed: int = 0,
    edit_fraction: float = 0.0,
    edit_seed: int = 1,
    dup_fraction: float = 0.005,
    version_fraction: float = 0.01,
    old_fraction: float = 0.04,
    model: Model | None = None,
) -> dict:
    """Write the corpus to ``out`` (gzipped if it ends in .gz); returns the summary counts."""
    t0 = time.perf_counter()
    model = model or fit()
    n_old = min(int(round(old_fraction * n)), 999 * len(OLD_MONTHS))
    stats = {"papers": n, "lines": 0, "versioned": 0, "duplicates": 0, "edited": 0, "old_style": n_old}
    edited_ids: list[str] = []
    with contextlib.ExitStack() as stack:
        fh: BinaryIO = stack.enter_context(open(out, "wb"))
        if out.suffix == ".gz":  # no name and mtime 0 in the header: the same bytes on every run
            fh = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=1))
        for b, start in enumerate(range(0, n, BATCH)):
            size = min(BATCH, n - start)
            rng = np.random.default_rng([seed, b])
            theme = rng.choice(len(model.theme_names), size=size, p=model.theme_p).astype(np.int32)
            tl = rng.choice(model.title_len, size=size)
            # A text runs on to its sentence's end: aim about 9% short so that mean lengths match.
            al = np.maximum(rng.choice(model.abstract_len, size=size) * 0.91 + rng.integers(-15, 16, size=size), 20)
            titles = _texts(model.titles, model, theme, tl, rng, sentence=False)
            abstracts = _texts(model.abstracts, model, theme, al, rng, sentence=True)
            dup = rng.random(size) < dup_fraction
            ver = (rng.random(size) < version_fraction) & ~dup
            src = rng.integers(0, size, size=size)
            erng = np.random.default_rng([seed, b, edit_seed, 7])
            edit = erng.random(size) < edit_fraction if edit_fraction > 0 else np.zeros(size, dtype=bool)
            r = random.Random(seed * 1_000_003 + b)  # scalar draws: far cheaper than numpy's one by one
            lines: list[str] = []
            later: list[str] = []
            for i in range(size):
                k = start + i
                th = model.theme_names[theme[i]]
                pid, y, m = _arxiv_id(k, n, n_old, THEMES[th][2])
                title, abstract = titles[i], abstracts[i]
                if dup[i]:  # another paper's text under this id: exact, or with a sentence dropped
                    j = int(src[i])
                    title, abstract, th = titles[j], abstracts[j], model.theme_names[theme[j]]
                    if r.random() < 0.5:
                        abstract = _small_edit(abstract, r)
                    stats["duplicates"] += 1
                final = _small_edit(abstract, r) if ver[i] else abstract
                if edit[i]:
                    final = final + " " + REVISIONS[int(erng.integers(len(REVISIONS)))]
                    stats["edited"] += 1
                    edited_ids.append(pid)
                if ver[i]:
                    lines.append(
                        json.dumps(_record(pid, title, _wrap(abstract, r), th, y, m, r, 1), ensure_ascii=False)
                    )
                    later.append(json.dumps(_record(pid, title, _wrap(final, r), th, y, m, r, 2), ensure_ascii=False))
                    stats["versioned"] += 1
                else:
                    lines.append(json.dumps(_record(pid, title, _wrap(final, r), th, y, m, r, 1), ensure_ascii=False))
            lines += later  # the v2 readings come after the batch's v1s: the last reading wins
            stats["lines"] += len(lines)
            fh.write(("\n".join(lines) + "\n").encode())
    stats["bytes"] = out.stat().st_size
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["edited_sample"] = edited_ids[:20]
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="number of distinct papers (ids)")
    ap.add_argument("out", type=Path, help="output file (.jsonl.gz, or .jsonl)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--edit-fraction", type=float, default=0.0, help="share of papers whose abstract is edited")
    ap.add_argument("--edit-seed", type=int, default=1)
    ap.add_argument("--dup-fraction", type=float, default=0.005, help="ids that repeat another paper's text")
    ap.add_argument("--version-fraction", type=float, default=0.01, help="ids written twice (v1, then v2)")
    ap.add_argument("--old-fraction", type=float, default=0.04, help="old-style ids (hep-th/9901001)")
    ap.add_argument("--stats", type=Path, help="also write the summary JSON here")
    a = ap.parse_args(argv)
    if a.n < 1 or not 0 <= a.edit_fraction <= 1:
        ap.error("N must be at least 1 and --edit-fraction within [0, 1]")
    stats = generate(
        a.n, a.out, a.seed, a.edit_fraction, a.edit_seed, a.dup_fraction, a.version_fraction, a.old_fraction
    )
    text = json.dumps(stats, indent=1)
    if a.stats:
        a.stats.write_text(text + "\n", encoding="utf-8")
    print(text, file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
