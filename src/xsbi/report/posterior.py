"""Corner plots of posterior samples, several sample sets overlaid (e.g. NPE against MCMC)."""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from ._common import (COLORS, ReportError, as_samples, axis_labels, check_log_params,
                      new_figure, save, to_plot_space)

QUANTILES = (0.16, 0.5, 0.84)
# 2-D contours at the 1 and 2 sigma levels of a 2-D Gaussian (39.3% and 86.5% of the mass).
LEVELS = (1 - np.exp(-0.5), 1 - np.exp(-2.0))


def _common_range(sets, d):
    """Per-parameter axis range covering every set, ignoring the outer 0.1% tails of each.

    A few stray samples (common in NPE tails) would otherwise squeeze the posterior into a
    corner of its panel.
    """
    lo = np.min([np.quantile(s, 0.001, axis=0) for s in sets], axis=0)
    hi = np.max([np.quantile(s, 0.999, axis=0) for s in sets], axis=0)
    out = []
    for j in range(d):
        a, b = float(lo[j]), float(hi[j])
        if not b > a:  # a frozen or degenerate column: corner refuses a zero-width range
            pad = 0.5 * abs(a) if a != 0 else 0.5
            a, b = a - pad, b + pad
        pad = 0.05 * (b - a)
        out.append((a - pad, b + pad))
    return out


def format_interval(median: float, minus: float, plus: float) -> str:
    """``median_{-minus}^{+plus}`` in mathtext, rounded to two significant digits of the error."""
    errors = [e for e in (minus, plus) if e > 0 and np.isfinite(e)]
    if not errors:
        return f"${median:.3g}$"
    scale = max(abs(median), *errors)
    exp = int(np.floor(np.log10(scale))) if scale >= 1e5 or scale < 1e-3 else 0
    m, lo, hi, err = (v / 10.0**exp for v in (median, minus, plus, min(errors)))
    digits = int(np.clip(1 - np.floor(np.log10(err)), 0, 12))
    if round(m, digits) == 0:
        m = 0.0  # no "-0.000"
    text = f"{m:.{digits}f}_{{-{lo:.{digits}f}}}^{{+{hi:.{digits}f}}}"
    return f"$({text})\\times 10^{{{exp}}}$" if exp else f"${text}$"


def plot_corner(sample_sets, names, path, labels=None, truths=None, colors=None,
                log_params=(), bins=30, smooth=1.0):
    """Overlaid corner plots of one or several posterior sample sets.

    Parameters
    ----------
    sample_sets : array (n, d) or list/tuple of them
        Posterior samples, one column per name; sets may differ in size (each is normalised).
    names : list of str
        Parameter names, e.g. ``"powerlaw.PhoIndex"``.
    path : str or Path
        Output PNG.
    labels : list of str, optional
        Legend entries, one per set (e.g. ``["NPE", "MCMC"]``).
    truths : array_like (d,), optional
        True or reference values, drawn as black lines.
    colors : list of colours, optional
    log_params : list of str
        Names plotted as log10 (labelled ``"log10 name"``); their samples must be > 0.
    bins, smooth
        Passed to ``corner.corner`` (``smooth`` is the Gaussian kernel width in bins).

    Returns
    -------
    dict
        ``axis_labels``; ``quantiles``: (n_sets, d, 3) array of the 16/50/84% quantiles in the
        plotted coordinates (log10 for ``log_params``); ``ranges``: the axis ranges; ``path``.

    Notes
    -----
    Every set gets dashed 16/50/84% quantile lines in its colour; the panel titles give the
    median and its 68% interval for the first set only.
    """
    try:
        import corner
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_corner needs the 'corner' package: pip install corner") from exc

    names = [str(n) for n in names]
    d = len(names)
    if not isinstance(sample_sets, (list, tuple)):  # one array (numpy, torch, ...)
        sample_sets = [sample_sets]
    sample_sets = list(sample_sets)
    if not sample_sets:
        raise ReportError("plot_corner needs at least one sample set.")
    is_log = check_log_params(names, log_params)
    sets = [to_plot_space(as_samples(s, d, f"sample set {k}"), is_log, names, f"sample set {k}")
            for k, s in enumerate(sample_sets)]
    if labels is not None and len(labels) != len(sets):
        raise ReportError(f"{len(labels)} labels for {len(sets)} sample sets.")
    colors = list(colors) if colors is not None else \
        [COLORS[k % len(COLORS)] for k in range(len(sets))]
    if len(colors) != len(sets):
        raise ReportError(f"{len(colors)} colors for {len(sets)} sample sets.")
    truth_values = None
    if truths is not None:
        truth_values = to_plot_space(np.asarray(truths, dtype=np.float64).reshape(1, -1),
                                     is_log, names, "truths")
        if truth_values.shape[1] != d:
            raise ReportError(f"truths has {truth_values.shape[1]} values for {d} names.")
        truth_values = truth_values[0]

    ax_labels = axis_labels(names, is_log)
    ranges = _common_range(sets, d)
    # Figure size as corner itself would choose (2 inch panels plus margins).
    size = 1.0 + 2.0 * d + 0.1 * (d - 1) + 0.4
    fig = new_figure((size, size + 0.3))
    quantiles = np.empty((len(sets), d, 3))
    for k, (s, color) in enumerate(zip(sets, colors)):
        quantiles[k] = np.quantile(s, QUANTILES, axis=0).T
        corner.corner(
            s, fig=fig, bins=bins, range=ranges, color=color, smooth=smooth,
            weights=np.full(s.shape[0], 1.0 / s.shape[0]),  # sets of any size compare
            labels=ax_labels, quantiles=list(QUANTILES), levels=LEVELS,
            show_titles=False,
            truths=truth_values if k == len(sets) - 1 else None, truth_color="k",
            plot_datapoints=False, plot_density=False, no_fill_contours=True,
            hist_kwargs={"linewidth": 1.4},
            contour_kwargs={"linewidths": 1.2},
        )
    # Titles drawn here rather than by corner: its "label = value" titles overflow the panels.
    diagonal = np.array(fig.axes).reshape(d, d).diagonal()
    for j, ax in enumerate(diagonal):
        q16, q50, q84 = quantiles[0, j]
        ax.set_title(format_interval(q50, q50 - q16, q84 - q50), fontsize=10)
    if labels is not None:
        handles = [Line2D([], [], color=c, lw=2) for c in colors]
        fig.legend(handles, [str(lb) for lb in labels], loc="upper right",
                   bbox_to_anchor=(0.98, 0.98), fontsize=12, frameon=False)
    save(fig, path)
    return {"axis_labels": ax_labels, "quantiles": quantiles, "ranges": ranges,
            "path": str(path)}
