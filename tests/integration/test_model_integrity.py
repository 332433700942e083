"""Model integrity: a malformed or mismatched models.lock, and a store from another model or backend.

Each is refused with one line that says what differs and what to run; nothing is embedded
with the wrong model and the store is left as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder
from hostile import snapshot

from paperscope.cli import main
from paperscope.embed.lock import ModelLock, load_lock
from paperscope.errors import ModelLockError, StoreError
from paperscope.explorer import Explorer
from paperscope.files import sha256_file
from paperscope.pipeline import build
from paperscope.verify import sealed

GOOD = json.loads(
    ModelLock(
        name="m",
        source={"kind": "directory", "path": "/nowhere"},
        files={"modules.json": "0" * 64},
        dimension=64,
        max_seq_length=128,
        pooling="mean",
        normalize=True,
    ).to_json()
)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"files": ["modules.json"]}, "files must map file names to sha256"),
        ({"files": {"modules.json": "abc"}}, "files must map file names to sha256"),
        ({"files": {}}, "files must map file names to sha256"),
        ({"dimension": "384"}, "dimension '384' is not a positive integer"),
        ({"dimension": -1}, "dimension -1 is not a positive integer"),
        ({"dimension": True}, "dimension True is not a positive integer"),
        ({"max_seq_length": 0}, "max_seq_length 0"),
        ({"normalize": "yes"}, "normalize 'yes' is not true or false"),
        ({"source": {"kind": "package"}}, "a package source needs package, version"),
        ({"source": {"kind": "ftp", "path": "x"}}, "source kind 'ftp'"),
        ({"source": "dir"}, "source must be an object"),
        ({"template": "{title} {venue}"}, "not a valid format string"),
        ({"template": "{title} {abstract"}, "not a valid format string"),
        ({"template": "{0} {title}"}, "not a valid format string"),
        ({"name": 5}, "name must be a string"),
        ({"unknown_key": 1}, "malformed models.lock"),
    ],
)
def test_malformed_lock_is_one_line_naming_the_file(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = tmp_path / "models.lock"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(ModelLockError) as err:
        load_lock(path)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_malformed_lock_at_the_cli_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=FakeEmbedder())
    before = snapshot(store)
    lock = tmp_path / "models.lock"
    lock.write_text(json.dumps({**GOOD, "files": {"modules.json": 7}}))
    r = CliRunner().invoke(main, ["index", "--store", str(store), "--lock", str(lock), "-q"])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and "malformed models.lock" in r.stderr
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)
    assert snapshot(store) == before


def _rewrite_manifest(store: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change a generation's manifest as a build by another setup would have written it (sealed)."""
    path = store / "generations" / (store / "CURRENT").read_text().strip() / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(sealed({k: v for k, v in manifest.items() if k != "manifest_sha256"})))


@pytest.fixture
def dir_model_store(tmp_path: Path) -> tuple[Path, Path]:
    """A store whose manifest says it was built by a directory model (of the fake's dimension)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    lock = ModelLock(
        name="my-model",
        source={"kind": "directory", "path": str(model)},
        files={"modules.json": sha256_file(model / "modules.json")},
        dimension=64,
        max_seq_length=128,
        pooling="mean",
        normalize=True,
    )
    store = tmp_path / "s"
    build(None, store, embedder=FakeEmbedder())

    def edit(m: dict[str, Any]) -> None:
        m["model"].update(name=lock.name, fingerprint=lock.fingerprint, lock=json.loads(lock.to_json()))

    _rewrite_manifest(store, edit)
    return store, model


def test_query_with_changed_model_files_is_refused_saying_what_to_run(dir_model_store: tuple[Path, Path]) -> None:
    store, model = dir_model_store
    (model / "modules.json").write_text('[{"tampered": true}]')
    with Explorer(store) as ex:
        pid = next(ex.papers()).id
        assert len(ex.related(pid, k=3)) == 3  # stored vectors: no model needed
        with pytest.raises(ModelLockError) as err:
            ex.search("diffusion models", mode="dense")
    text = str(err.value)
    assert str(model / "modules.json") in text and "does not match models.lock" in text
    assert "my-model" in text and "paperscope index --rebuild" in text and "\n" not in text
    r = CliRunner().invoke(main, ["search", "diffusion models", "--store", str(store)])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and "modules.json" in r.stderr


def _claim_backend(store: Path, backend: str) -> None:
    """Make the store's manifest say its vectors came from ``backend`` (fingerprint to match)."""

    def edit(m: dict[str, Any]) -> None:
        lock = ModelLock(**{**m["model"]["lock"], "backend": backend})
        m["model"].update(fingerprint=lock.fingerprint, lock=json.loads(lock.to_json()))

    _rewrite_manifest(store, edit)


def test_store_from_another_backend_is_refused_saying_what_differs(dir_model_store: tuple[Path, Path]) -> None:
    store, _ = dir_model_store

    _claim_backend(store, "onnx-int8")
    with Explorer(store) as ex, pytest.raises(ModelLockError) as err:
        ex.search("diffusion models")
    # onnx-int8 exists, but this store's model directory cannot be exported: refused, naming the backend.
    assert "backend onnx-int8" in str(err.value) and "paperscope index --rebuild" in str(err.value)
    assert "\n" not in str(err.value)


def test_store_from_a_backend_this_version_lacks_is_refused(dir_model_store: tuple[Path, Path]) -> None:
    store, _ = dir_model_store

    _claim_backend(store, "tpu-fp8")
    with Explorer(store) as ex, pytest.raises(ModelLockError) as err:
        ex.search("diffusion models")
    assert "tpu-fp8" in str(err.value) and "paperscope index --rebuild" in str(err.value)


def test_store_from_another_fingerprint_is_refused_at_query_and_build(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=FakeEmbedder("model-a"))
    before = snapshot(store)
    with pytest.raises(StoreError, match="fingerprint .* the given embedder .*query with the store's model"):
        Explorer(store, embedder=FakeEmbedder("model-b"))
    with pytest.raises(StoreError, match=r"built with model fingerprint .*run `paperscope index --rebuild`"):
        build(None, store, embedder=FakeEmbedder("model-b"))
    assert snapshot(store) == before


def test_manifest_lock_edited_without_the_vectors_is_refused(dir_model_store: tuple[Path, Path]) -> None:
    store, _ = dir_model_store
    _rewrite_manifest(store, lambda m: m["model"]["lock"].update(max_seq_length=512))  # fingerprint left as it was
    with Explorer(store) as ex, pytest.raises(StoreError, match="does not match the vectors'.*--rebuild"):
        ex.search("diffusion models")
    shutil.rmtree(store)
