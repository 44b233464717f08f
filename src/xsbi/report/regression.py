"""Inferred against input parameters over a test set (the seed paper's Figs. 5, 7 and 8)."""

from __future__ import annotations

import numpy as np

from ._common import (COLORS, ReportError, as_samples, axis_labels, check_log_params,
                      grid_shape, new_figure, save, to_plot_space)


def _names(names, d):
    if names is None:
        return [f"param_{j}" for j in range(d)]
    names = [str(n) for n in names]
    if len(names) != d:
        raise ReportError(f"{len(names)} names for {d} parameters.")
    return names


def _ols(x, y):
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ReportError("true values are all equal for a parameter; no regression possible.")
    slope = float(dx @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    ss_res = float(np.sum((y - (intercept + slope * x)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return slope, intercept, r2


def regression_summary(true, estimate, names=None, log_params=()):
    """Ordinary least-squares fit of ``estimate = slope * true + intercept`` per parameter.

    Parameters
    ----------
    true, estimate : array_like (n,) or (n, d)
        Input parameters of a test set and their estimates (e.g. posterior medians).
    names : list of str, optional
        Keys of the result; default ``param_0``, ``param_1``, ...
    log_params : list of str
        Names regressed in log10 (as they are plotted).

    Returns
    -------
    dict
        Per name: ``slope``, ``intercept``, ``r2`` (coefficient of determination of the fit,
        1 - SS_res / SS_tot; NaN if the estimates are constant) and ``n``.
    """
    t = np.asarray(true, dtype=np.float64)
    d = 1 if t.ndim == 1 else t.shape[-1]
    names = _names(names, d)
    is_log = check_log_params(names, log_params)
    t = to_plot_space(as_samples(true, d, "true"), is_log, names, "true")
    e = as_samples(estimate, d, "estimate")
    if e.shape != t.shape:
        raise ReportError(f"true has shape {t.shape} but estimate {e.shape}.")
    e = to_plot_space(e, is_log, names, "estimate")
    out = {}
    for j, name in enumerate(names):
        slope, intercept, r2 = _ols(t[:, j], e[:, j])
        out[name] = {"slope": slope, "intercept": intercept, "r2": r2, "n": int(t.shape[0])}
    return out


def plot_regression(true, median, q16, q84, names, path, log_params=()):
    """Inferred median with 68% error bars against the input value, one panel per parameter.

    Each panel has the 1:1 line, the least-squares line and its slope, intercept and R^2.

    Parameters
    ----------
    true, median, q16, q84 : array_like (n, d)
        Input parameters of a test set and the 50%, 16% and 84% quantiles of their posteriors.
    names : list of str
    path : str or Path
        Output PNG.
    log_params : list of str
        Names shown and regressed in log10.

    Returns
    -------
    dict
        :func:`regression_summary` of ``median`` against ``true``.
    """
    names = [str(n) for n in names]
    d = len(names)
    is_log = check_log_params(names, log_params)
    arrays = {}
    for key, value in (("true", true), ("median", median), ("q16", q16), ("q84", q84)):
        arr = as_samples(value, d, key)
        if "true" in arrays and arr.shape != arrays["true"].shape:
            raise ReportError(f"{key} has shape {arr.shape} but true {arrays['true'].shape}.")
        arrays[key] = to_plot_space(arr, is_log, names, key)
    summary = regression_summary(true, median, names, log_params)
    t, m = arrays["true"], arrays["median"]
    # Clipped at 0 so that quantiles passed in the wrong order cannot make negative bar lengths.
    yerr = np.stack([np.clip(m - arrays["q16"], 0, None), np.clip(arrays["q84"] - m, 0, None)])
    labels = axis_labels(names, is_log)

    rows, cols = grid_shape(d)
    fig = new_figure((4.0 * cols, 3.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    alpha = float(np.clip(30.0 / np.sqrt(t.shape[0]), 0.15, 0.9))  # dense test sets stay legible
    for j, name in enumerate(names):
        ax = axes[j]
        ax.errorbar(t[:, j], m[:, j], yerr=yerr[:, :, j], fmt="o", ms=2.5, color=COLORS[0],
                    ecolor=COLORS[0], elinewidth=0.6, alpha=alpha, zorder=2)
        lo = min(t[:, j].min(), (m[:, j] - yerr[0, :, j]).min())
        hi = max(t[:, j].max(), (m[:, j] + yerr[1, :, j]).max())
        pad = 0.03 * (hi - lo) if hi > lo else 0.5
        line = np.array([lo - pad, hi + pad])
        ax.plot(line, line, color="k", lw=1.0, ls="--", label="1:1", zorder=3)
        s = summary[name]
        ax.plot(line, s["intercept"] + s["slope"] * line, color=COLORS[1], lw=1.3,
                label="least squares", zorder=3)
        ax.set_xlim(line)
        ax.set_ylim(line)
        ax.text(0.04, 0.96, f"slope = {s['slope']:.3f}\nintercept = {s['intercept']:.3g}\n"
                f"$R^2$ = {s['r2']:.3f}", transform=ax.transAxes, va="top", fontsize=8,
                bbox={"fc": "white", "ec": "0.8", "alpha": 0.8})
        ax.set_xlabel(f"input {labels[j]}")
        ax.set_ylabel(f"inferred {labels[j]}")
    for ax in axes[d:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    save(fig, path)
    return summary
