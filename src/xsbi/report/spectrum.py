"""The folded-spectrum plot: data in counts/s/keV with the folded model and residuals."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ._common import ReportError, band_xy, new_figure, save, step_xy


def poisson_errors(counts, n_sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ``n_sigma`` errors on Poisson counts (Garwood / Gehrels 1986 limits).

    The limits are the exact frequentist single-sided ones at the Gaussian ``n_sigma``
    probability (84.13% for 1 sigma), ``0.5 chi2.ppf(1 - CL, 2N)`` and ``0.5 chi2.ppf(CL, 2N+2)``,
    which Gehrels (1986, ApJ 303, 336) tabulated and approximated.  Unlike ``sqrt(N)`` they are
    asymmetric and non-zero for N = 0 (upper error 1.84), so low-count bins are honest.

    Returns
    -------
    lower, upper : ndarray
        Distances below and above ``counts`` (lower is 0 for N = 0).
    """
    n = np.asarray(counts, dtype=np.float64)
    cl = special.ndtr(n_sigma)
    upper = 0.5 * stats.chi2.ppf(cl, 2.0 * n + 2.0) - n
    lower = np.zeros_like(n)
    pos = n > 0
    lower[pos] = n[pos] - 0.5 * stats.chi2.ppf(1.0 - cl, 2.0 * n[pos])
    return lower, upper


def residual_sigma(counts, model, kind: str = "model") -> np.ndarray:
    """The sigma dividing ``data - model`` in the residual panel.

    Parameters
    ----------
    counts, model : array_like (n_bins,)
        Observed and predicted counts per bin.
    kind : {"model", "data"}
        ``"model"`` (default): ``sqrt(model)``, the Poisson standard deviation the model
        predicts (Pearson residuals).  These have unit variance when the model is right at any
        count level, whereas data-based errors do not: with ~10 counts per bin, residuals over
        ``sqrt(max(N, 1))`` scatter with sd ~0.8 and over the conservative Gehrels limits ~0.67,
        which hides misfits.  Bins where the model predicts nothing fall back to the data's
        upper error (>= 1.84).
        ``"data"``: the data's Poisson error on the side of the model (:func:`poisson_errors`;
        lower error where data > model, else upper), as XSPEC-style plots with Gehrels errors.
    """
    counts = np.asarray(counts, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    lower, upper = poisson_errors(counts)
    if kind == "data":
        return np.where(counts > model, lower, upper)
    if kind != "model":
        raise ReportError(f"residual kind must be 'model' or 'data'; got {kind!r}.")
    return np.where(model > 0, np.sqrt(np.clip(model, 0.0, None)), upper)


def _bin_array(values, n_bins, what):
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n_bins,):
        raise ReportError(f"{what} must have shape ({n_bins},) (one value per grouped, noticed "
                          f"bin of the spectrum); got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ReportError(f"{what} contains NaN or infinite values.")
    return arr


def plot_folded_spectrum(spec, model_counts, path, model_band=None, label="best fit",
                         title=None, add_background=True, residuals="model"):
    """Counts/s/keV per grouped bin against energy with the folded model, and residuals.

    Parameters
    ----------
    spec : xsbi.Spectrum
        The observed spectrum (total counts, source plus background if it has one).
    model_counts : array_like (n_bins,)
        Folded model counts per bin, e.g. ``Simulator.expected_counts(theta)[0]``.
    path : str or Path
        Output PNG.
    model_band : (lo, hi) of arrays (n_bins,), optional
        A band of model counts, e.g. the 16-84% posterior predictive interval.
    label : str
        Legend entry of the model.
    title : str, optional
    add_background : bool
        When the spectrum has a background, add its scaled counts
        (``background_counts * background_ratio``) to the model and band before comparing them
        with the total observed counts; pass False if ``model_counts`` already include it.
    residuals : {"model", "data"}
        Which sigma divides the residuals, see :func:`residual_sigma`.

    Returns
    -------
    ndarray (n_bins,)
        Residuals ``(data - model) / residual_sigma(data, model, residuals)``, the model
        including the scaled background when it is added (its own noise is not included).

    Notes
    -----
    Data error bars are the exact Poisson (Garwood, tabulated by Gehrels 1986) 1-sigma limits
    of :func:`poisson_errors`: asymmetric, and finite for empty bins, which are drawn as
    upper-limit arrows since zero has no place on a log axis.
    """
    n = spec.n_bins
    counts = np.asarray(spec.counts, dtype=np.float64)
    model = _bin_array(model_counts, n, "model_counts")
    band = None
    if model_band is not None:
        if len(model_band) != 2:
            raise ReportError("model_band must be a pair (lo, hi) of count arrays.")
        band = [_bin_array(b, n, f"model_band[{i}]") for i, b in enumerate(model_band)]
    background = None
    if spec.background_counts is not None:
        background = np.asarray(spec.background_counts, float) * np.asarray(spec.background_ratio)
        if add_background:
            model = model + background
            if band is not None:
                band = [b + background for b in band]

    resid = (counts - model) / residual_sigma(counts, model, residuals)
    lower, upper = poisson_errors(counts)

    bounds = np.asarray(spec.energy_bounds, dtype=np.float64)
    centre = np.sqrt(bounds[:, 0] * bounds[:, 1])  # geometric: the middle on a log axis
    xerr = np.vstack([centre - bounds[:, 0], bounds[:, 1] - centre])
    scale = 1.0 / (spec.exposure * (bounds[:, 1] - bounds[:, 0]))  # counts -> counts/s/keV

    fig = new_figure((7.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1],
                                                                "hspace": 0.0})
    det = counts > 0
    top.errorbar(centre[det], (counts * scale)[det], xerr=xerr[:, det],
                 yerr=np.vstack([lower, upper])[:, det] * scale[det], fmt="o", ms=2.5,
                 color="k", ecolor="0.3", elinewidth=0.8, label="data", zorder=3)
    if (~det).any():
        # Empty bins cannot sit on a log axis: show their 1-sigma upper limit as an arrow.
        ul = (upper * scale)[~det]
        top.errorbar(centre[~det], ul, xerr=xerr[:, ~det], yerr=0.4 * ul, uplims=True,
                     fmt="none", color="0.3", ecolor="0.3", elinewidth=0.8, zorder=3)
    if band is not None:
        x, blo, bhi = band_xy(bounds, band[0] * scale, band[1] * scale)
        top.fill_between(x, blo, bhi, color="C1", alpha=0.35, lw=0,
                         label=f"{label} band", zorder=1)
    # Zeros are left out of the steps: on a log axis they would plunge off the panel.
    x, y = step_xy(bounds, np.where(model > 0, model * scale, np.nan))
    shown_label = f"{label} + background" if background is not None and add_background else label
    top.plot(x, y, color="C1", lw=1.5, label=shown_label, zorder=2)
    if background is not None:
        x, y = step_xy(bounds, np.where(background > 0, background * scale, np.nan))
        top.plot(x, y, color="C2", lw=1.0, ls="--", label="background (scaled)", zorder=2)
    top.set_xscale("log")
    top.set_yscale("log")
    shown = [(counts * scale)[det] - (lower * scale)[det], (upper * scale)[~det] * 0.6,
             model[model > 0] * scale[model > 0]]
    shown = np.concatenate([s for s in shown if s.size])
    shown = shown[shown > 0]
    if shown.size:
        top.set_ylim(0.5 * shown.min(), 2.0 * max(shown.max(), ((counts + upper) * scale).max()))
    top.set_ylabel("counts s$^{-1}$ keV$^{-1}$")
    top.legend(fontsize=9, frameon=False)
    if title:
        top.set_title(title)

    bottom.errorbar(centre, resid, xerr=xerr, yerr=1.0, fmt="o", ms=2.0, color="k",
                    ecolor="0.3", elinewidth=0.8)
    bottom.axhline(0.0, color="C1", lw=1.2)
    lim = max(3.5, 1.1 * float(np.max(np.abs(resid))) + 1.0)
    bottom.set_ylim(-lim, lim)
    bottom.set_xlabel("Energy (keV)")
    bottom.set_ylabel(r"(data$-$model)/$\sigma$")
    bottom.set_xlim(bounds[0, 0] * 0.95, bounds[-1, 1] * 1.05)
    fig.align_ylabels([top, bottom])
    save(fig, path)
    return resid
