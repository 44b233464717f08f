"""Spectral models in XSPEC conventions."""

from . import additive, multiplicative  # noqa: F401  (registers the components)
from .component import Component, get_component
from .grid import EnergyGrid
from .model import BoundModel, Model
from .parameter import ParameterSpec

__all__ = ["Model", "BoundModel", "Component", "get_component", "EnergyGrid", "ParameterSpec"]
