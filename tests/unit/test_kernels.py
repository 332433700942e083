"""kernels: the compiled loops give the same bits as the numpy loops, cold or warm, and a query
gives the same hits whichever answered."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from paperscope import kernels, pagein


@pytest.fixture(scope="module")
def compiled() -> None:
    if not kernels.load():
        pytest.fail("the compiled loops did not load (numba ships with umap-learn: it must import)")


def _forward(rng: np.random.Generator, lengths: np.ndarray, vocab: int) -> tuple[np.ndarray, ...]:
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    terms = rng.integers(0, vocab, size=int(indptr[-1])).astype(np.int32)
    unit = rng.random(int(indptr[-1])).astype(np.float32)
    return indptr, terms, unit


def _query(rng: np.random.Generator, vocab: int, nnz: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.sort(rng.choice(vocab, size=nnz, replace=False)).astype(np.int64)
    dense = np.zeros(vocab)
    dense[ids] = rng.random(nnz) - 0.2  # some negative weights, as recommend's negative papers give
    bits = kernels.query_filter()
    kernels.mark(bits, ids)
    return dense, bits


@pytest.mark.parametrize(("read_only", "vocab"), [(False, 300), (True, 300), (True, 400_000)])
def test_compiled_row_scores_are_numpys_bits(compiled: None, read_only: bool, vocab: int) -> None:
    """Rows of every length numpy's pairwise sum treats apart (under 8, up to 128, split once, split
    many times, longer than the kernel's first buffer) and empty rows, scored both ways; with a
    vocabulary above the query filter's 2**16 bits, terms the filter lets through by mistake."""
    rng = np.random.default_rng(5)
    lengths = np.array([0, 1, 7, 8, 9, 127, 128, 129, 136, 255, 256, 1000, 4097, 9000, 0, 170, 3])
    lengths = np.concatenate([lengths, rng.integers(0, 400, size=300)])
    indptr, terms, unit = _forward(rng, lengths, vocab=vocab)
    for a in (indptr, terms, unit):
        a.flags.writeable = not read_only
    rows = rng.permutation(len(lengths)).astype(np.int64)
    for nnz in (1, 40, 300):
        dense, bits = _query(rng, vocab, nnz)
        if vocab > kernels.FILTER_BITS and nnz == 300:
            low = np.flatnonzero(dense) & (kernels.FILTER_BITS - 1)
            passed = np.isin(terms & (kernels.FILTER_BITS - 1), low) & (dense[terms] == 0)
            assert passed.any(), "no term the filter lets through by mistake: the case is not tested"
        got = kernels.score_rows(indptr, terms, unit, rows, dense, bits)
        with kernels.numpy_only():
            want = kernels.score_rows(indptr, terms, unit, rows, dense, bits)
        assert want.dtype == got.dtype == np.float64
        assert np.array_equal(got, want), np.abs(got - want).max()
        # and numpy's own order is what the numpy loop keeps: each row's reduceat sum
        row = int(rows[np.flatnonzero(lengths[rows] == 9000)[0]])
        lo, hi = indptr[row], indptr[row + 1]
        assert got[rows == row][0] == np.add.reduceat(unit[lo:hi] * dense[terms[lo:hi]], [0])[0]


def test_a_cold_head_hands_the_rest_to_the_numpy_path_with_the_same_result(
    compiled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(6)
    indptr, terms, unit = _forward(rng, rng.integers(0, 300, size=400), vocab=500)
    rows = rng.choice(400, size=200, replace=False).astype(np.int64)
    dense, bits = _query(rng, 500, 120)
    warm = kernels.score_rows(indptr, terms, unit, rows, dense, bits)
    handed: list[int] = []
    real_take = pagein.take

    def take(source: np.ndarray, index: np.ndarray) -> np.ndarray:
        handed.append(len(index))
        return real_take(source, index)

    monkeypatch.setattr(pagein, "take", take)
    monkeypatch.setattr(pagein, "COLD_SECONDS_PER_BYTE", 0.0)  # every read counts as slow
    cold = kernels.score_rows(indptr, terms, unit, rows, dense, bits)
    assert handed, "a slow head did not hand the rest of the rows to pagein.take"
    assert np.array_equal(cold, warm)


def test_compiled_postings_sums_are_numpys_bits(compiled: None) -> None:
    rng = np.random.default_rng(7)
    # rows past one bucket of the compiled loop (2**15 rows): sums added bucket by bucket
    n, postings = 70_000, 60_000
    post_rows = rng.integers(0, n, size=postings).astype(np.int32)
    post_vals = rng.random(postings).astype(np.float32)
    starts = np.sort(rng.choice(postings, size=80, replace=False))
    lo = starts.astype(np.int64)
    take = np.minimum(rng.integers(0, 2000, size=80), postings - lo).astype(np.int64)
    weights = rng.random(80).astype(np.float32)
    out = []
    for numpy in (False, True):
        acc, seen = np.zeros(n, dtype=np.float32), kernels.row_marks(n)
        if numpy:
            with kernels.numpy_only():
                got = kernels.accumulate_sums((post_rows, post_vals, lo, take), None, weights, None, acc, seen)
        else:
            got = kernels.accumulate_sums((post_rows, post_vals, lo, take), None, weights, None, acc, seen)
        assert not acc.any() and not seen.any()  # cleared for the next query
        out.append(got)
    (m1, s1), (m2, s2) = out
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
    assert np.array_equal(m1, np.unique(post_rows[kernels.segments(lo, take)]))
    # float32, in the order the postings were read: the same as one sequential sum per row
    row = int(m1[np.argmax(np.bincount(post_rows[kernels.segments(lo, take)], minlength=n)[m1])])
    want = np.float32(0.0)
    for t in range(len(lo)):
        for j in range(lo[t], lo[t] + take[t]):
            if post_rows[j] == row:
                want = np.float32(want + post_vals[j] * weights[t])
    assert s1[np.searchsorted(m1, row)] == want


@pytest.mark.parametrize("with_delta", [False, True])
def test_compiled_postings_sums_over_a_base_and_a_delta_are_numpys_bits(compiled: None, with_delta: bool) -> None:
    """accumulate_sums: the base's lists without the rows marked to skip, then the delta's; the rows
    met ascending with their float32 sums, the same bits either way, the scratch left cleared."""
    rng = np.random.default_rng(11)
    n, postings, terms = 4000, 50_000, 60
    post_rows = rng.integers(0, n - 200, size=postings).astype(np.int32)  # the base: rows below n - 200
    post_vals = rng.random(postings).astype(np.float32)
    lo = np.sort(rng.choice(postings, size=terms, replace=False)).astype(np.int64)
    take = np.minimum(rng.integers(0, 1500, size=terms), postings - lo).astype(np.int64)
    skip = np.zeros(n - 200, dtype=bool)
    skip[rng.choice(n - 200, size=300, replace=False)] = True
    d_rows = np.concatenate((np.flatnonzero(skip), np.arange(n - 200, n))).astype(np.int32)  # edited, appended
    d_rows = rng.choice(d_rows, size=3000).astype(np.int32)
    d_vals = rng.random(3000).astype(np.float32)
    d_lo = np.sort(rng.choice(3000, size=terms, replace=False)).astype(np.int64)
    d_take = np.minimum(rng.integers(0, 100, size=terms), 3000 - d_lo).astype(np.int64)
    weights = rng.random(terms).astype(np.float32)
    delta = (d_rows, d_vals, d_lo, d_take) if with_delta else None
    out = []
    for numpy in (False, True):
        acc, seen = np.zeros(n, dtype=np.float32), kernels.row_marks(n)
        if numpy:
            with kernels.numpy_only():
                got = kernels.accumulate_sums((post_rows, post_vals, lo, take), delta, weights, skip, acc, seen)
        else:
            got = kernels.accumulate_sums((post_rows, post_vals, lo, take), delta, weights, skip, acc, seen)
        assert not acc.any() and not seen.any()  # cleared for the next query
        out.append(got)
    (r1, s1), (r2, s2) = out
    assert np.array_equal(r1, r2) and np.array_equal(s1, s2) and (np.diff(r1) > 0).all()
    # A skipped row's base postings are not counted: its sum is its delta postings' alone.
    base_met = set(post_rows[kernels.segments(lo, take)].tolist())
    skipped = [r for r in np.flatnonzero(skip).tolist() if r in base_met]
    assert skipped
    for row in skipped[:20]:
        want = np.float32(0.0)
        if with_delta:
            for t in range(terms):
                for j in range(d_lo[t], d_lo[t] + d_take[t]):
                    if d_rows[j] == row:
                        want = np.float32(want + d_vals[j] * weights[t])
        at = np.searchsorted(r1, row)
        assert (at < len(r1) and r1[at] == row and s1[at] == want) or (want == 0 and row not in set(r1.tolist()))

    # Only the allowed rows come back, with the same sums, either way.
    allowed = rng.random(n) < 0.7
    for numpy in (False, True):
        acc, seen = np.zeros(n, dtype=np.float32), kernels.row_marks(n)
        with kernels.numpy_only() if numpy else contextlib.nullcontext():
            r3, s3 = kernels.accumulate_sums((post_rows, post_vals, lo, take), delta, weights, skip, acc, seen, allowed)
        assert not acc.any() and not seen.any()
        assert np.array_equal(r3, r1[allowed[r1]]) and np.array_equal(s3, s1[allowed[r1]])


def _impact_lists(rng: np.random.Generator, lengths: np.ndarray, stride: int) -> tuple[np.ndarray, ...]:
    """Impact-ordered lists (descending, with runs of ties) and their marks every ``stride``."""
    starts = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    vals = np.concatenate([np.sort(np.round(rng.random(int(n)), 2).astype(np.float32))[::-1] for n in lengths]).astype(
        np.float32
    )
    marks = np.zeros(int(starts[-1]) // stride + len(lengths) + 1, dtype=np.float32)
    for t, n in enumerate(lengths):
        for k in range(-(-int(n) // stride) if n > stride else 0):
            marks[starts[t] // stride + t + k] = vals[starts[t] + min((k + 1) * stride, int(n)) - 1]
    return starts, vals, marks


@pytest.mark.parametrize("marked", [False, True])
def test_compiled_score_at_a_time_segments_and_counts_are_numpys(compiled: None, marked: bool) -> None:
    """The segments a score-at-a-time pass cuts (impact.Postings.partial) and its counts at a
    threshold: the same from either loops (the segments as a set: the compiled loop writes them
    list by list), for lists empty, short, at and past the marks' stride, ties included."""
    rng = np.random.default_rng(11)
    mark_stride = 8
    lengths = np.concatenate([[0, 1, 2, 7, 8, 9, 16, 17, 64, 65, 300], rng.integers(0, 200, size=60)])
    starts, vals, marks = _impact_lists(rng, lengths, mark_stride)
    ids = rng.permutation(len(lengths))[:50]
    lo, length = starts[ids], (starts[ids + 1] - starts[ids]).astype(np.int64)
    slots = lo // mark_stride + ids
    weights = rng.random(len(ids)) + 0.1
    for budget, stride in ((40, 8), (500, 16), (2000, 24), (100, 5)):
        use = marked and stride % mark_stride == 0
        head = np.minimum(length, budget if not use else budget // mark_stride * mark_stride)
        args = (vals, marks if use else None, lo, slots, head, weights, stride, mark_stride if use else 0)
        with kernels.numpy_only():
            want = kernels.segment_ends(*args)
        got = kernels.segment_ends(*args)
        key = lambda seg: sorted(zip(*(a.tolist() for a in seg)))  # noqa: E731
        assert key(got) == key(want) and len(want[0]) > len(ids), (budget, stride)
        for threshold in np.quantile(want[3], [0.1, 0.5, 0.9]).tolist() + [float(want[3].max()), 0.0]:
            with kernels.numpy_only():
                a = kernels.counts_at(vals, lo, head, weights, threshold, want)
            b = kernels.counts_at(vals, lo, head, weights, threshold, got)
            assert np.array_equal(a, b), (budget, stride, threshold)
            # the count is where each list's contributions fall below the threshold
            for t in range(len(ids)):
                contrib = vals[lo[t] : lo[t] + head[t]].astype(np.float64) * weights[t]
                assert a[t] == int((contrib >= threshold).sum()), t


def test_related_search_and_recommend_are_the_same_with_either_loops(compiled: None, real_store) -> None:
    """The public API on the bundled store (real model): every hit's id, score and both sides'
    scores are identical, whichever loops answered."""
    import paperscope

    ex = paperscope.open(real_store)
    ids = [p.id for p in ex.papers()][:12]
    asks = [lambda i=i: ex.related(i, k=10) for i in ids]
    asks += [lambda t=t: ex.search(t, k=10) for t in ("low-rank adaptation of large models", "diffusion")]
    asks += [lambda: ex.search("hyperparameter transfer", k=10, mode="lexical")]
    asks += [lambda: ex.recommend(ids[:2], negative=ids[2:3], k=10)]

    def shown(hits: list) -> list[tuple]:
        return [(h.paper.id, h.score, h.dense, h.lexical) for h in hits]

    got = [shown(ask()) for ask in asks]
    with kernels.numpy_only():
        want = [shown(ask()) for ask in asks]
    assert got == want
    assert all(len(hits) == 10 for hits in got)


def test_numpy_only_environment_keeps_the_numpy_loops() -> None:
    code = "from paperscope import kernels; print(kernels.load(), kernels.ready())"
    env = {**os.environ, "PAPERSCOPE_KERNELS": "numpy"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_background_load_leaves_one_command_free_to_exit() -> None:
    """A one-query command starts the load and exits at once: no wait, no error at shutdown; a
    process that keeps going gets the compiled loops."""
    code = (
        "import sys, time; from paperscope import kernels; kernels.load_in_background()\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    if kernels.ready(): break\n"
        "    time.sleep(0.05)\n"
        "print(kernels.ready())"
    )
    quick = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, timeout=60)
    assert quick.returncode == 0 and quick.stderr == "" and quick.stdout.strip() == "False"
    slow = subprocess.run([sys.executable, "-c", code, "1200"], capture_output=True, text=True, timeout=120)
    assert slow.returncode == 0 and slow.stdout.strip() == "True", slow.stderr


def test_asking_again_for_the_background_load_does_not_wait_for_it() -> None:
    """A ranker asks after every answer; while the loops load (numba's import takes half a second),
    those calls return at once instead of waiting for the load to finish."""
    code = (
        "import time; from paperscope import kernels; kernels.load_in_background()\n"
        "time.sleep(0.05)  # the loader thread is importing numba by now\n"
        "kernels.load_in_background(); print(kernels.ready())\n"
        "kernels.load(); print(kernels.ready())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["False", "True"], out.stderr


def test_a_large_store_loads_the_compiled_loops_after_its_first_queries(real_store) -> None:
    """Not during the first ``COMPILED_AFTER - 1`` queries (a command asking one never pays for it),
    then in the background, without an error (the bundled store stands in for a large one)."""
    code = (
        "import sys, threading, time, paperscope\n"
        "from paperscope import kernels, rank\n"
        "rank.COMPILED_ROWS, rank.COMPILED_AFTER = 1, 3\n"
        "ex = paperscope.open(sys.argv[1])\n"
        "ids = [p.id for p in ex.papers()][:3]\n"
        "for i in ids[:2]:\n"
        "    ex.related(i, k=5)\n"
        "time.sleep(0.5)\n"
        "print(kernels.ready(), any(t.name == 'paperscope-kernels' for t in threading.enumerate()))\n"
        "ex.related(ids[2], k=5)\n"
        "for _ in range(1200):\n"
        "    if kernels.ready(): break\n"
        "    time.sleep(0.05)\n"
        "print(kernels.ready())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(real_store)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]


def test_the_numpy_path_reuses_a_gather_only_for_the_same_rows() -> None:
    """The kept entries of the last rows serve a second query on those rows, and never other rows."""
    import types

    rng = np.random.default_rng(8)
    indptr, terms, unit = _forward(rng, rng.integers(0, 200, size=300), vocab=400)
    a, b = rng.choice(300, size=120, replace=False), rng.choice(300, size=120, replace=False)
    cache = types.SimpleNamespace()
    with kernels.numpy_only():
        for rows in (a, a, b, a):
            dense, bits = _query(rng, 400, 60)
            got = kernels.score_rows(indptr, terms, unit, rows.astype(np.int64), dense, bits, cache)
            want = kernels.score_rows(indptr, terms, unit, rows.astype(np.int64), dense, bits)
            assert np.array_equal(got, want)
            assert np.array_equal(cache.rows[0], rows)


@pytest.mark.parametrize("large", [True, False])
def test_serve_warms_the_compiled_loops_up_for_a_large_store_only(real_store, large: bool) -> None:
    """``paperscope serve``'s warm-up loads them when the store has ``COMPILED_ROWS`` papers (the
    bundled store stands in for one by lowering it), and leaves a small store to the numpy loops."""
    pytest.importorskip("starlette")
    code = (
        "import sys\n"
        "from paperscope import kernels\n"
        "from paperscope.serve import app as served\n"
        "served.COMPILED_ROWS = 1 if sys.argv[2] == 'large' else 10**9\n"
        "site = served.create_app(sys.argv[1])\n"
        "print(kernels.ready())\n"
        "served.warm(site)\n"
        "print(kernels.ready())\n"
        "site.state.live.close()\n"
    )
    size = "large" if large else "small"
    out = subprocess.run(
        [sys.executable, "-c", code, str(real_store), size], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", str(large)]


def test_the_compiled_path_scores_a_kept_copy_of_the_same_rows_only(
    compiled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm pool's entries are copied out once and the copy serves the next call on the same rows
    (query expansion scores the first pass's pool again): numpy's bits every time, never another
    call's rows, one copy per change of rows."""
    import types

    from paperscope import jitted

    monkeypatch.setattr(pagein, "COLD_SECONDS_PER_BYTE", 1.0)  # every head counts as warm here
    copies: list[int] = []
    real_gather = jitted.gather

    def gather(indptr, terms, unit, rows, offsets, g_terms, g_unit) -> None:  # noqa: ANN001
        copies.append(len(rows))
        real_gather(indptr, terms, unit, rows, offsets, g_terms, g_unit)

    monkeypatch.setattr(jitted, "gather", gather)
    rng = np.random.default_rng(9)
    indptr, terms, unit = _forward(rng, rng.integers(0, 300, size=400), vocab=70_000)
    a, b, c = (np.sort(rng.choice(400, size=n, replace=False)).astype(np.int64) for n in (150, 90, 150))
    cache = types.SimpleNamespace()
    for rows in (a, a, c, b, a, a):  # c: as many rows as a, other rows
        dense, bits = _query(rng, 70_000, 200)
        got = kernels.score_rows(indptr, terms, unit, rows, dense, bits, cache)
        with kernels.numpy_only():
            want = kernels.score_rows(indptr, terms, unit, rows, dense, bits)
        assert np.array_equal(got, want), np.abs(got - want).max()
        assert np.array_equal(cache.gathered[0], rows)
    assert copies == [150, 150, 90, 150]  # a, c, b, a again: the repeats read the copy
