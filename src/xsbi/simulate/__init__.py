"""Batched simulation of X-ray spectra."""

from .background import PoissonBackground, SourceAndBackground
from .fold import Response
from .simulator import Simulator

__all__ = ["Simulator", "Response", "PoissonBackground", "SourceAndBackground"]
