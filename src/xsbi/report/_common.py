"""Helpers shared by the report figures.

Figures are built as :class:`matplotlib.figure.Figure` objects with an Agg canvas attached, never
through ``pyplot``: nothing is registered in pyplot's global figure list (so nothing can leak or
pop up), and the backend a user chose for their own session is left alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import XsbiError

# Colour-blind-safe enough and distinct in print; sets beyond these cycle.
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


class ReportError(XsbiError, ValueError):
    """Inputs to a report function are inconsistent (shapes, names, log of non-positive values)."""


class CoverageWarning(UserWarning):
    """The observed spectrum is not covered by the simulated (prior predictive) spectra."""


def new_figure(figsize) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created) and release its artists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        # The Figure is not known to pyplot, so clearing it is all "closing" means here.
        fig.clf()
    return path


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def as_samples(samples, n_params: int, what: str) -> np.ndarray:
    """``samples`` as a finite float (n, n_params) array; 1-D input is one parameter."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_params:
        raise ReportError(f"{what} must have shape (n, {n_params}) (one column per name); "
                          f"got {np.shape(samples)}.")
    if arr.shape[0] == 0:
        raise ReportError(f"{what} is empty.")
    if not np.all(np.isfinite(arr)):
        raise ReportError(f"{what} contains NaN or infinite values.")
    return arr


def check_log_params(names, log_params) -> list[bool]:
    """Per name, whether it is shown as log10; unknown names in ``log_params`` are an error."""
    log_params = [log_params] if isinstance(log_params, str) else list(log_params or ())
    unknown = [p for p in log_params if p not in names]
    if unknown:
        raise ReportError(f"log_params {unknown} are not among the parameter names {list(names)}.")
    return [n in log_params for n in names]


def to_plot_space(arr: np.ndarray, is_log, names, what: str) -> np.ndarray:
    """Columns flagged in ``is_log`` replaced by their log10."""
    out = np.array(arr, dtype=np.float64, copy=True)
    for j, flag in enumerate(is_log):
        if not flag:
            continue
        col = out[..., j]
        if np.any(col <= 0):
            raise ReportError(f"{what}: {names[j]} has values <= 0 and cannot be shown as log10; "
                              "drop it from log_params.")
        out[..., j] = np.log10(col)
    return out


def axis_labels(names, is_log) -> list[str]:
    return [f"log10 {n}" if flag else str(n) for n, flag in zip(names, is_log)]


def step_xy(bounds: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y of a step line over (possibly non-contiguous) bins; gaps between bins stay empty.

    Grouped, noticed bins need not touch (ignored bands, bad channels), and ``Axes.stairs``
    would bridge such gaps; a NaN between separated bins breaks the line instead.
    """
    lo, hi = bounds[:, 0], bounds[:, 1]
    values = np.asarray(values, dtype=np.float64)
    x = np.column_stack([lo, hi]).ravel()
    y = np.repeat(values, 2)
    gap = np.flatnonzero(~np.isclose(lo[1:], hi[:-1], rtol=1e-6, atol=0.0))
    if gap.size:
        at = 2 * (gap + 1)
        x = np.insert(x, at, np.nan)
        y = np.insert(y, at, np.nan)
    return x, y


def band_xy(bounds: np.ndarray, lo_values, hi_values):
    """x, lower, upper of a stepped band for ``fill_between`` (gaps masked)."""
    x, lo = step_xy(bounds, lo_values)
    _, hi = step_xy(bounds, hi_values)
    return x, np.ma.masked_invalid(lo), np.ma.masked_invalid(hi)
