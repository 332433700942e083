"""Writes notebooks/topic_map.ipynb (then run it: jupyter-free, with nbclient; see tests/e2e/test_notebook.py).

    python notebooks/make_topic_map.py && python notebooks/make_topic_map.py --execute
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
CELLS = [
    new_markdown_cell("# paperscope: the topic map\n\nOpens the store (or builds it from the bundled corpus "
                      "with the pinned model), draws the map, lists the topics, shows the muP topic and "
                      "looks up related papers. Everything goes through the public API."),
    new_code_cell("import warnings\nwarnings.filterwarnings('ignore', message='IProgress not found')  # no ipywidgets needed\n"
                  "import paperscope\n\ntry:\n    ex = paperscope.open()\nexcept paperscope.StoreError:\n"
                  "    ex = paperscope.build()  # first run: index the bundled corpus\nprint(len(ex), 'papers in', ex.store.path)"),
    new_code_cell("tm = ex.topic_map()\nfrom IPython.display import Image\nImage(tm.stats['outputs']['png'])"),
    new_markdown_cell("## Topics\nFine topics with their coarse theme; labels are class-based TF-IDF keywords."),
    new_code_cell("from IPython.display import Markdown\n\nrows = ['| topic | theme | size | label | keywords |', '| --- | --- | --- | --- | --- |']\n"
                  "for t in sorted((t for t in tm.topics if t.level == 1), key=lambda t: -t.size):\n"
                  "    theme = tm.topic(0, t.parent).label\n"
                  "    rows.append(f'| {t.id} | {theme} | {t.size} | {t.label} | {\", \".join(t.keywords)} |')\n"
                  "print(f'{len(tm)} papers, {tm.low_confidence} low-confidence')\nMarkdown('\\n'.join(rows))"),
    new_markdown_cell("## The muP / hyperparameter-transfer topic"),
    new_code_cell("mup = tm.find('muP')\nprint(mup.label, '|', mup.size, 'papers')\n"
                  "for pid in tm.members(1, mup.id):\n    print(' -', ex.paper(pid).title)"),
    new_markdown_cell("## Related papers"),
    new_code_cell("for hit in ex.related('Tensor Programs V: Tuning Large Neural Networks via Zero-Shot "
                  "Hyperparameter Transfer', k=5):\n    print(f'{hit.score:.3f}  {hit.paper.title}')"),
    new_code_cell("print('interactive map:', tm.stats['outputs']['html'])"),
]


def main() -> None:
    path = HERE / "topic_map.ipynb"
    if "--execute" in sys.argv:
        from nbclient import NotebookClient

        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    else:
        nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
