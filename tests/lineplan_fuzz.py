"""Differential fuzz of the re-index line plan: incremental builds (store A) against full parses (store B).

    PYTHONPATH=src:tests python tests/lineplan_fuzz.py FIRST_SEED LAST_SEED [WORK_DIR]

For each seed: a random small corpus (JSON Lines, gzipped, CSV; ids read twice, lines without an
id, blank lines, BOMs, empty files) and 3-6 random operations (edits, appends, deletions, new
versions, lines moved between files, renamed and moved files, files added, dropped and swapped,
reordered lines, broken JSON, ``prune``), each followed by a build of A (line plan on) and of B
(``paperscope.inputs.MAX_CHANGED_FRACTION`` = -1: every line parsed). Both must store the same
papers (every field, row order) and report the same counts, or fail with the same error. Prints
counts and every divergence. ``ALLOW_EMPTY=0`` makes no empty files; ``PLANFRIENDLY=1`` favours
changes the plan can follow. Not collected by pytest (minutes per few hundred seeds); round 9 ran
3,960 seeds (17,722 operations) with it, which found the three cases now in
tests/unit/test_incremental.py, and 300 seeds after the fix with no divergence.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import os
import random
import shutil
import sys
import traceback
from pathlib import Path

from conftest import FakeEmbedder

import paperscope.inputs as I
from paperscope.explorer import Explorer
from paperscope.pipeline import build

WORDS = "adam sgd lora width depth transfer scaling diffusion attention kernel sparse graph token".split()
DEFAULT_FRAC = I.MAX_CHANGED_FRACTION


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


class State:
    def __init__(self, rng, root: Path):
        self.rng = rng
        self.root = root
        self.files = []  # dict(dir, name, kind, lines[list of dict|str], nonl, bom)
        self.next_id = 0
        self.next_name = 0
        self.prune = False

    def new_record(self, pid=None):
        rng = self.rng
        if pid is None:
            pid = f"p{self.next_id}"
            self.next_id += 1
        r = {}
        if rng.random() < 0.08:
            pass  # no id: derived from title
        else:
            r["id"] = pid
        r["title"] = f"Paper {pid} on {words(rng, 2)}"
        r["abstract"] = f"topic {words(rng, 12)}"
        if rng.random() < 0.3:
            r["date"] = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        if rng.random() < 0.3:
            r["authors"] = [f"A{rng.randint(0, 9)}" for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.15:
            r["upvotes"] = rng.randint(0, 50)
        if rng.random() < 0.1:
            r["categories"] = ["cs.LG"]
        return r

    def new_name(self, kind):
        self.next_name += 1
        ext = {"jsonl": ".jsonl", "gz": ".jsonl.gz", "csv": ".csv"}[kind]
        return f"f{self.next_name}{ext}"

    def new_file(self, n, kind=None):
        rng = self.rng
        kind = kind or rng.choice(["jsonl", "jsonl", "gz"])
        lines = []
        for _ in range(n):
            lines.append(self.new_record())
            if rng.random() < 0.05:
                lines.append("")
        d = rng.choice(["d0", "d1", "d2"])
        return {
            "dir": d,
            "name": self.new_name(kind),
            "kind": kind,
            "lines": lines,
            "nonl": rng.random() < 0.1,
            "bom": False,
        }

    def path(self, f):
        return self.root / "in" / f["dir"] / f["name"]

    def write(self):
        for f in self.files:
            p = self.path(f)
            p.parent.mkdir(parents=True, exist_ok=True)
            if f["kind"] == "csv":
                buf = io.StringIO()
                w = csv.writer(buf, lineterminator="\n")
                w.writerow(["id", "title", "abstract"])
                for r in f["lines"]:
                    if isinstance(r, dict):
                        w.writerow([r.get("id", ""), r["title"], r["abstract"]])
                p.write_text(buf.getvalue(), encoding="utf-8")
                continue
            out = [json.dumps(r) if isinstance(r, dict) else r for r in f["lines"]]
            text = "\n".join(out) + ("" if f["nonl"] or not out else "\n")
            data = text.encode("utf-8")
            if f["bom"] and data:
                data = b"\xef\xbb\xbf" + data
            if f["kind"] == "gz":
                data = gzip.compress(data, mtime=0)
            p.write_bytes(data)

    def paths(self):
        return [self.path(f) for f in self.files]

    def recs(self, jsonl_only=False):
        return [
            (fi, li)
            for fi, f in enumerate(self.files)
            for li, r in enumerate(f["lines"])
            if isinstance(r, dict) and (not jsonl_only or f["kind"] != "csv")
        ]


def _swap_two(seq: list, rng: random.Random) -> tuple[int, int]:
    """Swap two random places of ``seq`` (at least two long); their positions."""
    i, j = rng.sample(range(len(seq)), 2)
    seq[i], seq[j] = seq[j], seq[i]
    return i, j


def op(st: State, name: str) -> str | None:
    """Apply an operation; returns a description (or None if not applicable)."""
    rng = st.rng
    fs = st.files
    jl = [i for i, f in enumerate(fs) if f["kind"] != "csv"]
    if name == "edit":
        rs = st.recs()
        if not rs:
            return None
        fi, li = rng.choice(rs)
        r = fs[fi]["lines"][li]
        what = rng.choice(["abstract", "title", "date", "authors", "drop_date", "upvotes"])
        if what == "abstract":
            r["abstract"] = r["abstract"] + " edited " + words(rng, 2)
        elif what == "title":
            r["title"] = r["title"] + " v" + str(rng.randint(0, 99))
        elif what == "date":
            r["date"] = f"2025-0{rng.randint(1, 9)}-0{rng.randint(1, 9)}"
        elif what == "authors":
            r["authors"] = [f"B{rng.randint(0, 9)}"]
        elif what == "drop_date":
            r.pop("date", None)
            r["x"] = rng.randint(0, 9)
        else:
            r["upvotes"] = rng.randint(0, 99)
        return f"edit {what} {fs[fi]['name']}:{li}"
    if name == "append":
        fi = rng.randrange(len(fs))
        k = rng.randint(1, 4)
        for _ in range(k):
            fs[fi]["lines"].append(st.new_record())
        return f"append {k} to {fs[fi]['name']}"
    if name == "delete":
        rs = st.recs()
        if len(rs) < 5:
            return None
        k = rng.randint(1, 3)
        for fi, li in sorted(rng.sample(rs, k), reverse=True):
            if ALLOW_EMPTY or sum(isinstance(x, dict) for x in fs[fi]["lines"]) > 1:
                del fs[fi]["lines"][li]
        return f"delete {k}"
    if name == "dupver":
        rs = st.recs()
        if not rs:
            return None
        fi, li = rng.choice(rs)
        r = copy.deepcopy(fs[fi]["lines"][li])
        if rng.random() < 0.5:
            r["abstract"] += " version two " + words(rng, 2)
        if rng.random() < 0.5:
            r["date"] = "2026-01-01"
        if rng.random() < 0.3:
            r.pop("authors", None)
            r["authors"] = ["V2"]
        if rng.random() < 0.2:
            r.pop("date", None)
        tgt = rng.randrange(len(fs))
        fs[tgt]["lines"].append(r)
        return f"dupver {r.get('id')} -> {fs[tgt]['name']}"
    if name == "moveblock":
        cand = [i for i in jl if i + 1 < len(fs) and fs[i + 1]["kind"] != "csv"]
        if not cand:
            return None
        i = rng.choice(cand)
        n = len(fs[i]["lines"])
        k = (
            (n if rng.random() < 0.1 else rng.randint(1, max(1, min(5, n))))
            if ALLOW_EMPTY
            else rng.randint(0, max(0, min(5, n - 2)))
        )
        block = fs[i]["lines"][n - k :]
        del fs[i]["lines"][n - k :]
        fs[i + 1]["lines"][:0] = block
        return f"moveblock {k} {fs[i]['name']}->{fs[i + 1]['name']}"
    if name == "rename":
        i = rng.randrange(len(fs))
        old = fs[i]["name"]
        kind = fs[i]["kind"]
        if kind != "csv" and rng.random() < 0.3:
            kind = "gz" if kind == "jsonl" else "jsonl"
            fs[i]["kind"] = kind
        fs[i]["name"] = st.new_name(kind)
        extra = ""
        if rng.random() < 0.4:
            extra = " +" + (op(st, "edit") or "")
        return f"rename {old}->{fs[i]['name']}{extra}"
    if name == "movedir":
        i = rng.randrange(len(fs))
        old = fs[i]["dir"]
        fs[i]["dir"] = rng.choice([d for d in ["d0", "d1", "d2", "d3"] if d != old])
        return f"movedir {fs[i]['name']} {old}->{fs[i]['dir']}"
    if name == "addfile":
        r = rng.random()
        if r < 0.1 and ALLOW_EMPTY:
            f = st.new_file(0, "jsonl")  # empty file
            desc = "addfile empty"
        elif r < 0.3:
            # a file repeating (copies of) existing lines
            rs = st.recs(True)
            f = st.new_file(0)
            f["lines"] = [copy.deepcopy(fs[a]["lines"][b]) for a, b in rng.sample(rs, min(len(rs), 3))]
            desc = "addfile copies"
        else:
            f = st.new_file(rng.randint(1, 6))
            desc = "addfile new"
        pos = rng.randint(0, len(fs))
        fs.insert(pos, f)
        return f"{desc} {f['name']} at {pos}"
    if name == "dropfile":
        if len(fs) < 2:
            return None
        i = rng.randrange(len(fs))
        f = fs.pop(i)
        return f"dropfile {f['name']}"
    if name == "swap":
        if len(fs) < 2:
            return None
        i, j = _swap_two(fs, rng)
        return f"swap {i} {j}"
    if name == "reorder":
        i = rng.randrange(len(fs))
        L = fs[i]["lines"]
        if len(L) < 2:
            return None
        _swap_two(L, rng)
        return f"reorder {fs[i]['name']}"
    if name == "blank":
        i = rng.randrange(len(fs))
        fs[i]["lines"].insert(rng.randint(0, len(fs[i]["lines"])), rng.choice(["", "   ", "\t"]))
        return f"blank {fs[i]['name']}"
    if name == "bom":
        if not jl:
            return None
        i = rng.choice(jl)
        fs[i]["bom"] = not fs[i]["bom"]
        return f"bom {fs[i]['name']} {fs[i]['bom']}"
    if name == "nonl":
        i = rng.randrange(len(fs))
        fs[i]["nonl"] = not fs[i]["nonl"]
        return f"nonl {fs[i]['name']}"
    if name == "samename":
        i = rng.randrange(len(fs))
        f = st.new_file(rng.randint(1, 4), fs[i]["kind"] if fs[i]["kind"] != "csv" else "jsonl")
        f["name"] = fs[i]["name"] if fs[i]["kind"] != "csv" else f["name"]
        f["dir"] = rng.choice([d for d in ["d0", "d1", "d2", "d3"] if d != fs[i]["dir"]])
        fs.insert(rng.randint(0, len(fs)), f)
        return f"samename {f['dir']}/{f['name']}"
    if name == "concat":
        cand = [i for i in jl if i + 1 < len(fs) and fs[i + 1]["kind"] != "csv"]
        if not cand:
            return None
        i = rng.choice(cand)
        fs[i]["lines"] += fs[i + 1]["lines"]
        gone = fs.pop(i + 1)
        if rng.random() < 0.5:
            fs[i]["name"] = st.new_name(fs[i]["kind"])
        return f"concat {gone['name']} into {fs[i]['name']}"
    if name == "split":
        i = rng.randrange(len(fs))
        if fs[i]["kind"] == "csv" or len(fs[i]["lines"]) < 4:
            return None
        k = rng.randint(1, len(fs[i]["lines"]) - 1)
        f = st.new_file(0, rng.choice(["jsonl", "gz"]))
        f["lines"] = fs[i]["lines"][k:]
        del fs[i]["lines"][k:]
        fs.insert(i + 1, f)
        return f"split {fs[i]['name']} at {k} -> {f['name']}"
    if name == "skiprow":
        rs = st.recs(True)
        if not rs:
            return None
        fi, li = rng.choice(rs)
        fs[fi]["lines"][li]["abstract"] = ""
        return f"skiprow {fs[fi]['name']}:{li}"
    if name == "idless":
        rs = st.recs(True)
        if not rs:
            return None
        fi, li = rng.choice(rs)
        fs[fi]["lines"][li].pop("id", None)
        return f"idless {fs[fi]['name']}:{li}"
    raise ValueError(name)


OPS = (
    ["edit"] * 4
    + ["append"] * 2
    + ["delete"] * 2
    + ["dupver"] * 2
    + ["moveblock"] * 3
    + ["rename"] * 2
    + [
        "movedir",
        "addfile",
        "addfile",
        "dropfile",
        "swap",
        "reorder",
        "blank",
        "bom",
        "nonl",
        "samename",
        "skiprow",
        "idless",
        "invalid",
        "prune",
    ]
)
if os.environ.get("PLANFRIENDLY") == "1":
    OPS = (
        ["edit"] * 4
        + ["append"] * 2
        + ["delete"] * 2
        + ["dupver"] * 2
        + ["moveblock"] * 4
        + ["rename"] * 3
        + [
            "movedir",
            "addfile",
            "dropfile",
            "blank",
            "samename",
            "skiprow",
            "idless",
            "concat",
            "concat",
            "split",
            "split",
            "invalid",
        ]
    )


def papers(store: Path):
    if not (store / "current").exists() and not any(store.glob("*")):
        return None
    try:
        with Explorer(store, embedder=FakeEmbedder()) as ex:
            return [
                (
                    p.id,
                    p.title,
                    p.abstract,
                    p.authors,
                    p.authors_count,
                    p.date,
                    p.upvotes,
                    p.organisation,
                    p.categories,
                    p.sources,
                )
                for p in ex.papers()
            ]
    except Exception as e:  # noqa
        return ("ERR", type(e).__name__, str(e))


def do_build(paths, store, full, prune):
    I.MAX_CHANGED_FRACTION = -1.0 if full else FRAC
    try:
        r = build(paths, store, embedder=FakeEmbedder(), prune=prune)
        return ("ok", (r.added, r.changed, r.updated, r.unchanged, r.papers), r)
    except Exception as e:  # noqa
        return ("err", type(e).__name__, str(e))
    finally:
        I.MAX_CHANGED_FRACTION = DEFAULT_FRAC


FRAC = DEFAULT_FRAC
import os

ALLOW_EMPTY = os.environ.get("ALLOW_EMPTY", "1") == "1"
STATS = {"seeds": 0, "ops": 0, "builds": 0, "plan_used": 0, "errors_both": 0, "fewer": 0}
DIVERGENCES = []


def run_seed(seed, root: Path, verbose=False):
    global FRAC
    rng = random.Random(seed)
    FRAC = 1.0 if rng.random() < 0.5 or os.environ.get("PLANFRIENDLY") == "1" else DEFAULT_FRAC
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    st = State(rng, root)
    total = rng.randint(20, 80)
    nfiles = rng.randint(1, 4)
    per = [total // nfiles] * nfiles
    for k in range(nfiles):
        st.files.append(st.new_file(per[k]))
    if rng.random() < 0.25:
        st.files.append(st.new_file(rng.randint(2, 5), "csv"))
    # v1/v2 duplicates in the initial corpus
    for _ in range(rng.randint(0, 3)):
        op(st, "dupver")
    st.write()
    A, B = root / "A", root / "B"
    log = ["initial"]
    ra = do_build(st.paths(), A, False, False)
    rb = do_build(st.paths(), B, True, False)
    if ra[0] != "ok" or rb[0] != "ok":
        if ra[:3] != rb[:3]:
            DIVERGENCES.append((seed, log[:], "initial", ra[:2], rb[:2]))
        return
    nops = rng.randint(3, 6)
    for _ in range(nops):
        while True:
            name = rng.choice(OPS)
            if name == "prune":
                st.prune = True
                name = rng.choice([o for o in OPS if o not in ("prune", "invalid")])
                d = op(st, name)
                if d:
                    d = "prune+" + d
            elif name == "invalid":
                d = "invalid"
            else:
                d = op(st, name)
            if d:
                break
        STATS["ops"] += 1
        log.append(d)
        prune = st.prune
        st.prune = False
        if d == "invalid":
            rs = st.recs(True)
            if not rs:
                continue
            fi, li = rng.choice(rs)
            saved = st.files[fi]["lines"][li]
            st.files[fi]["lines"][li] = json.dumps(saved)[:-3]
            st.write()
            before = (papers(A), papers(B))
            ra = do_build(st.paths(), A, False, prune)
            rb = do_build(st.paths(), B, True, prune)
            after = (papers(A), papers(B))
            STATS["builds"] += 1
            if ra[0] == "err" and rb[0] == "err":
                STATS["errors_both"] += 1
            if ra[:3] != rb[:3] or ra[0] != "err" or before != after:
                DIVERGENCES.append((seed, log[:], "invalid", ra[:3], rb[:3], before == after))
                return
            st.files[fi]["lines"][li] = saved
            st.write()
            continue
        st.write()
        ra = do_build(st.paths(), A, False, prune)
        rb = do_build(st.paths(), B, True, prune)
        STATS["builds"] += 1
        if ra[0] == "err" or rb[0] == "err":
            if ra[:3] != rb[:3]:
                DIVERGENCES.append((seed, log[:], "error", ra[:3], rb[:3]))
                return
            STATS["errors_both"] += 1
            if verbose:
                print(seed, "both err", ra[:3])
            continue
        rep = ra[2]
        if rep.entries_unchanged > 0:
            STATS["plan_used"] += 1
        if rep.entries_read < rb[2].entries_read:
            STATS["fewer"] += 1
        pa, pb = papers(A), papers(B)
        if pa != pb or ra[1] != rb[1]:
            diff = []
            if ra[1] != rb[1]:
                diff.append(("counts", ra[1], rb[1]))
            if pa != pb:
                da = {p[0]: p for p in pa}
                db = {p[0]: p for p in pb}
                for k in sorted(set(da) | set(db)):
                    if da.get(k) != db.get(k):
                        diff.append((k, da.get(k), db.get(k)))
                if [p[0] for p in pa] != [p[0] for p in pb]:
                    diff.append(("roworder",))
            DIVERGENCES.append((seed, log[:], "result", diff[:5]))
            return


if __name__ == "__main__":
    lo, hi = int(sys.argv[1]), int(sys.argv[2])
    base = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("/tmp/adv/run")
    for s in range(lo, hi):
        STATS["seeds"] += 1
        try:
            run_seed(s, base / f"s{s % 4}")
        except Exception:
            DIVERGENCES.append((s, "crash", traceback.format_exc()[-1500:]))
    print(json.dumps(STATS))
    for d in DIVERGENCES:
        print(repr(d)[:3000])
    sys.exit(1 if DIVERGENCES else 0)
