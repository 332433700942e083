"""notebooks/topic_map.ipynb executed fresh (nbclient, a real kernel) so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "topic_map.ipynb"


@pytest.mark.model
def test_notebook_runs_and_shows_the_map(real_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("PAPERSCOPE_HOME", str(real_store))  # the kernel inherits it: opens, never rebuilds
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # nothing committed can make this pass
    NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"432 papers in {real_store}" in text
    assert "Tensor Programs" in text or "μ-Transfer" in text
    table = next(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert table.count("\n") > 10 and "| topic | theme |" in table
