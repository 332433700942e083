"""The static map, drawn for a slide: arrays in, a matplotlib figure out; ``write_png`` saves a TopicMap.

What it takes from datamapplot (docs/topic-map.md compares the two pictures): labels sit off
the points, joined to their topic by a thin leader line and coloured like it; papers whose topic
is nearly a tie are muted; the frame follows the bulk of the points (a handful of outliers do
not stretch it); the title says what is on the map, not which tool drew it.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.map import TopicMap

PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
]
MUTED = "#c8c8c8"


def color_of(theme: int) -> str:
    return PALETTE[theme % len(PALETTE)]


def _darker(hex_color: str, factor: float = 0.62) -> tuple[float, float, float]:
    """The same hue, darker: label text must read on white where the point colour is too light."""
    r, g, b = (int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, lum, s = colorsys.rgb_to_hls(r, g, b)
    return colorsys.hls_to_rgb(h, lum * factor, min(1.0, s * 1.1))


def robust_limits(
    xy: np.ndarray, tail: float = 0.02, reach: float = 0.15, pad: float = 0.04
) -> tuple[tuple[float, float], ...]:
    """Per axis, the range of the points that lie within ``reach`` of the central span, padded.

    The central span runs from the ``tail`` to the ``1 - tail`` quantile; points past it by more
    than ``reach`` of its width (a small far group, as 7 papers on the bundled map) fall outside.
    """
    out = []
    for d in range(2):
        v = xy[:, d]
        lo, hi = np.quantile(v, tail), np.quantile(v, 1 - tail)
        span = max(hi - lo, 1e-9)
        near = v[(v >= lo - reach * span) & (v <= hi + reach * span)]
        a, b = float(near.min()), float(near.max())
        out.append((a - pad * (b - a), b + pad * (b - a)))
    return tuple(out)


def draw_map(
    coords: np.ndarray,
    colour_ids: np.ndarray,
    label_ids: np.ndarray,
    labels: dict[int, str],
    label_colour: dict[int, int],
    *,
    muted: np.ndarray | None = None,
    title: str = "",
    subtitle: str = "",
    size: tuple[float, float] = (16, 9),
) -> Any:
    """A figure of ``coords`` coloured by ``colour_ids`` with one off-point label per id of ``label_ids``.

    ``labels[id]`` is the text for the points with ``label_ids == id``, drawn in the colour of
    ``label_colour[id]``; ``muted`` marks points drawn grey (low confidence). 16:9 for a slide.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    coords = np.asarray(coords, dtype=np.float64)
    muted = np.zeros(len(coords), dtype=bool) if muted is None else np.asarray(muted, dtype=bool)
    fig, ax = plt.subplots(figsize=size)
    (x0, x1), (y0, y1) = robust_limits(coords)
    # Room around the points for labels: the frame is the bulk of the points plus a margin.
    mx, my = 0.18 * (x1 - x0), 0.14 * (y1 - y0)
    ax.set_xlim(x0 - mx, x1 + mx)
    ax.set_ylim(y0 - my, y1 + my)
    ax.set_axis_off()
    colours = np.array([color_of(int(c)) for c in colour_ids], dtype=object)
    ax.scatter(coords[muted, 0], coords[muted, 1], s=20, c=MUTED, alpha=0.6, linewidths=0, zorder=1)
    ax.scatter(
        coords[~muted, 0],
        coords[~muted, 1],
        s=34,
        c=list(colours[~muted]),
        alpha=0.85,
        linewidths=0.3,
        edgecolors="white",
        zorder=2,
    )
    outside = int(
        (
            (coords[:, 0] < x0 - mx) | (coords[:, 0] > x1 + mx) | (coords[:, 1] < y0 - my) | (coords[:, 1] > y1 + my)
        ).sum()
    )
    if title:
        fig.text(0.02, 0.965, title, fontsize=24, fontweight="bold", color="#222", va="top")
    note = subtitle + (f" · {outside} outlying papers outside the frame" if outside else "")
    if note:
        fig.text(0.02, 0.905, note, fontsize=13, color="#555", va="top")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88)
    _place_labels(fig, ax, coords, label_ids, labels, label_colour, pe)
    return fig


def _place_labels(
    fig: Any,
    ax: Any,
    coords: np.ndarray,
    label_ids: np.ndarray,
    labels: dict[int, str],
    label_colour: dict[int, int],
    pe: Any,
) -> None:
    """Each label on a ray from the map's centre through its topic, pushed out until it covers no point
    and no other label; a leader line joins it to the topic's centre. Biggest topics are placed first."""
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    pts_px = to_px(coords)
    centre = np.median(coords, axis=0)
    span = np.ptp(coords, axis=0).max() or 1.0
    placed: list[Any] = []
    ax_box = ax.get_window_extent(renderer)
    order = sorted(labels, key=lambda t: -int((label_ids == t).sum()))
    outline = [pe.withStroke(linewidth=3.5, foreground="white")]
    for tid in order:
        members = coords[label_ids == tid]
        if not len(members):
            continue
        anchor = np.median(members, axis=0)
        direction = anchor - centre
        norm = np.linalg.norm(direction)
        direction = direction / norm if norm > 1e-9 else np.array([0.0, 1.0])
        colour = _darker(color_of(label_colour[tid]))
        text = ax.text(
            *anchor,
            _wrap(labels[tid]),
            fontsize=12.5,
            fontweight="bold",
            color=colour,
            ha="center",
            va="center",
            path_effects=outline,
            zorder=5,
            linespacing=0.95,
        )
        best = None
        # Outward first (the periphery has room), then sideways; each step a small share of the map's span.
        for angle in (0.0, 0.35, -0.35, 0.7, -0.7, 1.1, -1.1):
            c, s = np.cos(angle), np.sin(angle)
            ray = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])
            for step in np.linspace(0.04, 0.6, 15):
                pos = anchor + ray * step * span
                text.set_position(pos)
                box = text.get_window_extent(renderer).expanded(1.06, 1.15)
                if not (ax_box.x0 <= box.x0 and box.x1 <= ax_box.x1 and ax_box.y0 <= box.y0 and box.y1 <= ax_box.y1):
                    break
                if any(box.overlaps(other) for other in placed):
                    continue
                covered = int(
                    (
                        (pts_px[:, 0] > box.x0)
                        & (pts_px[:, 0] < box.x1)
                        & (pts_px[:, 1] > box.y0)
                        & (pts_px[:, 1] < box.y1)
                    ).sum()
                )
                if covered == 0:
                    best = (pos, box)
                    break
                if best is None or covered < best[2]:
                    best = (pos, box, covered)
            if best is not None and len(best) == 2:
                break
        if best is None:
            text.remove()
            continue
        text.set_position(best[0])
        placed.append(best[1])
        ax.annotate(
            "",
            xy=anchor,
            xytext=best[0],
            zorder=4,
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 1.0, "alpha": 0.8, "shrinkA": 9, "shrinkB": 2},
        )
        ax.scatter([anchor[0]], [anchor[1]], s=14, c=[colour], zorder=4, linewidths=0)


def _wrap(label: str, width: int = 22) -> str:
    """Two lines at most for a long label, broken at a space near the middle."""
    if len(label) <= width or " " not in label:
        return label
    mid = len(label) // 2
    spaces = [i for i, ch in enumerate(label) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - mid))
    return label[:cut] + "\n" + label[cut + 1 :]


def map_title(tm: TopicMap) -> tuple[str, str]:
    """Title and subtitle that say what is on the map."""
    n_themes = sum(t.level == 0 for t in tm.topics)
    n_topics = sum(t.level == 1 for t in tm.topics)
    biggest = sorted((t for t in tm.topics if t.level == 0), key=lambda t: -t.size)[:3]
    title = f"{len(tm):,} papers · {n_themes} themes · {n_topics} topics"
    sub = "Largest themes: " + ", ".join(t.label for t in biggest) + "; grey: papers between two topics"
    return title, sub


def write_png(
    tm: TopicMap, path: Path, *, title: str | None = None, dpi: int = 120, level_labels: Sequence[int] = (1,)
) -> Path:
    """Render ``tm`` to ``path``: points coloured by theme, fine topics labelled (matplotlib, Agg)."""
    import matplotlib.pyplot as plt

    from paperscope.map import cluster

    coarse = tm.levels[0]
    level = level_labels[0]
    ids = tm.levels[level]
    parent = {t.id: (t.parent if t.level == 1 else t.id) for t in tm.topics if t.level == level}
    labels = {t.id: t.label for t in tm.topics if t.level == level}
    auto_title, subtitle = map_title(tm)
    fig = draw_map(
        tm.coords,
        coarse,
        ids,
        labels,
        {k: int(v or 0) for k, v in parent.items()},
        muted=tm.margin < cluster.LOW_MARGIN,
        title=title or auto_title,
        subtitle=subtitle,
    )
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
