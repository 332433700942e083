"""The static map: points coloured by theme, each fine topic labelled at its centre."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paperscope.map import TopicMap

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]


def color_of(theme: int) -> str:
    return PALETTE[theme % len(PALETTE)]


def write_png(tm: TopicMap, path: Path, *, title: str = "paperscope topic map", dpi: int = 150) -> Path:
    """Render ``tm`` to ``path`` with matplotlib (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    coarse, fine = tm.levels
    fig, ax = plt.subplots(figsize=(13, 10))
    ax.scatter(tm.coords[:, 0], tm.coords[:, 1], s=14, c=[color_of(int(t)) for t in coarse], alpha=0.75,
               linewidths=0)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=color_of(t.id),
                          label=f"{t.label} ({t.size})") for t in tm.topics if t.level == 0]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8.5,
              frameon=False, title="themes (coarse level); labels: fine topics")
    ax.set_title(f"{title}: {len(tm)} papers, {sum(t.level == 0 for t in tm.topics)} themes, "
                 f"{sum(t.level == 1 for t in tm.topics)} topics")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()  # before the labels: their overlap test needs the final axes
    outline = [pe.withStroke(linewidth=3, foreground="white")]
    renderer = fig.canvas.get_renderer()
    placed: list = []
    # Biggest topics first; a label that would overlap one already drawn steps down or up.
    for t in sorted((t for t in tm.topics if t.level == 1), key=lambda t: -t.size):
        cx, cy = np.median(tm.coords[fine == t.id], axis=0)
        text = ax.annotate(" / ".join(t.keywords[:2]), (cx, cy), ha="center", va="center", fontsize=8.5,
                           fontweight="bold", color="#222", path_effects=outline)
        box = text.get_window_extent(renderer)
        for step in range(1, 12):
            if not any(box.overlaps(other) for other in placed):
                break
            dy = box.height * ((step + 1) // 2) * (1 if step % 2 else -1)
            text.set_position((0, dy))
            text.set_anncoords("offset pixels")
            text.xy = (cx, cy)
            box = text.get_window_extent(renderer)
        placed.append(box)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
