"""Batched simulation of X-ray spectra."""

from .background import PoissonBackground, SourceAndBackground, sample_background_levels
from .fold import Response
from .simulator import Simulator, sample_exposures

__all__ = ["Simulator", "sample_exposures", "Response", "PoissonBackground", "SourceAndBackground",
           "sample_background_levels"]
