"""Prior checks: full against restricted prior, and prior predictive coverage of the data."""

from __future__ import annotations

import warnings

import numpy as np

from ._common import (COLORS, CoverageWarning, ReportError, as_samples, axis_labels, band_xy,
                      check_log_params, grid_shape, new_figure, save, step_xy, to_plot_space)

COVER_LEVEL = 0.99
COVER_MIN_BINS = 0.90


# ------------------------------------------------------------------ full vs restricted prior
def plot_prior_vs_restricted(prior_samples, restricted_samples, names, path, log_params=(),
                             bins=40):
    """1-D histograms per parameter of the full prior and of the restricted prior.

    Parameters
    ----------
    prior_samples, restricted_samples : array_like (n, d)
        Draws from the full and the restricted prior (sizes may differ; histograms are
        densities).
    names : list of str
    path : str or Path
        Output PNG.
    log_params : list of str
        Names histogrammed in log10 (labelled ``"log10 name"``).
    bins : int

    Returns
    -------
    dict
        Per name: ``prior_range`` and ``restricted_range`` (min, max, in the parameter's own
        units), ``restricted_quantiles`` (16/50/84%) and ``width_ratio``, the restricted range
        over the prior range in the plotted coordinates.
    """
    names = [str(n) for n in names]
    d = len(names)
    is_log = check_log_params(names, log_params)
    prior = as_samples(prior_samples, d, "prior_samples")
    restricted = as_samples(restricted_samples, d, "restricted_samples")
    prior_p = to_plot_space(prior, is_log, names, "prior_samples")
    restricted_p = to_plot_space(restricted, is_log, names, "restricted_samples")
    labels = axis_labels(names, is_log)

    rows, cols = grid_shape(d)
    fig = new_figure((3.6 * cols, 2.9 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    summary = {}
    for j, name in enumerate(names):
        ax = axes[j]
        lo = min(prior_p[:, j].min(), restricted_p[:, j].min())
        hi = max(prior_p[:, j].max(), restricted_p[:, j].max())
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        ax.hist(prior_p[:, j], bins=edges, density=True, color="0.75", label="prior")
        ax.hist(restricted_p[:, j], bins=edges, density=True, histtype="stepfilled",
                color=COLORS[0], alpha=0.45, ec=COLORS[0], lw=1.2, label="restricted prior")
        ax.set_xlabel(labels[j])
        ax.set_yticks([])
        p_width = np.ptp(prior_p[:, j])
        summary[name] = {
            "prior_range": (float(prior[:, j].min()), float(prior[:, j].max())),
            "restricted_range": (float(restricted[:, j].min()), float(restricted[:, j].max())),
            "restricted_quantiles": tuple(float(q) for q in
                                          np.quantile(restricted[:, j], [0.16, 0.5, 0.84])),
            "width_ratio": float(np.ptp(restricted_p[:, j]) / p_width) if p_width > 0
            else float("nan"),
        }
    for ax in axes[d:]:
        ax.set_visible(False)
    handles, names_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, names_, loc="upper center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.9 * rows)))
    save(fig, path)
    return summary


# ------------------------------------------------------------------ prior predictive coverage
def _simulated(spec, simulated_counts) -> np.ndarray:
    sims = np.asarray(simulated_counts, dtype=np.float64)
    if sims.ndim != 2 or sims.shape[1] != spec.n_bins:
        raise ReportError(f"simulated_counts must have shape (n_simulations, {spec.n_bins}) "
                          f"(the spectrum's grouped, noticed bins); got {sims.shape}.")
    if sims.shape[0] < 2:
        raise ReportError("simulated_counts needs at least 2 simulated spectra.")
    if not np.all(np.isfinite(sims)):
        raise ReportError("simulated_counts contains NaN or infinite values.")
    return sims


def _ecdf_at(sims, obs, chunk=8192):
    """Per bin, the fractions of simulations below and at-or-below the observed value."""
    below = np.zeros(sims.shape[1])
    at_or_below = np.zeros(sims.shape[1])
    # Row chunks keep the boolean temporaries small for 1e5+ simulations.
    for start in range(0, sims.shape[0], chunk):
        part = sims[start:start + chunk]
        below += (part < obs).sum(0)
        at_or_below += (part <= obs).sum(0)
    return below / sims.shape[0], at_or_below / sims.shape[0]


def _inside_fraction(below, at_or_below, level):
    """How much of each observed value lies in the central ``level`` interval, in [0, 1].

    An observed count equal to simulated counts occupies the PIT interval [F(x-), F(x)]; the
    share of it inside [(1-level)/2, (1+level)/2] is counted.  Counts are discrete (few per bin
    at low flux), and counting ties as wholly inside or outside would bias the fraction away
    from ``level`` even when the observation is a draw of the simulated distribution; split
    this way its expectation is exactly ``level``.
    """
    a, b = 0.5 * (1.0 - level), 0.5 * (1.0 + level)
    width = at_or_below - below
    overlap = np.clip(np.minimum(b, at_or_below) - np.maximum(a, below), 0.0, None)
    point = ((below >= a) & (below <= b)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, overlap / np.where(width > 0, width, 1.0), point)


def _coverage(spec, sims, levels):
    obs = np.asarray(spec.counts, dtype=np.float64)
    levels = tuple(float(lv) for lv in levels)
    for lv in levels:
        if not 0.0 < lv < 1.0:
            raise ReportError(f"coverage levels must lie in (0, 1); got {lv}.")
    below, at_or_below = _ecdf_at(sims, obs)
    totals = sims.sum(axis=1)
    total_obs = float(obs.sum())
    t_below, t_at = np.mean(totals < total_obs), np.mean(totals <= total_obs)
    per_level = {}
    for lv in sorted(set(levels) | {COVER_LEVEL}):
        t_lo, t_hi = np.quantile(totals, [0.5 * (1 - lv), 0.5 * (1 + lv)])
        per_level[lv] = {
            "bins_inside": float(np.mean(_inside_fraction(below, at_or_below, lv))),
            "total_interval": (float(t_lo), float(t_hi)),
            "total_inside": bool(t_lo <= total_obs <= t_hi),
        }
    top = per_level[COVER_LEVEL]
    covered = top["total_inside"] and top["bins_inside"] >= COVER_MIN_BINS
    return {
        "levels": per_level,
        "n_simulations": int(sims.shape[0]),
        "total_observed": total_obs,
        "total_quantile": float(0.5 * (t_below + t_at)),
        "covered": bool(covered),
    }


def prior_predictive_coverage(spec, simulated_counts, levels=(0.68, 0.95, 0.99)):
    """How well spectra simulated from the (restricted) prior cover the observed spectrum.

    Parameters
    ----------
    spec : xsbi.Spectrum
        The observation (``spec.counts``).
    simulated_counts : array_like (n_simulations, n_bins)
        Poisson spectra simulated from prior draws, made like the observation (background
        included if the observation has one).
    levels : sequence of float
        Central interval probabilities.

    Returns
    -------
    dict
        ``levels``: per level (0.99 always included), ``bins_inside`` (fraction of bins whose
        observed counts lie in the per-bin central interval of the simulations, ties at the
        interval edges shared out; ~level for an observation drawn like the simulations),
        ``total_interval`` (central interval of the simulated total counts) and
        ``total_inside``; ``total_observed``; ``total_quantile`` (where the observed total sits
        among simulated ones); ``n_simulations``; ``covered``: total counts inside the 99%
        interval and >= 90% of bins inside the 99% band.

    Warns
    -----
    CoverageWarning
        When not covered: training on this prior would ask the network to extrapolate.
    """
    sims = _simulated(spec, simulated_counts)
    result = _coverage(spec, sims, levels)
    if not result["covered"]:
        top = result["levels"][COVER_LEVEL]
        lo, hi = top["total_interval"]
        warnings.warn(
            "The observed spectrum lies outside what the restricted prior produces: its "
            f"{result['total_observed']:.0f} counts are "
            f"{'inside' if top['total_inside'] else 'outside'} the 99% interval "
            f"[{lo:.0f}, {hi:.0f}] of the simulated totals and "
            f"{100 * top['bins_inside']:.1f}% of its bins lie in the per-bin 99% band (need "
            f">= {100 * COVER_MIN_BINS:.0f}%). Widen the prior restriction (or check the model, "
            "response and background) before training on it.",
            CoverageWarning, stacklevel=2,
        )
    return result


def plot_prior_predictive(spec, simulated_counts, path, levels=(0.68, 0.95, 0.99)):
    """Prior predictive bands of counts per bin against energy, with the observed spectrum.

    Shows, as in the seed paper's Fig. 4, the per-bin central intervals of the simulated
    spectra (one shade per level), their median and the observed counts.

    Parameters
    ----------
    spec : xsbi.Spectrum
    simulated_counts : array_like (n_simulations, n_bins)
    path : str or Path
        Output PNG.
    levels : sequence of float

    Returns
    -------
    dict
        ``median`` (n_bins,), ``bands``: {level: (lo, hi)} per-bin quantiles, and ``coverage``:
        :func:`prior_predictive_coverage`'s result (computed without warning; the panel says
        whether the data are covered).
    """
    sims = _simulated(spec, simulated_counts)
    coverage = _coverage(spec, sims, levels)
    levels = sorted(float(lv) for lv in levels)
    median = np.median(sims, axis=0)
    bands = {lv: tuple(np.quantile(sims, [0.5 * (1 - lv), 0.5 * (1 + lv)], axis=0))
             for lv in levels}
    bounds = np.asarray(spec.energy_bounds, dtype=np.float64)
    obs = np.asarray(spec.counts, dtype=np.float64)

    fig = new_figure((7.5, 4.8))
    ax = fig.subplots()
    for k, lv in enumerate(reversed(levels)):  # widest first so narrower shades sit on top
        x, lo, hi = band_xy(bounds, *bands[lv])
        ax.fill_between(x, lo, hi, color=COLORS[0], alpha=0.18 + 0.17 * k, lw=0,
                        label=f"{100 * lv:g}% of simulations")
    x, y = step_xy(bounds, median)
    ax.plot(x, y, color=COLORS[0], lw=1.3, label="median of simulations")
    x, y = step_xy(bounds, obs)
    ax.plot(x, y, color=COLORS[1], lw=1.0, label="observed")
    ax.set_xscale("log")
    # Counts per bin include zeros: symlog is linear below 1 count and logarithmic above.
    ax.set_yscale("symlog", linthresh=1.0, linscale=0.4)
    ax.set_ylim(0.0, None)
    ax.set_xlim(bounds[0, 0], bounds[-1, 1])
    ax.set_xlabel("Energy (keV)")
    ax.set_ylabel("counts per bin")
    top = coverage["levels"][COVER_LEVEL]
    verdict = "covered" if coverage["covered"] else "NOT covered: widen the prior"
    ax.set_title(f"{100 * top['bins_inside']:.1f}% of bins in the 99% band, observed total at "
                 f"quantile {coverage['total_quantile']:.3f} of simulated: {verdict}",
                 fontsize=9, color="k" if coverage["covered"] else COLORS[1])
    ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    save(fig, path)
    return {"median": median, "bands": bands, "coverage": coverage}
