"""`--plot OUT.png`: the error of every probe along the network, one line per backend pair.

matplotlib is an optional extra (`pip install 'archspec[plot]'`), imported only here and
only when a plot is asked for; `require()` runs before the (slow) parity run, so a missing
matplotlib is a message at once, not after a minute of work. The figure: relative L2 error
(log scale) of each probe in graph order, then the graph outputs; the tolerance as a
dashed line; the first divergence of each pair circled and named. Exact agreement
(error 0) is drawn at 1e-12, since a log scale has no zero, and an infinite error (a
shape mismatch) at 1e3.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from archspec.generate import write_atomic
from archspec.ir import Graph
from archspec.parity import PairReport, Tolerance

FLOOR = 1e-12  # where an exact 0 is drawn
CEILING = 1e3  # where an infinite error (a shape mismatch, a NaN) is drawn


def _shown(error: float) -> float:
    return min(max(error, FLOOR), CEILING) if not math.isnan(error) else CEILING


EXTRA = "plot"


class PlotError(Exception):
    """A plot cannot be made (matplotlib missing); exit 2."""


def require() -> None:
    """Fail early, with the extra to install, when matplotlib is not importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(
            f"--plot needs matplotlib, which is not installed: pip install 'archspec[{EXTRA}]'"
        ) from None


def render(graph: Graph, reports: Sequence[PairReport], tol: Tolerance, title: str) -> bytes:
    """The PNG bytes of the figure."""
    require()
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from matplotlib.figure import Figure

    order = [n.name for n in graph.nodes]
    probed = [n for n in order if any(n in r.probes for r in reports)]
    outputs = [k for r in reports for k in r.outputs if ":" not in k]
    labels = probed + [o for o in dict.fromkeys(outputs) if o not in probed]
    x = {name: i for i, name in enumerate(labels)}
    fig = Figure(figsize=(max(8.0, min(24.0, 0.12 * len(labels) + 6)), 4.8), dpi=100)
    ax = fig.subplots()
    drawn: list[float] = [tol.rtol]
    for report in reports:
        values = {**report.probes, **{k: v for k, v in report.outputs.items() if k in x}}
        names = [n for n in labels if n in values]
        ys = [_shown(values[n].rel_l2) for n in names]
        drawn += ys
        ax.plot(
            [x[n] for n in names], ys, marker=".", label=f"{report.other} vs {report.reference}"
        )
        div = report.first_divergence
        if div is not None and div.node in x:
            y = _shown(div.errors.rel_l2)
            ax.scatter([x[div.node]], [y], s=120, facecolors="none", edgecolors="red", zorder=3)
            ax.annotate(
                f"first divergence: {div.node}",
                (x[div.node], y),
                textcoords="offset points",
                xytext=(6, 8),
                color="red",
                fontsize=8,
            )
    ax.axhline(tol.rtol, color="gray", linestyle="--", label=f"tolerance (rel L2 {tol.rtol:g})")
    ax.set_yscale("log")
    ax.set_ylim(min(drawn) / 3, max(drawn) * 30)  # room above for the divergence label
    ax.set_ylabel("relative L2 error")
    ax.set_xlabel("probe, in graph order")
    step = max(1, len(labels) // 30)
    ticks = list(range(0, len(labels), step))
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=70, ha="right", fontsize=7)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_plot(
    path: Path, graph: Graph, reports: Sequence[PairReport], tol: Tolerance, title: str
) -> None:
    write_atomic(path, render(graph, reports, tol, title))
