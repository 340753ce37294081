"""What the CPU coreset loop read: per test, the share of (point, step) pairs it ruled out.

A plain step computes the distance of every point to the new centre: N
point-steps. The pruned loop rules some out before reading them -- by the ball
of their group of leaves, by their leaf's ball, by their principal-coordinate
prefix -- and the lazy loop by their stale minimum; the rest are computed in
full. The five shares add up to 1, so a run log says at a glance where the
time went. One INFO line per coreset goes to ``patchbench.coreset``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger("patchbench.coreset")

# The tests, cheapest first; every point-step is counted under exactly one of them or under "full".
RULED_OUT = ("group", "leaf", "point", "lazy")


@dataclass
class CoresetStats:
    """Counts of point-steps (``points`` x (``selected`` - 1) in all), and of steps by kind.

    group, leaf, point: ruled out by the pruned loop's group, leaf and prefix bounds;
    lazy: never computed by the lazy loop (a stale minimum already below the farthest);
    full: distances computed (plain steps compute all ``points``);
    seconds: the whole selection's wall time, set by ``greedy_coreset``.
    """

    points: int
    selected: int
    group: int = 0
    leaf: int = 0
    point: int = 0
    lazy: int = 0
    full: int = 0
    plain_steps: int = 0
    pruned_steps: int = 0
    lazy_steps: int = 0
    seconds: float = 0.0

    @property
    def point_steps(self) -> int:
        return self.points * max(self.selected - 1, 0)

    def fractions(self) -> dict[str, float]:
        """Share of point-steps ruled out by each test, and computed in full: they sum to 1."""
        total = max(self.point_steps, 1)
        return {name: getattr(self, name) / total for name in (*RULED_OUT, "full")}

    def as_dict(self) -> dict:
        """Counts, ``point_steps``, and the fractions as ``fraction_<test>`` / ``fraction_full``."""
        out = asdict(self)
        out["point_steps"] = self.point_steps
        out.update({f"fraction_{name}": value for name, value in self.fractions().items()})
        return out

    def summary(self) -> str:
        f = self.fractions()
        return (
            f"coreset: {self.selected} of {self.points} points in {self.seconds:.2f} s; point-steps ruled out "
            f"by group {f['group']:.1%}, leaf {f['leaf']:.1%}, point {f['point']:.1%}, lazy {f['lazy']:.1%}, "
            f"computed in full {f['full']:.1%}; steps plain {self.plain_steps}, pruned {self.pruned_steps}, "
            f"lazy {self.lazy_steps}"
        )

    def log(self) -> None:
        log.info("%s", self.summary())
