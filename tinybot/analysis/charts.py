"""Drawing the report's charts with matplotlib: each chart from its data alone (the dict tinybot.analysis.report built).

matplotlib is imported only to draw (`pip install 'tinybot[report]'`).  The
page (tinybot.analysis.report) inlines each figure as SVG; the daily digest attaches
its chart as a PNG.  Legends sit under the plot, never on it; counts are drawn
on integer axes; the x axis is in the configured timezone.
"""

from __future__ import annotations

import io
import textwrap
from datetime import datetime
from decimal import Decimal

from ..base.errors import TinybotError

LEGEND_WIDTH = 58  # characters per legend line: a benchmark's title wraps instead of widening the figure


class ChartError(TinybotError):
    """A chart cannot be drawn (no plotting library); the message says what to install."""


def _figure(height: float = 4.2):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartError(
            "the report draws its charts with matplotlib: pip install 'tinybot[report]'"
            " (or: .venv/bin/pip install matplotlib)"
        ) from None
    import matplotlib
    import matplotlib.dates  # noqa: F401  registers the datetime converter (pyplot would; we do not use it)

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    matplotlib.rcParams["svg.hashsalt"] = "tinybot"  # stable ids: the same data gives the same file
    matplotlib.rcParams["font.size"] = 12  # read on a phone, where the page shrinks the figure to ~370 px
    return Figure(figsize=(6.4, height), layout="constrained")


def _number(v: str | None) -> float:
    return float("nan") if v is None else float(Decimal(v))  # a pixel position, not an amount


def _time_axis(ax, tz) -> None:
    from matplotlib import dates

    locator = dates.AutoDateLocator(tz=tz, minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=tz))


def _legend(fig, ax) -> None:
    """Under the plot, outside it: a legend never covers a line or a marker."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        wrapped = [textwrap.fill(label, LEGEND_WIDTH) for label in labels]
        fig.legend(handles, wrapped, loc="outside lower center", ncols=1, fontsize="small", frameon=False)


MARKERS = {"buy": ("^", "tab:green"), "sell": ("v", "tab:red")}
STYLES = {"solid": "-", "dashed": "--", "dotted": ":"}


def _draw_lines(ax, chart: dict, tz) -> None:
    x = [datetime.fromisoformat(t) for t in chart["x"]]
    for line in chart["lines"]:
        y = [_number(v) for v in line["values"]]
        style = STYLES[line["style"]]
        if line["step"]:
            ax.step(x, y, where="post", linestyle=style, label=line["label"])
        else:
            ax.plot(x, y, linestyle=style, linewidth=1.2, label=line["label"])
    for m in chart.get("markers", []):
        marker, color = MARKERS[m["side"]]
        xs = [datetime.fromisoformat(t) for t in m["x"]]
        ax.scatter(xs, [_number(v) for v in m["y"]], marker=marker, color=color, s=50, label=m["label"], zorder=3)
    if chart.get("zero_line"):
        ax.axhline(0, color="grey", linewidth=0.5)
    _time_axis(ax, tz)
    ax.set_xlabel(f"time ({tz.key})")


def _draw_bars(ax, chart: dict) -> None:
    from matplotlib.ticker import MaxNLocator

    bars = chart["bars"][::-1]  # the most frequent on top
    ax.barh([b["label"] for b in bars], [b["count"] for b in bars], color="tab:orange")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: 0, 1, 2, never 0.5
    ax.set_xlabel(chart["xlabel"])


def figure(chart: dict, tz, *, titled: bool = True):
    """One chart, drawn from its data only (the dict embedded in the page); ``titled=False`` where a heading
    above it says the title already."""
    if not chart["drawn"]:
        raise ValueError(f"chart {chart['id']!r} is a sentence, not a figure: {chart['sentence']}")
    fig = _figure(min(1.6 + 0.5 * len(chart["bars"]), 6.0) if chart["kind"] == "bars" else 4.2)
    ax = fig.subplots()
    if chart["kind"] == "bars":
        _draw_bars(ax, chart)
    else:
        _draw_lines(ax, chart, tz)
    if chart.get("ylabel"):
        ax.set_ylabel(chart["ylabel"])
    if titled:
        ax.set_title(chart["title"])
    _legend(fig, ax)
    return fig


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
