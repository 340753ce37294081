"""Critical-difference diagram (Demsar, JMLR 2006): methods' average ranks on one axis, groups within CD joined.

The axis runs from rank 1 (best, left) to rank ``k`` (right). Each method's
average rank is a point on it, joined by an elbow line to its name: the better
half of the methods hangs to the left, the worse half to the right, so no two
lines cross. A bar of length CD above the axis shows the Nemenyi critical
difference; thick bars under the axis join each maximal group of methods whose
average ranks all differ by less than CD (``cliques``), i.e. methods the test
cannot tell apart.

The drawing is laid out in inches (the axes' data units are inches), from the
measured widths of the names, so long names never run off the picture.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from reports.figures import method_color, new_figure, to_png

FONT = 9                # points, names and title
TICK_FONT = 8           # points, rank numbers and the CD label
PAD = 0.1               # inches between the drawing and the picture's edge
NAME_GAP = 0.3          # inches between a name and the axis's end
ROW = 0.25              # inches between the rows of names
CLIQUE_ROW = 0.1        # inches between the bars of two groups
# distances from the top of the picture, inches
TITLE_TOP, CD_TOP, AXIS_TOP, BELOW_AXIS = 0.1, 0.65, 1.05, 0.14


def cliques(ranks: dict[str, float], cd: float) -> list[list[str]]:
    """The maximal groups of methods whose average ranks all lie within less than ``cd`` of each other.

    ``ranks``: method -> average rank. Groups of at least 2 methods, none
    contained in another, each sorted by rank and the groups by their best rank
    (ties keep the order of ``ranks``). Ranks on a line make every such group a
    run of the methods sorted by rank: from each method, all methods up to
    ``cd`` ranks further; a run ending where the run before it ended is inside
    that one. Two methods exactly ``cd`` apart differ significantly (Nemenyi:
    "at least the critical difference"), so they are not grouped.
    """
    if not (math.isfinite(cd) and cd >= 0):
        raise ValueError(f"the critical difference must be a finite number >= 0; got {cd}")
    if not all(math.isfinite(r) for r in ranks.values()):
        raise ValueError(f"every average rank must be finite; got {ranks}")
    order = sorted(ranks, key=ranks.__getitem__)
    groups, last_end = [], -1
    for i, method in enumerate(order):
        end = i
        while end + 1 < len(order) and ranks[order[end + 1]] - ranks[method] < cd:
            end += 1
        if end > i and end > last_end:
            groups.append(order[i:end + 1])
        last_end = max(last_end, end)
    return groups


def critical_difference_png(ranks: dict[str, float], cd: float, title: str) -> bytes:
    """``critical_difference_figure`` as PNG bytes."""
    return to_png(critical_difference_figure(ranks, cd, title))


def critical_difference_figure(ranks: dict[str, float], cd: float, title: str) -> Figure:
    """The CD diagram of ``ranks`` (method -> average rank, 1 = best; at least 2 methods) with CD ``cd``."""
    if len(ranks) < 2:
        raise ValueError(f"a critical-difference diagram needs at least 2 methods; got {list(ranks)}")
    groups = cliques(ranks, cd)  # also checks cd and the ranks
    order = sorted(ranks, key=ranks.__getitem__)
    k = len(order)
    labels = {m: f"{m} ({ranks[m]:.2f})" for m in order}
    half = (k + 1) // 2
    # worse half from the worst down: the rows nearest the axis hold the outermost points
    left, right = order[:half], order[half:][::-1]
    unit = min(1.6, max(0.8, 6.0 / (k - 1)))  # inches per rank: short axes stay readable, long ones fit
    x0 = PAD + max(_width(labels[m]) for m in left) + NAME_GAP
    x_end = x0 + unit * (k - 1)
    width = max(x_end + NAME_GAP + max(_width(labels[m]) for m in right),
                x0 + unit * cd) + PAD  # a CD longer than the axis still fits
    first_row = AXIS_TOP + BELOW_AXIS + CLIQUE_ROW * len(groups) + 0.15
    height = first_row + ROW * (max(len(left), len(right)) - 1) + 0.2
    fig = new_figure(width, height)
    fig.set_layout_engine("none")  # the layout is computed here, in inches
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y = inches from the top
    ax.set_axis_off()

    def x_of(rank: float) -> float:
        return x0 + unit * (rank - 1)

    ax.text(width / 2, TITLE_TOP, title, ha="center", va="top", fontsize=FONT, wrap=True, parse_math=False)
    _draw_cd_bar(ax, x0, x0 + unit * cd, cd)
    _draw_axis(ax, x_of, k)
    for j, group in enumerate(groups):
        y = AXIS_TOP + BELOW_AXIS + CLIQUE_ROW * j
        ax.plot([x_of(ranks[group[0]]) - 0.06, x_of(ranks[group[-1]]) + 0.06], [y, y],
                color="black", linewidth=4, solid_capstyle="butt", zorder=4)
    for side, names, text_x in (("left", left, x0 - NAME_GAP), ("right", right, x_end + NAME_GAP)):
        for i, method in enumerate(names):
            _draw_name(ax, x_of(ranks[method]), first_row + ROW * i, text_x, side, labels[method],
                       method_color(method))
    return fig


def _draw_cd_bar(ax, start: float, end: float, cd: float) -> None:
    """The CD bar above the axis's start, with end ticks and its length written above it."""
    ax.plot([start, end], [CD_TOP, CD_TOP], color="black", linewidth=1.2)
    for x in (start, end):
        ax.plot([x, x], [CD_TOP - 0.05, CD_TOP + 0.05], color="black", linewidth=1.2)
    ax.text((start + end) / 2, CD_TOP - 0.08, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=TICK_FONT)


def _draw_axis(ax, x_of, k: int) -> None:
    """The rank axis 1..k: ticks at whole ranks (labelled, above the line) and halves."""
    ax.plot([x_of(1), x_of(k)], [AXIS_TOP, AXIS_TOP], color="black", linewidth=1)
    for rank in range(1, k + 1):
        ax.plot([x_of(rank)] * 2, [AXIS_TOP, AXIS_TOP - 0.08], color="black", linewidth=1)
        ax.text(x_of(rank), AXIS_TOP - 0.1, str(rank), ha="center", va="bottom", fontsize=TICK_FONT)
    for rank in range(1, k):
        ax.plot([x_of(rank + 0.5)] * 2, [AXIS_TOP, AXIS_TOP - 0.04], color="black", linewidth=0.8)


def _draw_name(ax, x: float, y: float, text_x: float, side: str, label: str, color: str) -> None:
    """A method's point on the axis at ``x``, an elbow line down to row ``y`` and out to its name."""
    end = text_x + (0.05 if side == "left" else -0.05)
    ax.plot([x, x, end], [AXIS_TOP, y, y], color=color, linewidth=1.2, zorder=2)
    ax.plot([x], [AXIS_TOP], "o", color=color, markersize=4, zorder=3)
    ax.text(text_x, y, label, ha="right" if side == "left" else "left", va="center", fontsize=FONT,
            color=color, parse_math=False)


def _width(text: str) -> float:
    """Width in inches of ``text`` at ``FONT`` points, measured on the font, without drawing."""
    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=FONT), ismath=False)
    return width / 72.0
