"""Neural posterior estimation for X-ray spectra (seed paper, sections 2-5 and 7).

* :class:`NPE` -- single-round amortized NPE: ``NPE(model, prior, spectrum).append_simulations(theta, x).train()``
* :func:`train_multiround` -- multi-round NPE on one observation with truncated proposals
* :mod:`.restriction` -- restricted priors (classifier with count-window or C-stat criteria; coarse NPE)
* :class:`AmortizedPosterior` -- sampling, densities, compatibility checks, safe save/load
"""

from .importance import ImportanceResult, importance_resample
from .multiround import train_multiround
from .npe import NPE
from .posterior import AmortizedPosterior
from .preprocess import Preprocessor
from .restriction import (CountsWindow, CstatFraction, RestrictedPrior, restrict_with_classifier,
                          restrict_with_coarse_npe)
from .result import PosteriorResult, summarize
from .space import ParameterSpace

__all__ = ["importance_resample", "ImportanceResult", "NPE", "train_multiround", "AmortizedPosterior", "Preprocessor", "CountsWindow", "CstatFraction",
           "RestrictedPrior", "restrict_with_classifier", "restrict_with_coarse_npe", "PosteriorResult",
           "summarize", "ParameterSpace"]
