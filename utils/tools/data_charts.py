"""Charts that adapt to the data: only panels that have something to show, at most MAX_PANELS per
figure, labels shortened to fit, plain tick numbers (12,440 rather than 1.244e+04).

Drawn from the raw values as they are in the file (missing values left out, nothing clipped or
filled), from a fixed sample of at most MODEL_ROWS rows, so a 10-million-row file charts as fast as a
small one. Values near the float limit are drawn in units of a power of ten (the
axis says which), because a histogram's bin width overflows there.
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools import new_figure, png_bytes
from utils.tools.dataset import BOOLEAN, CATEGORICAL, DATE, NUMERIC, Column, Dataset
from utils.tools.stats import MODEL_ROWS, sample

MAX_PANELS = 12
MAX_HEATMAP = 12
MAX_SCATTER_POINTS = 5_000
MAX_SERIES = 8               # a category with at most this many values splits a time chart into lines
LABEL_CHARS = 22


def short(label: str, limit: int = LABEL_CHARS) -> str:
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


def plain(x: float, digits: int = 4) -> str:
    """A tick or table number without scientific notation below 1e15: 12,440 · 0.0312 · 3.5."""
    if x is None or not isinstance(x, (int, float)):
        return "—"
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    if abs(x) >= 1e15 or abs(x) < 1e-4:
        return f"{x:.3g}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    text = f"{round(x, decimals):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _plain_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: plain(v, 3)))


def floats(values: Any, scale: float = 1.0) -> Any:
    """A sampled column as floats with NaN where the file has no value (DuckDB returns masked arrays for
    columns with NULLs; their masked slots hold fill values, never to be drawn as data)."""
    import numpy as np

    return np.ma.asarray(values).astype(float).filled(np.nan) / scale


def _grid(n: int) -> tuple[int, int]:
    ncols = min(4, n)
    return (n + ncols - 1) // ncols, ncols


def _panels(count: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure of `count` panels in a near-square grid (each `width` x `height` inches, room for a
    title above) and the panels' axes in reading order."""
    nrows, ncols = _grid(count)
    fig = new_figure(width * ncols, height * nrows + 0.6)
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(count)]


def histograms(ds: Dataset, cols: list[Column], title: str) -> tuple[bytes, list[str]] | None:
    """One histogram per column (at most MAX_PANELS); columns without finite variation are skipped."""
    import numpy as np

    cols = cols[:MAX_PANELS]
    data = sample(ds, [c.name for c in cols], MODEL_ROWS) if cols else {}
    panels = []
    for c in cols:
        v = floats(data[c.name], c.scale)
        v = v[np.isfinite(v)]
        if v.size and np.ptp(v) > 0:
            panels.append((c, v))
    if not panels:
        return None
    fig, axes = _panels(len(panels), 3.6, 2.8)
    for ax, (c, v) in zip(axes, panels):
        ax.hist(v, bins=min(30, max(5, int(math.sqrt(v.size)))), color="#4C72B0", edgecolor="white")
        ax.set_title(short(c.name) + (f" (×{c.scale:.0e})" if c.scale != 1.0 else ""), fontsize=9)
        _plain_axis(ax.xaxis)
        _plain_axis(ax.yaxis)
        ax.tick_params(labelsize=7)
        for lab in ax.get_xticklabels():
            lab.set_rotation(30)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return png_bytes(fig), [c.name for c, _ in panels]


def heatmap(names: list[str], matrix: list[list[float | None]]) -> bytes | None:
    import numpy as np

    k = min(len(names), MAX_HEATMAP)
    if k < 2:
        return None
    arr = np.array([[np.nan if x is None else x for x in row[:k]] for row in matrix[:k]])
    fig = new_figure(0.7 * k + 3.5, 0.6 * k + 2.5)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(arr, cmap="coolwarm", vmin=-1, vmax=1)
    labels = [short(n, 18) for n in names[:k]]
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    if k <= 10:
        for i in range(k):
            for j in range(k):
                if np.isfinite(arr[i, j]):
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title("Pearson correlation" + (f" (first {k} of {len(names)} columns)" if len(names) > k else ""))
    fig.tight_layout()
    return png_bytes(fig)


def scatter(ds: Dataset, target: Column, best: Column, slope_line: bool = True) -> tuple[bytes, dict] | None:
    """Target against its strongest predictor, with a least-squares line (at most 5,000 points drawn)."""
    import numpy as np

    data = sample(ds, [best.name, target.name], MODEL_ROWS)
    x, y = floats(data[best.name], best.scale), floats(data[target.name], target.scale)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:
        return None
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    step = max(1, x.size // MAX_SCATTER_POINTS)
    fig = new_figure(7, 5)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x[::step], y[::step], s=10, alpha=0.6)
    xs = np.linspace(x.min(), x.max(), 50)
    ax.plot(xs, slope * xs + intercept, color="#C44E52",
            label=f"fit: y = {plain(slope)}·x {'−' if intercept < 0 else '+'} {plain(abs(intercept))}")
    ax.set_xlabel(short(best.name, 40))
    ax.set_ylabel(short(target.name, 40))
    _plain_axis(ax.xaxis)
    _plain_axis(ax.yaxis)
    ax.legend()
    ax.set_title(short(f"{target.name} vs {best.name}", 60))
    fig.tight_layout()
    return png_bytes(fig), {"best_predictor": best.name, "slope": slope, "intercept": intercept}


def bars(counts: dict[str, dict[str, int]], title: str) -> bytes | None:
    """Horizontal bars of the most frequent values, one panel per categorical column (at most 4)."""
    items = [(k, v) for k, v in counts.items() if len(v["counts"]) >= 2][:4]
    if not items:
        return None
    fig, axes = _panels(len(items), 4.2, 3.2)
    for ax, (name, info) in zip(axes, items):
        top = list(info["counts"].items())[:10][::-1]
        ax.barh([short(k, 18) for k, _ in top], [v for _, v in top], color="#55A868")
        ax.set_title(short(name), fontsize=9)
        _plain_axis(ax.xaxis)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return png_bytes(fig)


def numeric_first(ds: Dataset, target: str | None) -> list[Column]:
    """Numeric columns to chart: the target first, then file order."""
    nums = [c for c in ds.analysed() if c.kind == NUMERIC]
    return sorted(nums, key=lambda c: c.name != target)


def time_column(ds: Dataset) -> Column | None:
    """The column that holds time: the first date column, else the first integer-years column."""
    return next((c for c in ds.of(DATE)), None) or next((c for c in ds.analysed() if c.year), None)


def series_column(ds: Dataset) -> Column | None:
    """A category with 2..MAX_SERIES values that may split a long-format table into series (`symbol`)."""
    return next((c for c in ds.analysed() if c.kind in (CATEGORICAL, BOOLEAN) and 2 <= c.distinct <= MAX_SERIES),
                None)


def over_time(ds: Dataset, time: Column, cols: list[Column], series: Column | None = None
              ) -> tuple[bytes, list[str]] | None:
    """Each column's raw values against time (at most 4 panels): a line when every time occurs once; when
    several rows share a time (a long-format table), one line per value of `series` if given, else
    points. At most MAX_SCATTER_POINTS drawn per line, evenly spaced in time order."""
    import numpy as np

    cols = [c for c in cols if c is not time][:4]
    if not cols:
        return None
    data = sample(ds, [time.name] + [c.name for c in cols] + ([series.name] if series else []), MODEL_ROWS)
    t = np.ma.asarray(data[time.name])
    if t.dtype.kind not in "Mmfiu":
        return None
    t = t.filled(np.datetime64("NaT")) if t.dtype.kind in "Mm" else floats(t)
    groups = None
    if series is not None:
        g = np.ma.asarray(data[series.name])
        groups = np.where(np.ma.getmaskarray(g), None, np.asarray(g.data, dtype=object))
    fig = new_figure(7.5, 2.4 * len(cols) + 0.8)
    drawn = []
    for i, c in enumerate(cols):
        y = floats(data[c.name], c.scale)
        ok = np.isfinite(y) & ~(np.isnat(t) if t.dtype.kind in "Mm" else ~np.isfinite(t))
        if ok.sum() < 2:
            continue
        order = np.argsort(t[ok], kind="stable")
        tx, ty = t[ok][order], y[ok][order]
        once = np.unique(tx).size == tx.size
        ax = fig.add_subplot(len(cols), 1, i + 1)
        if once or groups is None:
            step = max(1, tx.size // MAX_SCATTER_POINTS)  # every step-th point in time order: bounded
            if once:
                ax.plot(tx[::step], ty[::step], color="#4C72B0", linewidth=1)
            else:
                ax.scatter(tx[::step], ty[::step], s=6, alpha=0.5, color="#4C72B0")
        else:
            gs = groups[ok][order]
            for level in sorted({v for v in gs if v is not None}, key=str):
                m = gs == level
                step = max(1, int(m.sum()) // MAX_SCATTER_POINTS)
                ax.plot(tx[m][::step], ty[m][::step], linewidth=1, label=short(str(level), 14))
            ax.legend(fontsize=6, title=short(series.name, 14), title_fontsize=6)
        ax.set_ylabel(short(c.name, 18), fontsize=8)
        _plain_axis(ax.yaxis)
        if t.dtype.kind not in "Mm":
            from matplotlib.ticker import FormatStrFormatter

            ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))  # years as 1947, not 1,947
        ax.tick_params(labelsize=7)
        drawn.append(c.name)
    if not drawn:
        return None
    fig.suptitle(f"Over time ({short(time.name, 30)})", fontsize=11)
    fig.tight_layout()
    return png_bytes(fig), drawn
