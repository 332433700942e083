"""The short scripts a researcher would write, scored beside paperscope on the held-out queries.

Baselines (all over ``"{title}. {abstract}"``, every paper scored, the query paper excluded):

* ``tfidf``: scikit-learn ``TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")``,
  cosine;
* ``tfidf+dense rrf``: reciprocal-rank fusion (k = 60) of that TF-IDF and the store's own vectors;
* ``tfidf+dense z``: each side standardised over all papers (per query), equal weights;
* ``tfidf+dense z+qe``: that, plus query expansion (half the mean score row of its top 3).

Every figure is the mean over the held-out queries with a bootstrap 95% interval (queries
resampled 1,000 times, seed 0). ``paperscope eval --baselines`` prints the table;
``benchmarks/ranking_baselines.py`` writes it as Markdown for docs/ranking.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from paperscope.evaluate import MAP_DEPTH, Explorer, Labels, evaluate, is_held_out, query_metrics, resolve
from paperscope.rank import MODES

BOOTSTRAP = 1000
SEED = 0


@dataclass(frozen=True)
class Figure:
    """A mean over queries with its bootstrap 95% interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Row:
    """One ranking on one label set's held-out queries."""

    labels: str
    name: str
    ndcg: Figure
    map: Figure
    queries: int


def bootstrap(values: Sequence[float], n: int = BOOTSTRAP, seed: int = SEED) -> Figure:
    """Mean of ``values`` and the 2.5th / 97.5th percentiles of the means of ``n`` resamples."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return Figure(float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def _zrows(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(axis=1, keepdims=True)) / (s.std(axis=1, keepdims=True) + 1e-12)


def _ranks(s: np.ndarray) -> np.ndarray:
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(s.shape[1])[None, :].repeat(s.shape[0], 0), axis=1)
    return ranks + 1


def baseline_scores(ex: Explorer) -> dict[str, np.ndarray]:
    """Paper-by-paper score matrices of every baseline (rows: query papers), store row order."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{p.title}. {p.abstract}" for p in ex.papers()]
    x = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english").fit_transform(texts)
    tfidf = (x @ x.T).toarray()
    v = np.asarray(ex.index.vectors, dtype=np.float64)
    dense = v @ v.T
    np.fill_diagonal(tfidf, -np.inf)  # the query paper itself never counts
    np.fill_diagonal(dense, -np.inf)
    finite_t, finite_d = np.where(np.isfinite(tfidf), tfidf, 0.0), np.where(np.isfinite(dense), dense, 0.0)
    z = 0.5 * _zrows(finite_d) + 0.5 * _zrows(finite_t)
    top3 = np.argsort(-np.where(np.eye(len(z), dtype=bool), -np.inf, z), axis=1)[:, :3]
    zqe = z + 0.5 * z[top3].mean(axis=1)
    rrf = 1.0 / (60 + _ranks(dense)) + 1.0 / (60 + _ranks(tfidf))
    out = {"tfidf": tfidf, "tfidf+dense rrf": rrf, "tfidf+dense z": z, "tfidf+dense z+qe": zqe}
    for m in out.values():
        np.fill_diagonal(m, -np.inf)
    return out


def _held_metrics(queries: list[tuple[str, int, set[int]]], score: Callable[[int], np.ndarray]) -> list[tuple]:
    out = []
    for title, row, rel in queries:
        if not rel or not is_held_out(title):
            continue
        s = score(row)
        order = np.lexsort((np.arange(len(s)), -s))[:MAP_DEPTH]
        out.append(query_metrics([int(r) for r in order if r != row], rel))
    return out


def compare(ex: Explorer, label_sets: Sequence[Labels]) -> list[Row]:
    """Held-out nDCG@10 and MAP (with intervals) of every baseline and every paperscope mode."""
    matrices = baseline_scores(ex)
    rows = []
    for labels in label_sets:
        queries = resolve(ex, labels)
        name = labels.name.rsplit("/", 1)[-1]
        for base, m in matrices.items():
            per = _held_metrics(queries, lambda r, m=m: m[r])
            rows.append(Row(name, base, bootstrap([p[2] for p in per]), bootstrap([p[3] for p in per]), len(per)))
        res = evaluate(ex, labels, modes=MODES)
        for mode in MODES:
            per = res.per_query_held[mode]
            label = f"paperscope {mode}" + (" (default)" if mode == "hybrid" else "")
            rows.append(Row(name, label, bootstrap([p[2] for p in per]), bootstrap([p[3] for p in per]), len(per)))
    return rows


def format_rows(rows: Sequence[Row], markdown: bool = False) -> str:
    """The comparison table, one block per label set (plain text, or Markdown for the docs)."""
    lines = []
    for labels in dict.fromkeys(r.labels for r in rows):
        block = [r for r in rows if r.labels == labels]
        if markdown:
            lines += [
                f"**{labels}**, {block[0].queries} held-out queries",
                "",
                "| ranking | nDCG@10 [95% CI] | MAP [95% CI] |",
                "| --- | --- | --- |",
            ]
            lines += [f"| {r.name} | {r.ndcg} | {r.map} |" for r in block] + [""]
        else:
            lines.append(f"{labels}: {block[0].queries} held-out queries (bootstrap 95% intervals)")
            lines += [f"  {r.name:<28} nDCG@10 {r.ndcg}  MAP {r.map}" for r in block] + [""]
    return "\n".join(lines).rstrip()
