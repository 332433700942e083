"""Measuring ``related`` on labelled papers: label files, metrics, the tuning/held-out split.

Two label formats:

* themes CSV, header ``title,theme``: one theme per paper; for every paper whose theme is not
  ``other``, the relevant papers are the other papers of its theme;
* queries JSON: ``[{"query": TITLE, "relevant": [TITLE, ...]}, ...]``, hand-picked lists.

Titles are matched like ``paperscope related`` matches them (id, or title ignoring case and
spacing). Every query is assigned to the tuning or the held-out split by a hash of its
normalised title, so the split is fixed, the same in both label sets, and independent of order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from paperscope.corpus.normalize import normalise_title
from paperscope.errors import InputError, UnknownPaperError
from paperscope.rank import MODES, Query, Ranked


class Explorer(Protocol):
    """What evaluation needs of an open store: the public query path of
    :class:`paperscope.explorer.Explorer` (named here so this module never imports the facade)."""

    store: Any

    def row(self, paper_id: str) -> int: ...

    def related_query(self, row: int) -> Query: ...

    def rank(
        self, q: Query, k: int, mode: str | None = None, *, allowed: Any = None, weight: float | None = None
    ) -> list[Ranked]: ...


K = 10
MAP_DEPTH = 100  # average precision is taken over the first 100 results
NOT_A_THEME = "other"


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    relevant: frozenset[str]


@dataclass(frozen=True)
class Labels:
    """Queries with their relevant papers (titles), read from one label file."""

    name: str
    queries: tuple[LabelledQuery, ...]


def labels_dir() -> Path:
    return Path(__file__).parent / "data" / "labels"


def shipped_labels() -> list[Labels]:
    """The labelled set shipped with paperscope for the bundled corpus: themes and queries."""
    return [load_labels(labels_dir() / "themes.csv"), load_labels(labels_dir() / "queries.json")]


def load_labels(path: str | Path) -> Labels:
    """A theme CSV (``.csv``) or query JSON (``.json``); InputError naming file and line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such label file")
    if path.suffix.lower() == ".csv":
        return _load_themes(path)
    if path.suffix.lower() == ".json":
        return _load_queries(path)
    raise InputError(f"{path}: unknown label format; use a .csv (title,theme) or a .json (query -> relevant)")


def _load_themes(path: Path) -> Labels:
    theme_of: dict[str, tuple[str, str]] = {}
    try:
        # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"title", "theme"} <= {f.strip().lower() for f in reader.fieldnames}:
                raise InputError(f"{path}: line 1: expected a header with columns title,theme, got {reader.fieldnames}")
            for raw in reader:
                # Header cells are matched as the check above matched them: "title, theme" works.
                row = {(k or "").strip().lower(): v for k, v in raw.items()}
                title = (row.get("title") or "").strip()
                theme = (row.get("theme") or "").strip()
                if not title or not theme:
                    raise InputError(f"{path}: line {reader.line_num}: needs both a title and a theme")
                key = normalise_title(title)
                if key in theme_of and theme_of[key][1] != theme:
                    raise InputError(
                        f"{path}: line {reader.line_num}: {title!r} is labelled both {theme_of[key][1]!r} and {theme!r}"
                    )
                theme_of[key] = (title, theme)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV ({e})") from None
    if not theme_of:
        raise InputError(f"{path}: no labelled paper")
    by_theme: dict[str, set[str]] = {}
    for title, theme in theme_of.values():
        by_theme.setdefault(theme, set()).add(title)
    queries = tuple(
        LabelledQuery(title, frozenset(by_theme[theme] - {title}))
        for title, theme in theme_of.values()
        if theme != NOT_A_THEME and len(by_theme[theme]) > 1
    )
    return Labels(str(path), queries)


def _load_queries(path: Path) -> Labels:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is not JSON
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f'{path}: expected a non-empty JSON list of {{"query": ..., "relevant": [...]}}')
    queries = []
    for i, item in enumerate(data):
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("query"), str)
            and item["query"].strip()
            and isinstance(item.get("relevant"), list)
            and item["relevant"]
            and all(isinstance(t, str) and t.strip() for t in item["relevant"])
        )
        if not ok:
            raise InputError(
                f'{path}: entry {i}: expected {{"query": TITLE, "relevant": [TITLE, ...]}} with non-empty titles'
            )
        queries.append(LabelledQuery(item["query"].strip(), frozenset(t.strip() for t in item["relevant"])))
    return Labels(str(path), tuple(queries))


def is_held_out(title: str) -> bool:
    """The fixed split: about half of all queries, chosen by a hash of the normalised title."""
    return hashlib.sha256(normalise_title(title).encode("utf-8")).digest()[0] % 2 == 1


# ---- metrics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    precision: float
    recall: float
    ndcg: float
    map: float
    queries: int

    @classmethod
    def mean(cls, per_query: Sequence[tuple[float, float, float, float]]) -> Metrics:
        if not per_query:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        a = np.asarray(per_query, dtype=np.float64).mean(axis=0)
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]), len(per_query))


def query_metrics(ranked: Sequence[int], relevant: set[int], k: int = K) -> tuple[float, float, float, float]:
    """(precision@k, recall@k, nDCG@k with binary gains, average precision over the ranking)."""
    hits = [r in relevant for r in ranked]
    top = hits[:k]
    precision = sum(top) / k
    recall = sum(top) / len(relevant)
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(top) if h)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    found, ap = 0, 0.0
    for i, h in enumerate(hits):
        if h:
            found += 1
            ap += found / (i + 1)
    ap /= min(len(relevant), len(ranked)) or 1
    return precision, recall, dcg / ideal, ap


@dataclass
class EvalResult:
    """Per mode: metrics on all queries and on the held-out split, for one label set."""

    labels: str
    weight: float
    all: dict[str, Metrics] = field(default_factory=dict)
    held_out: dict[str, Metrics] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # per-query (P@10, R@10, nDCG@10, AP) on the held-out split, for confidence intervals
    per_query_held: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "labels": self.labels,
            "hybrid_weight": self.weight,
            "skipped_queries": self.skipped,
            "all": {m: vars(x) for m, x in self.all.items()},
            "held_out": {m: vars(x) for m, x in self.held_out.items()},
        }


def resolve(ex: Explorer, labels: Labels) -> list[tuple[str, int, set[int]]]:
    """(query title, query row, relevant rows) per query; InputError listing titles not in the store."""
    missing: list[str] = []
    out = []
    for q in labels.queries:
        rows: list[int] = []
        for title in [q.query, *sorted(q.relevant)]:
            try:
                rows.append(ex.row(title))
            except UnknownPaperError:
                missing.append(title)
        if len(rows) == 1 + len(q.relevant):
            out.append((q.query, rows[0], set(rows[1:]) - {rows[0]}))
    if missing:
        shown = "; ".join(repr(t[:60]) for t in missing[:3])
        raise InputError(
            f"{labels.name}: {len(missing)} labelled titles are not in the store {ex.store.path} "
            f"(e.g. {shown}); index those papers or fix the labels"
        )
    return out


def evaluate(
    ex: Explorer,
    labels: Labels,
    *,
    modes: Iterable[str] = MODES,
    weight: float | None = None,
    depth: int = MAP_DEPTH,
    expand: float | None = None,
) -> EvalResult:
    """Run ``related`` for every labelled query in every mode and average the metrics."""
    from paperscope.rank import HYBRID_WEIGHT

    weight = HYBRID_WEIGHT if weight is None else weight
    queries = resolve(ex, labels)
    result = EvalResult(labels=labels.name, weight=weight)
    for mode in modes:
        all_q, held = [], []
        for title, row, relevant in queries:
            if not relevant:
                result.skipped.append(title)
                continue
            # Explorer.related's own query and checks, kept as rows (no papers fetched).
            ranked = [r.row for r in ex.rank(ex.related_query(row), depth, mode, weight=weight, expand=expand)]
            m = query_metrics(ranked, relevant)
            all_q.append(m)
            if is_held_out(title):
                held.append(m)
        result.all[mode] = Metrics.mean(all_q)
        result.held_out[mode] = Metrics.mean(held)
        result.per_query_held[mode] = held
    result.skipped = sorted(set(result.skipped))
    return result


def _tuning_queries(ex: Explorer, label_sets: Sequence[Labels]) -> list[list[tuple[int, set[int]]]]:
    return [
        [(row, rel) for title, row, rel in resolve(ex, labels) if rel and not is_held_out(title)]
        for labels in label_sets
    ]


def tune(
    ex: Explorer, label_sets: Sequence[Labels], weights: Sequence[float] | None = None, expand: float | None = None
) -> list[tuple[float, float]]:
    """Mean nDCG@10 of hybrid per dense weight, on the tuning split only (held-out queries unseen).

    ``expand`` is the query-expansion strength (None: the shipped ``rank.EXPANSION``).

    Each label set counts equally (the mean of per-set means), so the 300-odd theme queries do
    not drown the hand-picked ones. Returns (weight, score) pairs in weight order.
    """
    weights = [round(float(w), 2) for w in (np.linspace(0, 1, 21) if weights is None else weights)]
    per_set = []
    for qs in _tuning_queries(ex, label_sets):
        per_set.append(
            [
                float(
                    np.mean(
                        [
                            query_metrics(
                                [r.row for r in ex.rank(ex.related_query(row), K, "hybrid", weight=w, expand=expand)],
                                rel,
                            )[2]
                            for row, rel in qs
                        ]
                    )
                )
                for w in weights
            ]
        )
    return [(w, float(np.mean([s[i] for s in per_set]))) for i, w in enumerate(weights)]


def tune_expansion(
    ex: Explorer, label_sets: Sequence[Labels], weight: float, betas: Sequence[float] = (0.0, 0.25, 0.5, 1.0)
) -> list[tuple[float, float]]:
    """Mean nDCG@10 of hybrid per query-expansion strength ``beta`` (0 = off), tuning split only."""
    return [(b, tune(ex, label_sets, [weight], expand=b)[0][1]) for b in betas]


def fit_calibration(
    ex: Explorer, label_sets: Sequence[Labels], weight: float, depth: int = MAP_DEPTH
) -> dict[str, tuple[float, float]]:
    """(a, b) per mode so that ``1 / (1 + exp(-(a + b z)))`` is P(relevant | z), fitted by logistic
    regression on the first ``depth`` results of every tuning query (held-out queries unseen)."""
    from sklearn.linear_model import LogisticRegression

    from paperscope.rank import EXPANSION
    from paperscope.rank import MODES as modes

    out = {}
    for mode in modes:
        zs, ys = [], []
        for qs in _tuning_queries(ex, label_sets):
            for row, rel in qs:
                # the z each shown score is computed from (hybrid: fused, expanded as shipped)
                expand = EXPANSION if mode == "hybrid" else 0.0
                for r in ex.ranker.rank(ex.related_query(row), depth, mode, weight=weight, expand=expand):
                    zs.append(r.z)
                    ys.append(r.row in rel)
        lr = LogisticRegression(C=100.0).fit(np.array(zs)[:, None], np.array(ys))
        out[mode] = (round(float(lr.intercept_[0]), 3), round(float(lr.coef_[0][0]), 3))
    return out


@dataclass(frozen=True)
class Reliability:
    """How well shown scores match how often the papers are relevant, on held-out queries.

    ``bins``: (low, high, hits, mean shown score, share relevant) per score bin;
    ``by_rank``: (first rank, last rank, mean shown score, share relevant) per rank group;
    ``ece``: expected calibration error, the hit-weighted mean of |mean score - share relevant|.
    """

    mode: str
    queries: int
    bins: list[tuple[float, float, int, float, float]]
    by_rank: list[tuple[int, int, float, float]]
    ece: float


def reliability(
    ex: Explorer,
    label_sets: Sequence[Labels],
    mode: str = "hybrid",
    k: int = K,
    edges: Sequence[float] = (0, 0.2, 0.4, 0.6, 0.8, 1.0),
) -> Reliability:
    """The first ``k`` shown scores of every held-out query of ``label_sets`` against its labels."""
    scores, relevant = [], []
    for labels in label_sets:
        for title, row, rel in resolve(ex, labels):
            if rel and is_held_out(title):
                ranked = ex.rank(ex.related_query(row), k, mode)
                scores.append([r.score for r in ranked])
                relevant.append([r.row in rel for r in ranked])
    s = np.array([x for q in scores for x in q], dtype=np.float64)
    y = np.array([x for q in relevant for x in q], dtype=np.float64)
    bins, ece = [], 0.0
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (s >= lo) & ((s < hi) if i < len(edges) - 2 else (s <= hi))
        if inside.any():
            bins.append((float(lo), float(hi), int(inside.sum()), float(s[inside].mean()), float(y[inside].mean())))
            ece += inside.sum() / len(s) * abs(s[inside].mean() - y[inside].mean())
    by_rank = []
    for first, last in ((1, 3), (4, k)):
        part = [(x, r) for q, rq in zip(scores, relevant) for x, r in list(zip(q, rq))[first - 1 : last]]
        if part:
            a = np.array(part, dtype=np.float64)
            by_rank.append((first, last, float(a[:, 0].mean()), float(a[:, 1].mean())))
    return Reliability(mode, len(scores), bins, by_rank, float(ece))


def format_results(results: Sequence[EvalResult]) -> str:
    """The eval table: one block per label set, modes as rows, all queries and held-out side by side."""
    lines = []
    for res in results:
        any_mode = next(iter(res.all.values()))
        held_n = next(iter(res.held_out.values())).queries
        lines.append(f"{res.labels}: {any_mode.queries} queries ({held_n} held out); hybrid dense weight {res.weight}")
        lines.append(
            f"  {'mode':<8} | {'P@10':>6} {'R@10':>6} {'nDCG@10':>7} {'MAP':>6} | "
            f"{'P@10':>6} {'R@10':>6} {'nDCG@10':>7} {'MAP':>6}"
        )
        lines.append(f"  {'':<8} | {'all queries':^28} | {'held-out queries':^28}")
        for mode, a in res.all.items():
            h = res.held_out[mode]
            lines.append(
                f"  {mode:<8} | {a.precision:6.3f} {a.recall:6.3f} {a.ndcg:7.3f} {a.map:6.3f} | "
                f"{h.precision:6.3f} {h.recall:6.3f} {h.ndcg:7.3f} {h.map:6.3f}"
            )
        if res.skipped:
            lines.append(f"  ({len(res.skipped)} queries without relevant papers skipped)")
        lines.append("")
    return "\n".join(lines).rstrip()
