"""Batched simulation of X-ray spectra."""

from .background import PoissonBackground, SourceAndBackground
from .fold import Response
from .simulator import Simulator, sample_exposures

__all__ = ["Simulator", "sample_exposures", "Response", "PoissonBackground", "SourceAndBackground"]
