"""``--engine ray``: the embedding step on a local 2-CPU Ray, compared with the local engine.

Needs the ``paperscope[ray]`` extra. CI installs it, so a missing Ray is a failure here, not
a skip; set PAPERSCOPE_SKIP_RAY=1 to skip on a machine without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from paperscope.store import Staging, Store

pytestmark = [pytest.mark.model, pytest.mark.ray]

if os.environ.get("PAPERSCOPE_SKIP_RAY") == "1":
    pytest.skip("PAPERSCOPE_SKIP_RAY=1", allow_module_level=True)


def vectors_by_id(store: Path) -> dict[str, np.ndarray]:
    gen = Store(store).require_current()
    con = gen.connect()
    rows = dict(con.execute("SELECT id, row FROM papers").fetchall())
    con.close()
    vectors = gen.load_vectors()
    return {pid: np.asarray(vectors[row]) for pid, row in rows.items()}


def test_ray_engine_matches_local_engine(tmp_path: Path, real_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed: pip install 'paperscope[ray]' (or set PAPERSCOPE_SKIP_RAY=1)")
    from paperscope.embed import ray_engine
    from paperscope.pipeline import build

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv(ray_engine.CPUS_ENV, "2")
    # At most 4 of the 7 chunks of 64 out at once, so the window slides while vectors come back in order.
    monkeypatch.setenv(ray_engine.WINDOW_ENV, "4")
    puts: list[int] = []
    real_put = Staging.put

    def spy(self: Staging, fingerprint: str, hashes: list[str], vectors: np.ndarray, **kwargs: object) -> None:
        puts.append(len(hashes))
        real_put(self, fingerprint, hashes, vectors, **kwargs)  # made_by= (issue 18) passes through

    monkeypatch.setattr(Staging, "put", spy)
    report = build(None, tmp_path / "ray", engine="ray", chunk_size=64)
    assert not ray.is_initialized()  # the Ray it started is shut down again
    assert (report.papers, report.embedded) == (432, 432)
    # Checkpointed chunk by chunk as vectors arrive, as with the local engine.
    assert puts == [64] * 6 + [48]

    local, remote = vectors_by_id(real_store), vectors_by_id(tmp_path / "ray")
    assert sorted(local) == sorted(remote)
    cosines = np.array([float(local[pid] @ remote[pid]) for pid in local])
    assert cosines.min() >= 0.9999, f"lowest cosine {cosines.min():.6f}"
    manifest = Store(tmp_path / "ray").require_current().manifest
    assert manifest["model"]["fingerprint"] == Store(real_store).require_current().manifest["model"]["fingerprint"]


def test_related_never_imports_ray(real_store: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from paperscope.cli import main; sys.argv=['paperscope','related','--store',sys.argv[1],"
        "'Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer','-k','3'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('RAY' if 'ray' in sys.modules else 'NO-RAY')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(real_store)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO-RAY"
