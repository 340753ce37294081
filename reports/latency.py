"""Latency A/B from interleaved rounds: per benchmark, the HEAD/BASE time ratio with an interval and a verdict.

A round is one fresh process of the benchmark suite for BASE and one for HEAD,
back to back, in alternating order (BASE first in even rounds, HEAD first in odd
ones), so the two see the same drift of the machine and its linear part
cancels over pairs of rounds. Each process gives one number per benchmark, the
median of its timings. The unit of evidence is the round: per round the log of
HEAD over BASE; the ratio reported is the geometric mean of the rounds' ratios,
and its interval a bootstrap over rounds (``metrics.bootstrap_values``, not
stratified), widened for the few rounds there are (``metrics.expanded_level``).

Verdicts: "slower" when the whole interval is above 1, "faster" when it is
below, else "no detectable change". A benchmark fails the comparison only when
its whole interval lies above ``1 + fail_above``: an unchanged commit passes
(its interval straddles 1), a clear regression does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import metrics

LEVEL = 0.95
RESAMPLES = 10_000
COLUMNS = ["benchmark", "rounds", "base_median_s", "head_median_s", "ratio", "low", "high", "verdict", "fails"]


def ratio_interval(base: np.ndarray, head: np.ndarray, level: float = LEVEL,
                   seed: int = 0) -> tuple[float, float, float]:
    """``(ratio, low, high)`` of HEAD over BASE from paired rounds ``base [R]``, ``head [R]`` (seconds).

    ``ratio`` is the geometric mean of ``head / base`` over rounds; the
    interval is the percentile bootstrap of that mean over resampled rounds at
    ``expanded_level(level, R)``. NaN bounds with fewer than 2 rounds.
    """
    logs = np.log(np.asarray(head, dtype=np.float64) / np.asarray(base, dtype=np.float64))
    ratio = float(np.exp(logs.mean()))
    if logs.size < 2:
        return ratio, float("nan"), float("nan")
    values = metrics.bootstrap_values(np.mean, logs, n_resamples=RESAMPLES, seed=seed, stratify=False)
    low, high = metrics.percentile_interval(values, metrics.expanded_level(level, logs.size))
    return ratio, float(np.exp(low)), float(np.exp(high))


def verdict(low: float, high: float) -> str:
    if low > 1:
        return "slower"
    if high < 1:
        return "faster"
    return "no detectable change"


def compare_rounds(base: dict[str, list[float]], head: dict[str, list[float]], fail_above: float = 0.10,
                   level: float = LEVEL, seed: int = 0) -> pd.DataFrame:
    """One row per benchmark both sides timed in every round (``COLUMNS``).

    ``base``, ``head``: benchmark name -> its per-round medians in seconds,
    ``[R]`` each, index ``r`` of both from the same round.
    """
    rows = []
    for name in [n for n in base if n in head]:
        b, h = np.asarray(base[name], dtype=np.float64), np.asarray(head[name], dtype=np.float64)
        if b.size != h.size:
            raise ValueError(f"benchmark {name!r} has {b.size} BASE rounds and {h.size} HEAD rounds")
        ratio, low, high = ratio_interval(b, h, level, seed)
        rows.append({"benchmark": name, "rounds": int(b.size), "base_median_s": float(np.median(b)),
                     "head_median_s": float(np.median(h)), "ratio": ratio, "low": low, "high": high,
                     "verdict": verdict(low, high), "fails": bool(low > 1 + fail_above)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def _short(fullname: str) -> str:
    """``tests/benchmarks/test_latency.py::test_x`` -> ``test_latency.py::test_x``: the file names the suite."""
    path, sep, test = fullname.partition("::")
    return path.rsplit("/", 1)[-1] + sep + test


def _change(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.1f} %"


def latency_markdown(table: pd.DataFrame, base_label: str, head_label: str, fail_above: float,
                     only: dict[str, list[str]], minutes: float) -> str:
    """The summary a CI job can post: settings, one line per benchmark, what failed."""
    rounds = int(table["rounds"].max()) if len(table) else 0
    failed = table[table["fails"]]
    lines = [
        f"# Latency: {head_label} against {base_label}", "",
        f"{rounds} interleaved rounds (a fresh process per side and round, alternating which goes first) "
        f"in {minutes:.1f} min. Ratio = geometric mean over rounds of HEAD / BASE (each the median of the "
        f"process's timings); 95 % interval: bootstrap over rounds, expanded for {rounds} rounds. "
        f"A benchmark fails when its whole interval is above +{100 * fail_above:g} %.", "",
        "| benchmark | BASE median | HEAD median | HEAD / BASE | 95 % interval | verdict |",
        "|:--|--:|--:|--:|:--|:--|",
    ]
    for r in table.itertuples():
        mark = " **(fails)**" if r.fails else ""
        lines.append(f"| {_short(r.benchmark)} | {_seconds(r.base_median_s)} | {_seconds(r.head_median_s)} | "
                     f"{r.ratio:.3f} ({_change(r.ratio)}) | [{r.low:.3f}, {r.high:.3f}] | {r.verdict}{mark} |")
    for side, names in only.items():
        if names:
            lines += ["", f"Only in {side} (not compared): {', '.join(map(_short, names))}."]
    counts = table["verdict"].value_counts()
    lines += ["", "Summary: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                         ("slower", "faster", "no detectable change")) + "; "
              + (f"{len(failed)} above +{100 * fail_above:g} %: {', '.join(map(_short, failed['benchmark']))}."
                 if len(failed) else f"none above +{100 * fail_above:g} %.")]
    return "\n".join(lines) + "\n"
