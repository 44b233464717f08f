"""Batched simulation of X-ray spectra."""

from .fold import Response
from .simulator import Simulator

__all__ = ["Simulator", "Response"]
