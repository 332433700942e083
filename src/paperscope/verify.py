"""Store integrity: the cheap checks every open makes, and the full digest check of ``paperscope verify``.

Two levels, because hashing is the one check whose cost grows with the store:

* **on open** (always): CURRENT names a generation that exists; the manifest parses, carries
  the keys a reader needs and matches its own seal (``manifest_sha256``, a hash of the rest of
  the manifest); every file exists with the size the manifest records. A generation whose
  files total at most :data:`OPEN_HASH_LIMIT` bytes (about 10k papers) is also checked
  against the manifest's digest per file: a few milliseconds that make every byte count.
  Loaders then check headers, dtype, shape, dimension and FAISS ``ntotal``/``d`` (store.py,
  index.py, lexical.py), and queries refuse non-finite scores.
* **verify** (on request, and by every build before it reuses the previous generation):
  every file's digest against the manifest, plus the saved topic map.

The digest is XXH3-128 (``files.STORE_DIGEST``); a file a store written before round 14 recorded
with sha256 (or carried since, as a hard link) is checked with sha256.

Damage in the payload of a large store's files (a flipped bit inside a float) is therefore
found by ``paperscope verify`` and by the next ``paperscope index``, not by every query.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperscope.errors import REPAIR, DamagedError, StoreError
from paperscope.files import file_digest, recorded_digest

# Files of a generation hashed on every open when their total size is at most this.
OPEN_HASH_LIMIT = 16 * 2**20
SEAL = "manifest_sha256"
GENERATION_NAME = re.compile(r"^g\d{6}$")


def seal_of(doc: dict[str, Any]) -> str:
    """sha256 of a JSON document without its seal, in a canonical form (key order, spacing)."""
    body = {k: v for k, v in doc.items() if k != SEAL}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def sealed(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its seal added."""
    return {**doc, SEAL: seal_of(doc)}


def check_seal(doc: dict[str, Any], path: Path, repair: str = REPAIR) -> None:
    """StoreError naming ``path`` if the document does not match its seal (documents without one pass)."""
    if SEAL in doc and doc[SEAL] != seal_of(doc):
        raise DamagedError(path, f"damaged (content does not match its {SEAL})", repair)


def check_manifest(manifest: Any, path: Path) -> None:
    """The keys and types every reader relies on, so a damaged manifest is named, not a KeyError."""

    def bad(what: str) -> DamagedError:
        return DamagedError(path, f"damaged ({what})")

    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    check_seal(manifest, path)
    model, counts, files = manifest.get("model"), manifest.get("counts"), manifest.get("files")
    if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
        raise bad("no model fingerprint")
    if not isinstance(model.get("dimension"), int) or not 0 < model["dimension"] <= 65536:
        raise bad(f"model dimension {model.get('dimension')!r}")
    if not isinstance(counts, dict) or not isinstance(counts.get("papers"), int) or counts["papers"] < 0:
        raise bad(f"paper count {counts.get('papers') if isinstance(counts, dict) else counts!r}")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("bytes"), int) and recorded_digest(v) is not None
        for v in files.values()
    ):
        raise bad("file list")
    if manifest.get("index") is not None and not isinstance(manifest["index"], dict):
        raise bad("index block")


def check_files(gen_dir: Path, manifest: dict[str, Any], *, hash_limit: int | None = None) -> None:
    """Sizes always; digests too when the files total at most ``hash_limit`` bytes
    (default :data:`OPEN_HASH_LIMIT`). Raises StoreError naming the first damaged file."""
    hash_limit = OPEN_HASH_LIMIT if hash_limit is None else hash_limit
    files: dict[str, dict[str, Any]] = manifest["files"]
    vectors = "vectors-base.npy" if "vectors-base.npy" in files else "vectors.npy"  # paperscope.overlay
    for name in ("papers.sqlite", vectors, "index.faiss"):
        if name not in files:
            raise DamagedError(gen_dir / "manifest.json", f"damaged (no entry for {name})")
    total = 0
    for name, meta in files.items():
        path = gen_dir / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DamagedError(path, "missing") from None
        if size != meta["bytes"]:
            raise DamagedError(path, f"damaged ({size} bytes, the manifest records {meta['bytes']})")
        total += size
    if total <= hash_limit:
        for name, meta in files.items():
            algorithm, digest = _recorded(meta)
            if file_digest(gen_dir / name, algorithm) != digest:
                raise DamagedError(gen_dir / name, f"damaged ({algorithm} differs from the manifest)")


@dataclass(frozen=True)
class Finding:
    """One checked file: ``ok``, or what is wrong with it."""

    path: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    """What ``paperscope verify`` found; ``ok`` when every file matches the manifest."""

    store: str
    generation: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "generation": self.generation,
            "ok": self.ok,
            "files": [{"path": f.path, "ok": f.ok, "detail": f.detail} for f in self.findings],
        }


def verify(store: Any, *, include_map: bool = True) -> VerifyReport:
    """Check every file of the live generation (and the saved map) against its recorded digest.

    ``store`` is a :class:`~paperscope.store.Store`. Never raises for damage: every problem is
    a finding, so one run lists all of them. ``include_map=False`` leaves the map out (a build
    checks what it will reuse: the generation, never the map).
    """
    report = VerifyReport(store=str(store.path), generation=None)
    add = report.findings.append
    pointer = store.path / "CURRENT"
    if not pointer.is_file() and any(store.generations_dir.glob("g[0-9]*")):
        add(Finding(str(pointer), False, f"missing, but generations exist; {REPAIR}"))
        return report
    if not pointer.is_file():
        add(
            Finding(
                str(store.path),
                False,
                f"no paperscope store here (no CURRENT); build one with: paperscope index --store {store.path}",
            )
        )
        return report
    try:
        gen = store.current()
    except StoreError as e:
        add(Finding(str(e).split(": ", 1)[0], False, str(e).split(": ", 1)[-1]))
        return report
    if gen is None:
        return report
    report.generation = gen.name
    add(Finding(str(pointer), True, f"names {gen.name}"))
    add(
        Finding(
            str(gen.file("manifest.json")),
            True,
            "sealed" if SEAL in gen.manifest else "parses (no seal: written by an older paperscope)",
        )
    )
    for name, meta in gen.manifest["files"].items():
        path = gen.file(name)
        if not path.is_file():
            add(Finding(str(path), False, f"missing; {REPAIR}"))
            continue
        algorithm, recorded = _recorded(meta)
        size = path.stat().st_size
        if size != meta["bytes"]:  # a size that differs needs no read of the file
            add(Finding(str(path), False, f"{size} bytes, the manifest records {meta['bytes']}; {REPAIR}"))
        elif (digest := file_digest(path, algorithm)) != recorded:
            add(Finding(str(path), False, f"{algorithm} differs from the manifest; {REPAIR}"))
        else:
            add(Finding(str(path), True, f"{algorithm} {digest[:12]}, {size} bytes"))
    if include_map:
        _verify_map(store, add)
    return report


def _verify_map(store: Any, add: Any) -> None:
    if not (store.map_dir / "CURRENT").is_file():
        return
    try:
        store.check_map()  # every byte hashed, the arrays not loaded (1.3 GB at 1M papers)
    except StoreError as e:
        where, _, what = str(e).partition(": ")
        add(Finding(where, False, what))
        return
    add(Finding(str(store.map_dir), True, "map.json sealed, arrays.npz matches its digest"))


def _recorded(meta: dict[str, Any]) -> tuple[str, str]:
    """A manifest entry's (algorithm, digest); :func:`check_manifest` has refused entries without one."""
    recorded = recorded_digest(meta)
    assert recorded is not None
    return recorded
