"""One end-to-end run at N papers: generate, index, info, verify, query, map, re-index.

    python benchmarks/scale_run.py --n 100000 --dir /tmp/scale100k [--backend static] [--steps all]

Every step is a whole `paperscope` process (as a user runs it), measured from the outside:
wall time, and peak RSS as the child's own ``VmHWM`` (``/usr/bin/time``'s ``%M``: the time
process is exec'd fresh, so the peak is not inherited from this script). While ``index`` runs,
``/proc/PID/status`` (RSS) is sampled every 0.25 s together with how far the build is: the read
position of the input file (``/proc/PID/fdinfo``) while the papers are read, then the
``embedding`` progress bar (the child's stderr is a pseudo-terminal, so its tqdm bar prints),
which gives RSS at 10%, 50% and 100% of papers read and of papers embedded.

Steps (``--steps``, comma separated, default all): corpus, index, info, verify, cold (``related``
and ``search`` in new processes), warm (one process through the Python API: first and later
queries), rerun (nothing changed), edit (1% of abstracts edited, the snapshot refreshed in place:
same path, as a re-download of arXiv's snapshot), edit_second_file (the edited snapshot under a
second file name, not in ``all``: its lines are compared with the record as well, and every paper
gains the second name among its sources), map (``paperscope map``: UMAP fitted on
a sample, the rest placed; page size); the map runs last (the slowest step at 1M). Results are written to
``DIR/results.json`` after each step, so a run cut short keeps what finished; ``--table``
prints them as the Markdown table of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import re
import select
import shutil
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR = HERE / "arxiv_corpus.py"
BAR = re.compile(rb"embedding:\s+\d+%\|[^\r\n]*?\|\s*(\d+)/(\d+)")
QUERIES = ("diffusion models for 3d shape generation", "low-rank adaptation of language models", "scaling laws")


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _read_pos(pid: int, path: Path) -> int | None:
    """Where ``pid`` is reading ``path`` (compressed bytes), from /proc/PID/fdinfo."""
    path = path.resolve()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                        return int(fh.readline().split()[1])
            except OSError:
                continue
    except OSError:
        pass
    return None


def run(cmd: list[str], log: Path, *, watch: Path | None = None, timeout: float | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time; wall, peak RSS, stdout, and (``watch``) an RSS timeline."""
    tfile = log.with_suffix(".time")
    master, slave = pty.openpty()
    # A pty opens 0 columns wide, and tqdm then draws nothing: give it a terminal's size.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(tfile), *cmd],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "160"},
    )
    os.close(slave)
    out_chunks: list[bytes] = []
    err = bytearray()
    timeline: list[dict] = []
    size = watch.stat().st_size if watch is not None else 0
    child = None
    os.set_blocking(proc.stdout.fileno(), False)
    last = 0.0
    open_fds = {master: "err", proc.stdout.fileno(): "out"}
    while True:
        ready, _, _ = select.select(list(open_fds), [], [], 0.25)
        for fd in ready:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # EIO: the pty's other end is closed
                data = b""
            if not data:
                del open_fds[fd]
            elif open_fds[fd] == "err":
                err += data
            else:
                out_chunks.append(data)
        if child is None:
            kids = _children(proc.pid)
            child = kids[0] if kids else None
        now = time.perf_counter()
        if child is not None and now - last >= 0.25:
            last = now
            st = _status(child)
            if st:
                pos = _read_pos(child, watch) if watch is not None else None
                bars = BAR.findall(bytes(err[-4000:]))
                timeline.append(
                    {
                        "t": round(now - t0, 2),
                        "rss": st.get("VmRSS"),
                        "hwm": st.get("VmHWM"),
                        "read": None if pos is None else round(pos / size, 4),
                        "embedded": None if not bars else [int(bars[-1][0]), int(bars[-1][1])],
                    }
                )
        if proc.poll() is not None and not open_fds:
            break
        if timeout is not None and now - t0 > timeout:
            proc.kill()
    os.close(master)
    wall = time.perf_counter() - t0
    text = tfile.read_text().split()
    stdout = b"".join(out_chunks).decode("utf-8", "replace")
    log.write_bytes(bytes(err) + b"\n--- stdout ---\n" + stdout.encode())
    # /usr/bin/time's first lines may be "Command exited with non-zero status N".
    nums = [x for x in text if re.fullmatch(r"[\d.]+", x)]
    return {
        "cmd": " ".join(cmd),
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(int(nums[-1]) / 1024, 1) if nums else None,
        # CPU seconds (user + system) of the child: on a busy machine the better guide to a quiet run.
        "cpu_s": round(float(nums[-3]) + float(nums[-2]), 2) if len(nums) >= 4 else None,
        "stdout": stdout,
        "timeline": timeline,
    }


def at_fraction(timeline: list[dict], key: str, fractions=(0.1, 0.5, 1.0)) -> dict[str, float | None]:
    """RSS (MB) at the first sample where ``key`` progress reached each fraction.

    The input file is closed as soon as it is read, so "100%" of reading is the last sample that
    still saw it open (reading streams: that is the end of the reading stage).
    """
    out: dict[str, float | None] = {}
    if key == "read":
        seen = [s for s in timeline if s.get("read") is not None]
        if seen:
            seen[-1] = {**seen[-1], "read": 1.0}
            timeline = seen
    for f in fractions:
        hit = None
        for s in timeline:
            v = s.get(key)
            frac = v if key == "read" else (v[0] / v[1] if v else None)
            if frac is not None and frac >= f - 1e-9:
                hit = s
                break
        out[f"{int(f * 100)}%"] = round(hit["rss"] / 2**20, 1) if hit and hit["rss"] else None
    return out


def _json(stdout: str) -> dict:
    try:
        return json.loads(stdout)
    except ValueError:
        return {}


WARM = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
from paperscope import Explorer
ex = Explorer(sys.argv[1])
t_open = time.perf_counter() - t0
ids, queries = json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = {"open_s": t_open}
for name, fn, args in (("related", ex.related, ids), ("search", ex.search, queries)):
    times = []
    for a in args:
        t = time.perf_counter(); hits = fn(a, k=10); times.append(time.perf_counter() - t)
        assert len(hits) == 10, (name, a, len(hits))
    out[name + "_first_s"] = times[0]
    rest = sorted(times[1:])
    out[name + "_median_s"] = statistics.median(rest)
    out[name + "_p95_s"] = rest[min(len(rest) - 1, int(round(0.95 * (len(rest) - 1))))]
    out[name + "_n"] = len(rest)
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True, help="work folder: corpus, store, logs, results.json")
    ap.add_argument("--backend", default="static")
    ap.add_argument("--steps", default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print results.json as a Markdown table and exit")
    a = ap.parse_args(argv)
    d = a.dir.resolve()  # absolute: /proc/PID/fd links are matched against the corpus path
    d.mkdir(parents=True, exist_ok=True)
    results_path = d / "results.json"
    res: dict = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if a.table:
        print(table(res))
        return 0
    steps = "corpus,index,info,verify,cold,warm,rerun,edit,map".split(",") if a.steps == "all" else a.steps.split(",")
    corpus, edited = d / f"arxiv-{a.n}.jsonl.gz", d / f"arxiv-{a.n}-edit1pct.jsonl.gz"
    store = d / "store"
    res.setdefault("n", a.n)
    res["machine"] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }

    def save() -> None:
        results_path.write_text(json.dumps(res, indent=1) + "\n")

    def record(step: str, r: dict, **extra) -> dict:
        r = {k: v for k, v in r.items() if k not in ("stdout", "timeline")} | extra
        r["load_avg_after"] = os.getloadavg()
        res[step] = r
        save()
        print(f"{step}: {json.dumps(r)}", flush=True)
        return r

    py = sys.executable
    ps = [py, "-m", "paperscope.cli"] if not _has_console() else ["paperscope"]
    if "corpus" in steps:
        for path, extra in ((corpus, []), (edited, ["--edit-fraction", "0.01", "--edit-seed", "1"])):
            stats = path.with_name(path.name + ".stats.json")
            if not (path.is_file() and stats.is_file()):
                cmd = [py, str(GENERATOR), str(a.n), str(path), "--seed", str(a.seed), "--stats", str(stats), *extra]
                record(f"corpus:{path.name}", run(cmd, d / f"gen-{path.name}.log"), stats=json.loads(stats.read_text()))
            elif f"corpus:{path.name}" not in res:  # generated beforehand (same command): keep its own figures
                res[f"corpus:{path.name}"] = {"stats": json.loads(stats.read_text()), "reused": True}
                save()
    if "index" in steps:
        if store.exists():
            subprocess.run(["rm", "-rf", str(store)], check=True)
        # No --json: the progress bar (on the pty) is what tells how far embedding is.
        r = run(
            [*ps, "index", str(corpus), "--store", str(store), "--backend", a.backend], d / "index.log", watch=corpus
        )
        info = subprocess.run([*ps, "info", "--store", str(store), "--json"], capture_output=True, text=True)
        rep = _json(info.stdout).get("build") or {}
        (d / "index-timeline.json").write_text(json.dumps(r["timeline"]) + "\n")
        record(
            "index",
            r,
            papers=rep.get("papers"),
            embedded=rep.get("embedded"),
            rss_mb_read=at_fraction(r["timeline"], "read"),
            rss_mb_embedded=at_fraction(r["timeline"], "embedded"),
            report={
                k: rep.get(k)
                for k in (
                    "seconds",
                    "embed_seconds",
                    "model_load_seconds",
                    "merged",
                    "added",
                    "tokenised",
                    "entries_read",
                )
            },
        )
    ids = _sample_ids(store, 21) if store.exists() and steps != ["corpus"] else []
    if "info" in steps:
        record("info", run([*ps, "info", "--store", str(store)], d / "info.log"))
    if "verify" in steps:
        r = run([*ps, "verify", "--store", str(store), "--json"], d / "verify.log")
        record("verify", r, ok=_json(r["stdout"]).get("ok"))
    if "cold" in steps:
        for verb, args in (("related", ids[:3]), ("search", list(QUERIES))):
            rs = [
                run([*ps, verb, q, "--store", str(store), "--json"], d / f"cold-{verb}-{i}.log")
                for i, q in enumerate(args)
            ]
            walls = [x["wall_s"] for x in rs]
            record(
                f"cold_{verb}",
                rs[0],
                walls=walls,
                median_wall_s=statistics.median(walls),
                hits=[len(_json(x["stdout"]) if isinstance(_json(x["stdout"]), list) else []) for x in rs],
            )
    if "warm" in steps:
        queries = [*QUERIES, *(f"{w} models" for w in ("sparse", "robust", "efficient", "graph", "language"))]
        qs = (queries * 3)[:21]
        r = run([py, "-c", WARM, str(store), json.dumps(ids), json.dumps(qs)], d / "warm.log")
        r["cmd"] = "python -c WARM (benchmarks/scale_run.py) STORE IDS QUERIES"
        record("warm", r, figures=_json(r["stdout"].strip().splitlines()[-1] if r["stdout"].strip() else "{}"))
    full = res.get("index", {}).get("wall_s")
    for step, path in (("rerun", corpus), ("edit", edited), ("edit_second_file", edited)):
        if step in steps:
            if step == "edit":
                # A snapshot refresh: the edited snapshot replaces the indexed file at the same
                # path (as re-downloading arXiv's snapshot does), so the re-run can skip unchanged lines.
                r = _in_place(corpus, edited, [*ps, "index", str(corpus), "--store", str(store), "--json"], d)
            else:
                # edit_second_file: the edited snapshot under a second name (a new month's file).
                # Its lines are compared with the record too; every paper gains that name as a source.
                r = run([*ps, "index", str(path), "--store", str(store), "--json"], d / f"{step}.log")
            rep = _json(r["stdout"])
            record(
                step,
                r,
                ratio_to_full=round(r["wall_s"] / full, 4) if full else None,
                nothing_to_do=rep.get("nothing_to_do"),
                embedded=rep.get("embedded"),
                changed=rep.get("changed"),
                expected_edited=(res.get(f"corpus:{edited.name}", {}).get("stats") or {}).get("edited"),
            )
    if "map" in steps:
        out = d / "map-out"
        r = run([*ps, "map", "--store", str(store), "--out", str(out), "--json"], d / "map.log")
        rep = _json(r["stdout"])
        sizes = {p.name: p.stat().st_size for p in out.glob("*") if p.is_file()} if out.is_dir() else {}
        record("map", r, stats=rep.get("stats"), output_bytes=sizes)
    return 0


def _in_place(corpus: Path, edited: Path, cmd: list[str], d: Path) -> dict:
    """Run ``cmd`` with ``edited``'s bytes at ``corpus``'s path, then put the original back."""
    keep = corpus.with_name(corpus.name + ".orig")
    os.replace(corpus, keep)
    try:
        shutil.copyfile(edited, corpus)
        return run(cmd, d / "edit.log")
    finally:
        os.replace(keep, corpus)


def _has_console() -> bool:
    from shutil import which

    return which("paperscope") is not None


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _sample_ids(store: Path, k: int) -> list[str]:
    """``k`` paper ids spread over the store (read through the public API)."""
    code = (
        "import json,sys\nfrom paperscope import Explorer\nex=Explorer(sys.argv[1])\n"
        "ids=[r[0] for r in ex.table.columns('id')]\n"
        "print(json.dumps(ids))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True)
    try:
        ids = json.loads(out.stdout)
    except ValueError:
        return []
    step = max(1, len(ids) // k)
    return ids[::step][:k]


def table(res: dict) -> str:
    """The results as Markdown rows: step, wall, peak RSS, notes."""
    rows = ["| step | wall (s) | CPU (s) | peak RSS (MB) | notes |", "| --- | ---: | ---: | ---: | --- |"]

    def row(name: str, key: str, note: str = "") -> None:
        r = res.get(key)
        if r:
            wall = r.get("median_wall_s", r.get("wall_s"))
            rows.append(f"| {name} | {wall} | {r.get('cpu_s')} | {r.get('peak_rss_mb')} | {note} |")
        else:
            rows.append(f"| {name} | not run | | | {note} |")

    idx = res.get("index", {})
    row(
        "index (full build)",
        "index",
        f"{idx.get('papers')} papers, {idx.get('embedded')} embedded; RSS MB at 10/50/100% read "
        f"{list((idx.get('rss_mb_read') or {}).values())}, embedded {list((idx.get('rss_mb_embedded') or {}).values())}",
    )
    row("info", "info")
    row("verify", "verify", f"ok={res.get('verify', {}).get('ok')}")
    row("related, cold (new process)", "cold_related", f"median of {res.get('cold_related', {}).get('walls')}")
    row("search, cold (new process)", "cold_search", f"median of {res.get('cold_search', {}).get('walls')}")
    w = res.get("warm", {}).get("figures") or {}
    if w:
        row(
            "warm (one process)",
            "warm",
            f"open {w.get('open_s', 0):.2f} s; related first {w.get('related_first_s', 0):.3f} s, then median "
            f"{w.get('related_median_s', 0) * 1000:.1f} ms / p95 {w.get('related_p95_s', 0) * 1000:.1f} ms; search first "
            f"{w.get('search_first_s', 0):.3f} s, then median {w.get('search_median_s', 0) * 1000:.1f} ms / p95 "
            f"{w.get('search_p95_s', 0) * 1000:.1f} ms",
        )
    m = res.get("map", {})
    st = m.get("stats") or {}
    row(
        "map (+ PNG, HTML page)",
        "map",
        f"fitted on {st.get('fitted_on')}, placed {st.get('placed')}; computing {st.get('seconds')} s, "
        f"the rest rendering; outputs {m.get('output_bytes')}",
    )
    full_cpu = idx.get("cpu_s")
    for key, name in (
        ("rerun", "re-run, nothing changed"),
        ("edit", "re-run, 1% abstracts edited (same path)"),
        ("edit_second_file", "re-run, the edited snapshot under a second file name"),
    ):
        r = res.get(key, {})
        if key == "edit_second_file" and not r:
            continue
        cpu_ratio = round(r["cpu_s"] / full_cpu, 4) if r.get("cpu_s") and full_cpu else None
        row(
            name,
            key,
            f"{r.get('ratio_to_full')} of the full build's wall, {cpu_ratio} of its CPU; embedded "
            f"{r.get('embedded')} (edited by the generator: {r.get('expected_edited')}); "
            f"nothing_to_do={r.get('nothing_to_do')}",
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
