"""Fit statistics in XSPEC conventions: C-stat, W-stat, chi^2, and the expected C-stat.

* :func:`cstat` -- Cash (1979) statistic for Poisson counts (XSPEC ``cstat``).
* :func:`wstat` -- C-stat with a profiled Poisson background (XSPEC ``cstat`` with a
  background file, reported as "W-statistic"; Wachter, Leach & Kellogg 1979).
* :func:`chi2` -- chi^2 with data (XSPEC ``weight standard``) or model weighting.
* :func:`expected_cstat`, :func:`cstat_variance`, :func:`cstat_goodness` -- exact mean and
  variance of the C-stat under the model for goodness of fit (Kaastra 2017, A&A 605, A51),
  and :func:`kaastra_expected_cstat`, :func:`kaastra_cstat_variance`, his published
  piecewise approximations.

All statistics accept numpy arrays or torch tensors (autograd-friendly), shaped
``(..., n_bins)`` with broadcasting, and sum over the last axis.
"""

from xsbi.stats.chi2 import chi2
from xsbi.stats.cstat import cstat
from xsbi.stats.expected import (
    ASYMPTOTIC_THRESHOLD,
    CstatGoodness,
    cstat_goodness,
    cstat_variance,
    expected_cstat,
    kaastra_cstat_variance,
    kaastra_expected_cstat,
)
from xsbi.stats.wstat import profile_background, wstat, wstat_goodness

__all__ = [
    "profile_background",
    "wstat_goodness",
    "ASYMPTOTIC_THRESHOLD",
    "CstatGoodness",
    "chi2",
    "cstat",
    "cstat_goodness",
    "cstat_variance",
    "expected_cstat",
    "kaastra_cstat_variance",
    "kaastra_expected_cstat",
    "wstat",
]
