"""notebooks/topic_map.ipynb executed fresh (nbclient, a real kernel, an empty store) so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "topic_map.ipynb"


@pytest.mark.model
def test_notebook_tour_runs_from_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("PAPERSCOPE_HOME", str(tmp_path / "store"))  # empty: the notebook builds it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # nothing committed can make this pass
    NotebookClient(nb, timeout=1800, kernel_name="python3").execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum("<iframe srcdoc=" in h for h in html) >= 2  # the whole map and one theme's map, inline
    assert sum("dataframe" in h for h in html) >= 4  # topics, sub-topics, members, why
    assert any("Tensor Programs" in h or "μ" in h for h in html)  # related papers of the muP paper
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "434 papers; new on the map:" in text
    assert "432 papers from the first map: largest move 0.000000, topic kept by 100%" in text
