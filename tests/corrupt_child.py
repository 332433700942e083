"""Run every command against copies of a store with one file damaged; print one JSON line per case.

    python corrupt_child.py CLEAN_STORE WORKDIR TARGET

Runs in its own process so that a segfault in FAISS or SQLite shows up as the child's exit
code instead of killing the test run. Each case runs twice: as is (a small store is hashed on
open) and "cheap", with the digest check on open disabled as for a store above
verify.OPEN_HASH_LIMIT, so that the structural and per-query checks alone are exercised.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeEmbedder  # noqa: E402

import paperscope.verify  # noqa: E402
from paperscope.cli import main  # noqa: E402
from paperscope.errors import PaperscopeError  # noqa: E402
from paperscope.explorer import Explorer  # noqa: E402
from paperscope.pipeline import build  # noqa: E402

KINDS = ("truncate-half", "empty", "flip-header", "flip-middle", "flip-end", "delete")
PROBE = "t-7f67adeb2bd5"  # Tensor Programs V
COMMANDS = {
    "related": ["related", PROBE, "-k", "5", "--json"],
    "search": ["search", "hyperparameter transfer", "--mode", "lexical", "-k", "5", "--json"],
    "recommend": ["recommend", PROBE, "-k", "5", "--json"],
    "info": ["info", "--json"],
    "eval": ["eval", "LABELS", "--json"],  # a 60-row slice of the shipped theme labels, to stay fast
    "map": ["map", "--json"],
    "verify": ["verify"],
}


def target_path(store: Path, target: str) -> Path:
    if target.startswith("map/"):
        state = (store / "map" / "CURRENT").read_text().strip()
        return store / "map" / ("CURRENT" if target == "map/CURRENT" else f"{state}/{target[4:]}")
    if target == "CURRENT":
        return store / "CURRENT"
    return store / "generations" / (store / "CURRENT").read_text().strip() / target


def corrupt(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "delete":
        path.unlink()
        return
    if kind == "truncate-half":
        data = data[: len(data) // 2]
    elif kind == "empty":
        data = b""
    else:
        at = {"flip-header": min(8, len(data) - 1), "flip-middle": len(data) // 2, "flip-end": len(data) - 2}[kind]
        at = max(at, 0)
        data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
    path.unlink()  # index.faiss may be hard-linked into another generation: never write through
    path.write_bytes(data)


LABELS = Path()


def run(args: list[str], store: Path) -> tuple[int, str, str, str | None]:
    args = [str(LABELS) if a == "LABELS" else a for a in args]
    r = CliRunner().invoke(main, [*args, "--store", str(store)])
    crash = None
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        crash = f"{type(r.exception).__name__}: {r.exception}"
    return r.exit_code, r.stdout, r.stderr, crash


def outcome(name: str, clean: tuple[int, str], got: tuple[int, str, str, str | None], path: Path) -> str:
    code, out, err, crash = got
    if crash:
        return "CRASH " + crash[:200]
    if name == "verify":
        if code == 1 and f"DAMAGED  {path}:" in out:
            return "reported"
        return "ok" if code == 0 else f"verify exit {code}: {out[-200:]}"
    if code == 0:
        if name == "map":  # timings differ run to run; compare what the map is
            same = json.loads(out)["topics"] == json.loads(clean[1])["topics"]
        elif name == "info":
            same = json.loads(out)["files"] == json.loads(clean[1])["files"]
        else:
            same = out == clean[1]
        return "same answer" if same else "WRONG: answer changed"
    line = err.strip()
    one = len(line.splitlines()) == 1 and "Traceback" not in err
    names = path.name in line
    repair = "paperscope index --rebuild" in line or "paperscope map --refit" in line
    if code == 2 and one and names and repair:
        return "error names file + repair"
    return f"BAD ERROR (exit {code}): {line[:200]}"


def main_(clean: Path, work: Path, target: str, cheap: bool, baseline: dict[str, tuple[int, str]]) -> None:
    paperscope.verify.OPEN_HASH_LIMIT = 0 if cheap else LIMIT
    for kind in KINDS:
        store = work / f"{target.replace('/', '_')}-{kind}{'-cheap' * cheap}"
        shutil.copytree(clean, store)
        path = target_path(store, target)
        corrupt(path, kind)
        row: dict[str, str] = {}
        try:
            Explorer(store).related(PROBE, k=5)
            row["open"] = "opened"
        except PaperscopeError as e:
            row["open"] = "error names file" if path.name in str(e) else f"BAD ERROR: {e}"
        except Exception as e:  # noqa: BLE001 - any other exception is the finding
            row["open"] = f"CRASH {type(e).__name__}: {e}"[:200]
        for name, args in COMMANDS.items():
            if name == "map" and target == "map/CURRENT" and kind == "delete":
                row[name] = "not run (no saved map: fits afresh, as for a new store)"
                continue
            row[name] = outcome(name, baseline[name], run(args, store), path)
        # index: a plain re-index must refuse to carry the damage forward; --rebuild repairs.
        try:
            report = build(None, store, embedder=FakeEmbedder())
            row["index"] = "nothing to do" if report.nothing_to_do else f"rebuilt {report.generation}"
        except PaperscopeError as e:
            row["index"] = "refused, names file" if path.name in str(e) else f"BAD ERROR: {e}"
        except Exception as e:  # noqa: BLE001
            row["index"] = f"CRASH {type(e).__name__}: {e}"[:200]
        if cheap:  # the build does not depend on the open-time check: repaired once, in the other mode
            row["index --rebuild"] = "repaired (see the hashed run)"
            print(json.dumps({"target": target, "kind": kind, "cheap": cheap, **row}), flush=True)
            shutil.rmtree(store)
            continue
        try:
            build(None, store, embedder=FakeEmbedder(), rebuild=True)
            fixed = run(COMMANDS["related"], store)[:2] == baseline["related"]
            row["index --rebuild"] = "repaired" if fixed else "NOT repaired"
        except Exception as e:  # noqa: BLE001
            row["index --rebuild"] = f"CRASH {type(e).__name__}: {e}"[:200]
        print(json.dumps({"target": target, "kind": kind, "cheap": cheap, **row}), flush=True)
        shutil.rmtree(store)


LIMIT = paperscope.verify.OPEN_HASH_LIMIT

if __name__ == "__main__":
    clean_store = Path(sys.argv[1])
    shipped = (Path(paperscope.verify.__file__).parent / "data" / "labels" / "themes.csv").read_text().splitlines()
    LABELS = Path(sys.argv[2]) / "themes-slice.csv"
    LABELS.write_text("\n".join(shipped[:61]) + "\n")
    expected = {name: run(args, clean_store)[:2] for name, args in COMMANDS.items()}
    for mode in (False, True):
        main_(clean_store, Path(sys.argv[2]), sys.argv[3], mode, expected)
