"""All report figures in one namespace (they live in small modules of :mod:`xsbi.report`)."""

from .posterior import plot_corner
from .predictive import plot_prior_predictive, plot_prior_vs_restricted, prior_predictive_coverage
from .regression import plot_regression, regression_summary
from .spectrum import plot_folded_spectrum, poisson_errors, residual_sigma

__all__ = [
    "plot_corner", "plot_folded_spectrum", "poisson_errors", "residual_sigma",
    "plot_prior_vs_restricted", "prior_predictive_coverage", "plot_prior_predictive",
    "regression_summary", "plot_regression",
]
