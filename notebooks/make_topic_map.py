"""Writes notebooks/topic_map.ipynb, a tour of paperscope in Jupyter; ``--execute`` runs it (nbclient).

    python notebooks/make_topic_map.py              # write the cells (no outputs)
    python notebooks/make_topic_map.py --execute    # run them in a fresh kernel and store the outputs

docs/make_figures.py runs both with a fresh store and removes machine paths from the outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
MUP = "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer"
CELLS = [
    new_markdown_cell(
        "# A tour of paperscope\n\nOpen the store (or build it from the bundled corpus with the pinned "
        "model), look at the topic map inline, read its topics as a DataFrame, drill into one theme, "
        "ask for related papers, search, recommend and *why*, filter, and index a file of your own. "
        "Everything goes through the public API."
    ),
    new_code_cell(
        "import paperscope\n\ntry:\n    ex = paperscope.open()\nexcept paperscope.StoreError:\n"
        "    ex = paperscope.build()  # first run: index the bundled corpus (a progress bar shows)\nex"
    ),
    new_markdown_cell("## The map\nThe summary and the interactive page inline: zoom, hover, click a paper."),
    new_code_cell("tm = ex.topic_map()\ntm"),
    new_markdown_cell(
        "## Topics as a DataFrame\nThemes (coarse) and topics (fine), with keywords and three example titles each."
    ),
    new_code_cell("topics = tm.topics_to_pandas()\ntopics[['level', 'id', 'label', 'size', 'examples']]"),
    new_markdown_cell(
        "## Drilling into one theme\nThe theme that holds the μP topic: its papers, its sub-topics, "
        "and the map of just those papers."
    ),
    new_code_cell(
        "mup = tm.find('muP')\ntheme = tm.topic(0, mup.parent)\nprint(theme.label, '|', theme.size, 'papers')\n"
        "topics[(topics.level == 'topic') & (topics.parent == theme.id)][['id', 'label', 'size', 'keywords']]"
    ),
    new_code_cell(
        "papers = tm.members(theme).to_pandas()\npapers[['title', 'topic_label', 'low_confidence']].head(10)"
    ),
    new_code_cell("tm.view(theme)"),
    new_markdown_cell("## Related, search, recommend, and why"),
    new_code_cell(f"ex.related({MUP!r}, k=5)"),
    new_code_cell(
        "hits = ex.search('low-rank adaptation of large language models', k=5, why=True)\n"
        "hits.to_pandas()[['rank', 'score', 'title', 'dense', 'lexical', 'shared_terms']]"
    ),
    new_code_cell(f"ex.recommend([{MUP!r}, 'LoRA-GA: Low-Rank Adaptation with Gradient Approximation'], k=5)"),
    new_markdown_cell("## A filter\nOnly papers dated 2024 or later."),
    new_code_cell("ex.search('diffusion models', k=5, date_from='2024')"),
    new_markdown_cell(
        "## Your own papers\nIndex a small JSONL file into the store, then edit it and index again: "
        "only what changed is embedded, and papers already on the map keep their place."
    ),
    new_code_cell(
        "import json, tempfile\nimport numpy as np\nfrom pathlib import Path\n\n"
        "mine = Path(tempfile.mkdtemp()) / 'mine.jsonl'\n"
        "papers = [{'id': 'mine-1', 'title': 'Width-independent learning rates for adapters',\n"
        "           'abstract': 'We transfer the learning rate of LoRA adapters across model widths with muP.'},\n"
        "          {'id': 'mine-2', 'title': 'A sampler for latent diffusion models',\n"
        "           'abstract': 'A fast ODE sampler for score-based diffusion models in latent space.'}]\n"
        "mine.write_text(''.join(json.dumps(p) + '\\n' for p in papers))\n"
        "before = tm.to_pandas().set_index('id')\n"
        "ex = paperscope.build([mine], ex.store.path)\n"
        "tm2 = ex.topic_map()\n"
        "after = tm2.to_pandas().set_index('id')\n"
        "print(len(ex), 'papers; new on the map:')\n"
        "after.loc[['mine-1', 'mine-2'], ['title', 'theme_label', 'topic_label']]"
    ),
    new_code_cell(
        "papers[1]['abstract'] += ' It also distils the sampler into one step.'\n"
        "mine.write_text(''.join(json.dumps(p) + '\\n' for p in papers))\n"
        "ex = paperscope.build([mine], ex.store.path)\n"
        "tm3 = ex.topic_map()\n"
        "again = tm3.to_pandas().set_index('id')\n"
        "old = before.index\n"
        "moved = np.hypot(again.loc[old, 'x'] - before.x, again.loc[old, 'y'] - before.y)\n"
        "print('changed paper:', ex.paper('mine-2').abstract[-45:])\n"
        "print(f'{len(old)} papers from the first map: largest move {moved.max():.6f}, '\n"
        "      f'topic kept by {(again.loc[old, \"topic\"] == before.topic).mean():.0%}')"
    ),
]


def main() -> None:
    path = HERE / "topic_map.ipynb"
    if "--execute" in sys.argv:
        from nbclient import NotebookClient

        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3").execute()
    else:
        nb = new_notebook(
            cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        )
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
