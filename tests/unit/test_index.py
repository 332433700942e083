"""Index type by size or by force, recall measured at build time and recorded, parameters on load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import FakeEmbedder
from synthetic import clustered

from paperscope import index, rank
from paperscope.errors import InvalidArgument
from paperscope.explorer import Explorer
from paperscope.lexical import LexicalIndex
from paperscope.pipeline import build
from paperscope.rank import IndexDisagrees, Query, Ranker
from paperscope.store import Store


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(20_000, 384, seed=3)


def test_size_rule_and_list_count() -> None:
    assert index.choose_type(1) == "flat"
    assert index.choose_type(index.FLAT_MAX) == "flat"
    assert index.choose_type(index.FLAT_MAX + 1) == "ivf"
    assert index.ivf_lists(1_000_000) == 2000
    # Never fewer than 39 training points per list (FAISS's minimum), never zero lists.
    assert index.ivf_lists(400) == 10 and index.ivf_lists(5) == 1
    with pytest.raises(ValueError, match="index type must be one of flat, ivf, hnsw, got 'foo'"):
        index.check_type("foo")


def brute_recall(idx: faiss.Index, vectors: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    """Recall@k of idx against a plain numpy scan, self excluded (independent of index.recall).

    A lossy index (4- or 8-bit lists) is read as queries read it: its first index.refine_depth
    rows, in the order of their exact cosines."""
    sims = vectors[rows] @ vectors.T
    plain = sims.copy()
    sims[np.arange(len(rows)), rows] = -np.inf
    exact = np.argsort(-sims, axis=1)[:, :k]
    _, got = idx.search(np.ascontiguousarray(vectors[rows]), max(k + 1, index.refine_depth(idx)))
    if index.lossy(idx):
        got = np.stack([g[np.argsort(-plain[i, g], kind="stable")][: k + 1] for i, g in enumerate(got)])
    found = [set(g[g != r][:k].tolist()) & set(e.tolist()) for g, e, r in zip(got, exact, rows)]
    return sum(map(len, found)) / (k * len(rows))


@pytest.mark.parametrize("kind,param", [("ivf", "nprobe"), ("hnsw", "efSearch")])
def test_forced_type_records_recall_and_answers_after_load(
    tmp_path: Path, vectors: np.ndarray, kind: str, param: str
) -> None:
    idx, info = index.build(vectors, kind)
    assert info["type"] == kind and info["chosen_by"] == "user"
    assert info["faiss"] == type(idx).__name__
    assert info["recall_queries"] == index.RECALL_QUERIES
    assert info["recall_at_10"] >= 0.9
    assert param in info["params"] and info["build_seconds"] >= 0
    # The recorded recall is the last point of the tuning curve, for the parameter kept.
    assert info["tuning"][param][str(info["params"][param])] == info["recall_at_10"]

    index.save(idx, tmp_path / "i.faiss")
    loaded = index.load(tmp_path / "i.faiss", len(vectors), vectors.shape[1], info)
    assert type(loaded) is type(idx)
    # Queries not used for tuning: the recall holds on fresh ones, measured independently.
    fresh = np.random.default_rng(99).choice(len(vectors), size=300, replace=False)
    measured = brute_recall(loaded, vectors, fresh)
    assert measured >= 0.9
    assert abs(measured - info["recall_at_10"]) < 0.05


def test_flat_is_exact(vectors: np.ndarray) -> None:
    idx, info = index.build(vectors[:3000])
    assert (info["type"], info["chosen_by"], info["recall_at_10"]) == ("flat", "size", 1.0)
    assert brute_recall(idx, vectors[:3000], np.arange(0, 3000, 37)) == 1.0


def test_measured_recall_matches_a_plain_scan(vectors: np.ndarray) -> None:
    # index.recall (used at build time) agrees with the independent numpy version.
    idx, _ = index.build(vectors, "ivf")
    rows = np.arange(0, len(vectors), 97)
    truth = index.exact_neighbours(vectors, rows, 10)
    for nprobe in (1, 4):
        index.configure(idx, {"params": {"nprobe": nprobe}})
        assert index.recall(idx, vectors, rows, truth) == pytest.approx(brute_recall(idx, vectors, rows), abs=1e-3)


@pytest.mark.parametrize(
    "kind,param,attr",
    [
        ("ivf", "nprobe", lambda i: faiss.extract_index_ivf(i).nprobe),
        ("hnsw", "efSearch", lambda i: faiss.downcast_index(i).hnsw.efSearch),
    ],
)
def test_load_applies_the_manifest_parameters_not_the_files(
    tmp_path: Path, vectors: np.ndarray, kind: str, param: str, attr: object
) -> None:
    idx, info = index.build(vectors[:4000], kind)
    index.configure(idx, {"params": {param: 3}})  # what the file will carry
    index.save(idx, tmp_path / "i.faiss")
    info["params"][param] = 7
    loaded = index.load(tmp_path / "i.faiss", 4000, 384, info)
    assert attr(loaded) == 7  # type: ignore[operator]


def test_a_mapped_ivf_index_answers_as_a_read_one_without_prefetch_threads(
    tmp_path: Path, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mapped IVF index reads its lists through OnDiskInvertedLists, which by default starts 32
    # threads per search to prefetch them: at 1M papers that was 38% of a warm search's time.
    # Only 8-bit lists map (a store's until its next drift check); 4-bit fast-scan lists are read.
    idx, info = index.build(vectors[:8000], "ivf", codes="sq8")
    index.save(idx, tmp_path / "i.faiss")
    monkeypatch.setattr(index, "MMAP_BYTES", 0)
    mapped = index.load(tmp_path / "i.faiss", 8000, 384, info, mmap=True)
    read = index.load(tmp_path / "i.faiss", 8000, 384, info)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(mapped).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)
    assert lists.prefetch_nthread == 0
    q = np.ascontiguousarray(vectors[8000:8020], dtype=np.float32)
    got, want = index.search(mapped, q, 10), index.search(read, q, 10)
    assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0])
    fast, fast_info = index.build(vectors[:8000], "ivf")
    index.save(fast, tmp_path / "f.faiss")
    loaded = index.load(tmp_path / "f.faiss", 8000, 384, fast_info, mmap=True)
    assert index.MappedLists.of(loaded) is None  # read whole: nothing to read ahead
    got, want = index.search(loaded, q, 10), index.search(fast, q, 10)
    assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0])


def test_mapped_lists_locate_every_list_and_read_ahead_only_while_searches_are_slow(
    tmp_path: Path, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx, info = index.build(vectors[:8000], "ivf", codes="sq8")
    assert index.MappedLists.of(idx) is None  # read into memory: nothing to read ahead
    index.save(idx, tmp_path / "i.faiss")
    monkeypatch.setattr(index, "MMAP_BYTES", 0)
    mapped = index.load(tmp_path / "i.faiss", 8000, 384, info, mmap=True)
    lists = index.MappedLists.of(mapped)
    assert lists is not None and lists.cold
    od = faiss.downcast_InvertedLists(faiss.extract_index_ivf(mapped).invlists)
    whole = faiss.rev_swig_ptr(od.ptr, od.totsize)
    for i in range(od.nlist):  # the recorded span of each list starts with its codes, then its ids
        size, start, end = od.list_size(i), int(lists.starts[i]), int(lists.ends[i])
        codes = faiss.rev_swig_ptr(od.get_codes(i), size * od.code_size)
        ids = faiss.rev_swig_ptr(od.get_ids(i), size)
        assert np.array_equal(whole[start : start + size * od.code_size], codes)
        capacity_codes = (end - start) // (od.code_size + 8) * od.code_size
        assert np.array_equal(whole[start + capacity_codes : start + capacity_codes + 8 * size].view(np.int64), ids)
    lists.read_ahead(vectors[8000:8002], 4)  # the kernel is asked; the search answers the same
    assert np.array_equal(index.search(mapped, vectors[8000:8002], 10)[1], index.search(idx, vectors[8000:8002], 10)[1])
    lists.searched(0.0001, 4)
    assert not lists.cold
    lists.searched(1.0, 4)
    assert lists.cold


def test_hybrid_probes_a_share_of_the_lists(vectors: np.ndarray) -> None:
    # Hybrid's dense side proposes candidates that are scored exactly after: it probes
    # rank.HYBRID_PROBE of the lists dense mode probes (dense mode keeps its own nprobe).
    idx, info = index.build(vectors[:8000], "ivf")
    lex = LexicalIndex.from_counts([Counter({"x": 1})] * 8000)
    ranker = Ranker(vectors[:8000], idx, lex, probe=0.25)
    q = Query(dense=np.ascontiguousarray(vectors[8000]), lexical=lex.text_vector("x"))
    ivf = faiss.extract_index_ivf(idx)
    full = index.search(idx, vectors[8000:8001], 10)[1][0]
    ivf.nprobe, nprobe = max(1, round(ivf.nprobe * 0.25)), ivf.nprobe
    quarter = index.search(idx, vectors[8000:8001], 10)[1][0]
    ivf.nprobe = nprobe
    assert not np.array_equal(full, quarter)  # the share changes what is found here
    assert ranker.dense_top(q, 10, None, 0.25, exact=False)[0].tolist() == quarter.tolist()
    assert ranker.dense_top(q, 10, None, exact=False)[0].tolist() == full.tolist()
    assert ivf.nprobe == nprobe  # per search, not a change to the shared index
    with pytest.raises(InvalidArgument):
        Ranker(vectors[:8000], idx, lex, probe=0.0)


@pytest.mark.parametrize(
    "codes,faiss_class,share,depth",
    [("pq4fs", "IndexIVFPQFastScan", 0.2, index.REFINE_PQ4), ("sq8", "IndexIVFScalarQuantizer", 0.4, index.REFINE)],
)
def test_ivf_lists_hold_codes_and_dense_mode_scores_exactly(
    tmp_path: Path, vectors: np.ndarray, codes: str, faiss_class: str, share: float, depth: int
) -> None:
    idx, info = index.build(vectors, "ivf", codes=None if codes == index.CODES else codes)
    assert info["faiss"] == faiss_class == type(idx).__name__ and info["params"]["codes"] == codes
    assert index.codes_of(info) == codes and index.refine_depth(idx) == depth
    assert index.lossy(idx) and not index.lossy(index.build(vectors[:3000])[0])
    index.save(idx, tmp_path / "i.faiss")
    # half a byte (pq4fs) or a byte (sq8) per dimension, plus ids and centroids, against four
    assert (tmp_path / "i.faiss").stat().st_size < share * vectors.nbytes
    lex = LexicalIndex.from_counts([Counter({"x": 1})] * len(vectors))
    ranker = Ranker(vectors, idx, lex)
    q = Query(dense=np.ascontiguousarray(vectors[5]), lexical=lex.text_vector("x"), exclude=frozenset([5]))
    allowed = np.ones(len(vectors), dtype=bool)
    allowed[5] = False
    rows, scores = ranker.dense_top(q, 10, allowed)
    # the found rows scored again from the vectors, best first: what a lossy index cannot give
    assert np.allclose(scores, vectors[rows] @ vectors[5], atol=1e-6) and np.all(np.diff(scores) <= 0)
    approx, found = idx.search(np.ascontiguousarray(vectors[5:6]), 11)
    assert not np.allclose(approx[0][1:], vectors[found[0][1:]] @ vectors[5], atol=1e-6)
    exact = np.argsort(-(vectors @ vectors[5]), kind="stable")[1:11]
    assert len(set(rows.tolist()) & set(exact.tolist())) >= 9
    # a stored IndexIVFFlat (stores before round 8) is exact per row and answers as before
    old = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], 20, faiss.METRIC_INNER_PRODUCT)
    old.train(vectors[:4000])
    old.add(vectors)
    assert not index.lossy(old)
    old_rows, old_scores = Ranker(vectors, old, lex).dense_top(q, 10, None)
    assert old_rows.tolist() == old.search(np.ascontiguousarray(vectors[5:6]), 10)[1][0].tolist()


@pytest.mark.parametrize("codes", index.IVF_CODES)
def test_rows_updated_after_a_removal_are_coded_as_a_fresh_build_codes_them(
    tmp_path: Path, vectors: np.ndarray, codes: str
) -> None:
    """FAISS 1.15's 4-bit fast-scan lists kept a moved entry's code in the slot a removal vacated,
    and the next add ORed a new code into it: a quarter of the updated rows lost themselves."""
    n = 8000
    idx, info = index.build(vectors[:n], "ivf", codes=codes)
    index.save(idx, tmp_path / "i.faiss")
    changed = np.arange(0, n, 7)  # rows removed from every list, then added back with new vectors
    new = vectors[:n].copy()
    new[changed] = vectors[n : n + len(changed)]
    updated, _ = index.update(tmp_path / "i.faiss", info, new, changed, n)
    ivf = faiss.extract_index_ivf(updated)
    ivf.nprobe = ivf.nlist  # every list: only the codes decide
    approx, found = updated.search(np.ascontiguousarray(new[changed]), 1)
    assert np.array_equal(found[:, 0], changed)  # 0.25 of them before the fix
    # each code scores its own row within what the per-answer check accepts of its cosine, 1
    assert np.abs(approx[:, 0] - 1.0).max() < index.LOSSY_TOLERANCE
    # the unchanged rows are as they were
    kept = np.setdiff1d(np.arange(0, n, 5), changed)
    assert np.array_equal(updated.search(np.ascontiguousarray(new[kept]), 1)[1][:, 0], kept)


def test_a_lossy_index_that_disagrees_with_the_vectors_is_damage(vectors: np.ndarray) -> None:
    # An index of other vectors than vectors.npy holds (a damaged or mismatched file): its scores for
    # the rows it returns are far from their cosines, beyond what 8-bit coding explains.
    idx, _ = index.build(vectors[::-1].copy(), "ivf")
    lex = LexicalIndex.from_counts([Counter({"x": 1})] * len(vectors))
    q = Query(dense=np.ascontiguousarray(vectors[5]), lexical=lex.text_vector("x"))
    with pytest.raises(IndexDisagrees):
        Ranker(vectors, idx, lex).dense_top(q, 10, None)
    same, _ = index.build(vectors, "ivf")
    Ranker(vectors, same, lex).dense_top(q, 10, None)  # coding error alone stays inside the tolerance


def test_a_text_search_probes_a_multiple_of_the_lists(vectors: np.ndarray) -> None:
    # Free text probes rank.TEXT_PROBE x dense mode's lists; the multiple is capped at every list.
    idx, _ = index.build(vectors[:8000], "ivf")
    ivf = faiss.extract_index_ivf(idx)
    lex = LexicalIndex.from_counts([Counter({"x": 1})] * 8000)
    ranker = Ranker(vectors[:8000], idx, lex)
    q = Query(dense=np.ascontiguousarray(vectors[8000]), lexical=lex.text_vector("x"), text=True)
    nprobe = ivf.nprobe
    ivf.nprobe = 2 * nprobe
    double = index.search(idx, vectors[8000:8001], 50)[1][0]
    ivf.nprobe = nprobe
    # hybrid's candidates: FAISS's own order (exact=False; dense mode re-scores a lossy index's rows)
    assert ranker.dense_top(q, 50, None, 2.0, exact=False)[0].tolist() == double.tolist()
    assert ivf.nprobe == nprobe
    # every list probed: the exact neighbours
    exact = np.argsort(-(vectors[:8000] @ vectors[8000]), kind="stable")[:50]
    assert ranker.dense_top(q, 50, None, 1e9)[0].tolist() == exact.tolist()
    with pytest.raises(InvalidArgument):
        Ranker(vectors[:8000], idx, lex, text_probe=0.0)
    # the default multiple follows the lists' codes: 4-bit lists scan fast and rank coarsely
    assert ranker.text_probe == rank.default_text_probe(idx) == rank.TEXT_PROBE
    sq8, _ = index.build(vectors[:8000], "ivf", codes="sq8")
    assert Ranker(vectors[:8000], sq8, lex).text_probe == rank.TEXT_PROBE_SQ8 != rank.TEXT_PROBE
    assert Ranker(vectors[:8000], sq8, lex, text_probe=3.0).text_probe == 3.0


def _joint_store() -> tuple[np.ndarray, LexicalIndex, Query]:
    """Rows 0-9 best on the dense side only, rows 10-19 on the lexical side only, row 20 good on both."""
    rng = np.random.default_rng(0)
    dim = 40
    vecs = rng.standard_normal((200, dim)) * 0.1
    vecs[:, 0] = 0.0
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for j in range(10):
        vecs[j] = 0.0
        vecs[j, 0], vecs[j, 1 + j] = 0.8, 0.6
        vecs[10 + j] = 0.0
        vecs[10 + j, 11 + j] = 1.0
    vecs[20] = 0.0
    vecs[20, 0], vecs[20, 39] = 0.78, np.sqrt(1 - 0.78**2)
    counts = [Counter({"a": 1})] * 10 + [Counter({"lora": 3})] * 10 + [Counter({"lora": 1, "adapter": 1})]
    counts += [Counter({f"f{i}": 1, f"g{i % 7}": 1}) for i in range(179)]
    lex = LexicalIndex.from_counts(counts)
    q = Query(dense=np.eye(dim, dtype=np.float32)[0], lexical=lex.text_vector("lora"), text=True)
    return vecs.astype(np.float32), lex, q


def test_hybrid_pool_takes_papers_good_on_both_sides_from_the_deep_dense_rows() -> None:
    # Row 20 is 11th on the dense side and 11th on the lexical side, and the best fused: with a
    # pool of 10 per side only the joint candidates (dense rows read to `joint`, fused with their
    # partial lexical scores) find it.
    vecs, lex, q = _joint_store()
    idx, _ = index.build(vecs, "flat")
    exact = Ranker(vecs, idx, lex, pool=10).rank_exact(q, 1)
    assert [r.row for r in exact] == [20]
    joint = Ranker(vecs, idx, lex, pool=10, joint=50).rank(q, 1, "hybrid")
    assert [r.row for r in joint] == [20] and joint[0].z == pytest.approx(exact[0].z)
    alone = Ranker(vecs, idx, lex, pool=10, joint=0).rank(q, 1, "hybrid")
    assert [r.row for r in alone] != [20]


@pytest.fixture(scope="module")
def drift_pool() -> np.ndarray:
    """Clustered 64-d rows in random order: the first 6,000 train an index, later ones are drawn alike."""
    pool = clustered(12_100, 64, seed=5)
    return pool[np.random.default_rng(5).permutation(len(pool))]


def updated_and_checked(
    tmp_path: Path, pool: np.ndarray, new: np.ndarray, changed: np.ndarray, codes: str | None = None
) -> tuple[dict[str, object], dict[str, object]]:
    """Train on pool[:6000], update with ``new`` (rows ``changed`` replaced or appended), check."""
    n = 6000
    idx, info = index.build(pool[:n], "ivf", codes=codes)
    assert info["trained_rows"] == n and info["list_imbalance"] >= 1.0
    index.save(idx, tmp_path / "i.faiss")
    updated, block = index.update(tmp_path / "i.faiss", info, new, changed, n)
    assert index.check_due(block)  # every run here changes more than CHECK_FRACTION of the rows
    return block, index.drift_check(updated, block, new, changed)


@pytest.mark.parametrize("codes", index.IVF_CODES)
def test_a_check_keeps_the_centroids_when_edits_are_drawn_like_the_corpus(
    tmp_path: Path, drift_pool: np.ndarray, codes: str
) -> None:
    n, changed = 6000, np.arange(0, 6000, 8)  # 12.5% of the rows
    new = drift_pool[:n].copy()
    new[changed] = drift_pool[n : n + len(changed)]
    if codes != index.CODES:  # an index of other codes than the build's is retrained ("format")
        _, check = updated_and_checked(tmp_path, drift_pool, new, changed, codes)
        assert (check["decision"], check["reasons"]) == ("retrain", ["format"])
        return
    block, check = updated_and_checked(tmp_path, drift_pool, new, changed, codes)
    assert check["decision"] == "kept" and check["reasons"] == []
    assert check["recall_at_10"] >= index.TARGET_RECALL and check["recall_queries"] == index.RECALL_QUERIES
    assert check["changed_queries"] >= index.RECALL_QUERIES // 2  # the changed rows are queried first
    assert check["miscoded"] <= index.MISCODED_SHARE and check["code_error"] == index.CODE_ERROR
    assert check["list_imbalance"] <= index.IMBALANCE_GROWTH * check["trained_imbalance"]
    # Deterministic: the same rows give the same figures (only the seconds may differ).
    _, again = updated_and_checked(tmp_path, drift_pool, new, changed)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in check.items() if k != "seconds"}
    # Kept: recorded, and the count since the check starts again (the count since training goes on).
    kept = index.checked(block, check)
    inc = kept["incremental"]
    assert (inc["rows_since_check"], inc["rows_since_training"]) == (0, len(changed))
    assert inc["checked"]["decision"] == "kept" and not index.check_due(kept)


@pytest.mark.parametrize("drift", ["region", "pile", "size"])
def test_a_check_retrains_an_index_whose_data_drifted(tmp_path: Path, drift_pool: np.ndarray, drift: str) -> None:
    n, changed = 6000, np.arange(0, 6000, 8)
    new = drift_pool[:n].copy()
    if drift == "region":  # rows from three clusters the centroids never saw
        new[changed] = clustered(len(changed), 64, seed=77, clusters=3)
        want = {"coding", "recall"}
    elif drift == "pile":  # rows piled next to one stored row: into one list
        noise = np.random.default_rng(8).standard_normal((len(changed), 64)).astype(np.float32) * 0.006
        x = drift_pool[1] + noise
        new[changed] = x / np.linalg.norm(x, axis=1, keepdims=True)
        want = {"imbalance", "recall"}
    else:  # the corpus more than doubled, drawn alike: lists sized for half of it
        new, changed = drift_pool[: 2 * n + 1], np.arange(n, 2 * n + 1)
        want = {"size"}
    _, check = updated_and_checked(tmp_path, drift_pool, new, changed)
    assert check["decision"] == "retrain" and set(check["reasons"]) == want, check
    if drift == "size":
        assert "recall_at_10" not in check  # nothing else measured
    else:
        assert (check["recall_at_10"] < index.TARGET_RECALL - index.RECALL_MARGIN) == ("recall" in want)


def test_a_check_retrains_an_index_of_the_older_format(tmp_path: Path, drift_pool: np.ndarray) -> None:
    """Stores built before round 8 hold IndexIVFFlat; their first check retrains them as pq4fs."""
    n = 6000
    _, info = index.build(drift_pool[:n], "ivf")
    flat = faiss.IndexIVFFlat(faiss.IndexFlatIP(64), 64, info["params"]["nlist"], faiss.METRIC_INNER_PRODUCT)
    flat.train(drift_pool[:n])
    flat.add(drift_pool[:n])
    index.save(flat, tmp_path / "old.faiss")
    old = {k: v for k, v in info.items() if k not in ("trained_rows", "list_imbalance")}  # not recorded then
    assert index.trained_rows(old) == pytest.approx(n, rel=0.02)  # from its list count
    changed = np.arange(0, n, 8)
    updated, block = index.update(tmp_path / "old.faiss", old, drift_pool[:n], changed, n)
    check = index.drift_check(updated, block, drift_pool[:n], changed)
    assert (check["decision"], check["reasons"]) == ("retrain", ["format"])


def test_pipeline_records_index_block_and_links_unchanged_vectors(
    tmp_path: Path, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    first = Store(store).require_current()
    block = first.manifest["index"]
    assert (block["type"], block["chosen_by"], block["recall_at_10"]) == ("flat", "size", 1.0)

    # Forcing another type on an unchanged corpus rebuilds the index only (no embedding).
    r = build(None, store, embedder=fake, index_type="hnsw")
    assert not r.nothing_to_do and r.embedded == 0
    gen = Store(store).require_current()
    block = gen.manifest["index"]
    assert (block["type"], block["chosen_by"], block["faiss"]) == ("hnsw", "user", "IndexHNSWFlat")
    assert 0.9 <= block["recall_at_10"] <= 1.0 and block["recall_queries"] == 432
    ex = Explorer(store, embedder=fake)
    assert ex.index.faiss.hnsw.efSearch == block["params"]["efSearch"]
    hits = ex.related("Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer", k=10)
    assert len(hits) == 10 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # Same type again, or no type: nothing to do; the forced type is kept.
    assert build(None, store, embedder=fake, index_type="hnsw").nothing_to_do
    assert build(None, store, embedder=fake).nothing_to_do

    # Identical vectors (a metadata-only change): the index file is hard-linked, its block kept.
    p = next(ex.papers())
    (tmp_path / "meta.jsonl").write_text(
        json.dumps({"id": p.id, "title": p.title, "abstract": p.abstract, "date": "1999-01-01"}) + "\n"
    )
    r = build([tmp_path / "meta.jsonl"], store, embedder=fake)
    assert (r.updated, r.embedded) == (1, 0)
    linked = Store(store).require_current()
    assert os.stat(linked.file("index.faiss")).st_ino == os.stat(gen.file("index.faiss")).st_ino
    assert linked.manifest["index"]["type"] == "hnsw"
    assert linked.manifest["index"]["linked_from"] == gen.name

    # Above the size threshold the rule picks IVF.
    monkeypatch.setattr(index, "FLAT_MAX", 100)
    build(None, tmp_path / "t", embedder=fake)
    auto = Store(tmp_path / "t").require_current().manifest["index"]
    assert (auto["type"], auto["chosen_by"]) == ("ivf", "size") and auto["params"]["nlist"] == index.ivf_lists(432)
    assert Explorer(tmp_path / "t", embedder=fake).index.faiss.nprobe == auto["params"]["nprobe"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paperscope.cli", *args], capture_output=True, text=True, env=os.environ, timeout=120
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--index-type", "foo"], "'foo' is not one of 'auto', 'flat', 'ivf', 'hnsw'"),
        (["--engine", "foo"], "'foo' is not one of 'local', 'ray'"),
    ],
)
def test_bad_index_options_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = cli("index", "--store", str(tmp_path / "s"), *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert not (tmp_path / "s").exists()


def test_engine_ray_without_ray_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    # A directory earlier on sys.path with a ray package that fails to import, as if not installed.
    fake_site = tmp_path / "site"
    (fake_site / "ray").mkdir(parents=True)
    (fake_site / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "paperscope.cli", "index", "--store", str(tmp_path / "s"), "--engine", "ray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and 'pip install "paperscope[ray]"' in out.stderr
    assert not (tmp_path / "s").exists()


def test_info_shows_the_index_block(tmp_path: Path, fake: FakeEmbedder) -> None:
    build(None, tmp_path / "s", embedder=fake, index_type="ivf")
    block = Store(tmp_path / "s").require_current().manifest["index"]
    out = cli("info", "--store", str(tmp_path / "s"))
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("index"))
    assert f"nprobe={block['params']['nprobe']}" in line and f"recall@10 {block['recall_at_10']:.3f}" in line
