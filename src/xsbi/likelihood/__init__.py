"""Exact-likelihood inference for comparison with simulation-based inference.

* :class:`PoissonLikelihood` -- the C-stat / W-stat likelihood of an observed spectrum
  (XSPEC conventions), batched over parameter vectors.
* :func:`fit_cstat` -- maximum-likelihood fit with covariance and delta-C = 1 errors.
* :func:`run_mcmc` -- emcee affine-invariant ensemble sampling of the posterior, run until
  the autocorrelation-time convergence criterion holds.
* :func:`run_nested` -- UltraNest nested sampling (as BXA does): the normalised Poisson evidence
  ``ln Z`` with its error, and posterior samples.
* :func:`summarize` -- median, 68% quantiles, mean and std of samples.
"""

from .fit import FitResult, StartResult, fit_cstat
from .mcmc import McmcResult, run_mcmc
from .nested import NestedResult, run_nested
from .poisson import PoissonLikelihood, summarize

__all__ = ["FitResult", "McmcResult", "NestedResult", "PoissonLikelihood", "StartResult", "fit_cstat", "run_mcmc",
           "run_nested", "summarize"]
