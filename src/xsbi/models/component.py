"""Spectral components and their *kernels* (a component bound to an energy grid and a device).

A kernel returns, for a batch of N parameter vectors, one value per energy bin: photons/cm^2/s
integrated over the bin for additive components, a dimensionless factor for multiplicative ones.

Why kernels expose *log-linear features*: for the components that dominate simulation cost
(power law, photoelectric absorption, constant) the logarithm of the bin value is a linear form
``sum_j a_j(theta) * b_j(E)``.  A product of such components is then a single small matrix
product followed by one ``exp``, instead of a chain of element-wise passes over an (N, n_E)
array.  This is what makes the batched simulator fast on a CPU.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from .grid import EnergyGrid
from .parameter import ParameterSpec

Params = dict[str, torch.Tensor]


class Kernel:
    """A component evaluated on one energy grid, device and dtype."""

    def __init__(self, grid: EnergyGrid, device: torch.device, dtype: torch.dtype):
        self.grid = grid
        self.device = torch.device(device)
        self.dtype = dtype

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=self.dtype, device=self.device)

    # --- log-linear fast path (optional) -------------------------------------------------------
    #: (k, n_E) energy features, or None when the component has no log-linear form.
    energy_features: torch.Tensor | None = None

    def spectrum_features(self, p: Params) -> torch.Tensor:
        """(N, k) parameter features such that log(value) = features @ energy_features."""
        raise NotImplementedError

    def log_linear_ok(self, p: Params) -> bool:
        """Whether the log-linear form is accurate for these parameters."""
        return self.energy_features is not None

    # --- general path --------------------------------------------------------------------------
    def value(self, p: Params) -> torch.Tensor:
        """(N, n_E) bin values."""
        if self.energy_features is None:
            raise NotImplementedError
        return torch.exp(self.spectrum_features(p) @ self.energy_features)


class Component:
    """Base class of XSPEC-style model components (subclasses register themselves by name)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "additive" or "multiplicative"
    parameters: ClassVar[tuple[ParameterSpec, ...]]
    registry: ClassVar[dict[str, type["Component"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Component.registry[cls.name.lower()] = cls

    def __init__(self, **options):
        # options configure a component without being fit parameters (e.g. an absorption table).
        self.options = options

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def kernel(self, grid: EnergyGrid, device="cpu", dtype=torch.float32) -> Kernel:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for a run's record (e.g. where an absorption cross-section came from)."""
        return self.name


def get_component(name: str) -> type[Component]:
    from ..errors import ModelError

    try:
        return Component.registry[name.lower()]
    except KeyError:
        known = ", ".join(sorted(Component.registry))
        raise ModelError(f"unknown model component '{name}'; known components: {known}") from None
