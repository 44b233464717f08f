"""Figures and numeric checks for reports: corner plots, folded spectra, prior checks, regression.

Every plot function writes a PNG with matplotlib's Agg renderer (pyplot is never used, so no
window opens and no figure is left behind) and returns the numbers it drew.

>>> from xsbi.report import plot_folded_spectrum                      # doctest: +SKIP
>>> resid = plot_folded_spectrum(spec, mu_best, "fit.png")           # doctest: +SKIP
"""

from ._common import CoverageWarning, ReportError
from .plots import (plot_corner, plot_folded_spectrum, plot_prior_predictive,
                    plot_prior_vs_restricted, plot_regression, poisson_errors,
                    prior_predictive_coverage, regression_summary, residual_sigma)

__all__ = [
    "plot_corner", "plot_folded_spectrum", "poisson_errors", "residual_sigma",
    "plot_prior_vs_restricted", "prior_predictive_coverage", "plot_prior_predictive",
    "regression_summary", "plot_regression", "ReportError", "CoverageWarning",
]
