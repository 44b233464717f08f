"""Multiplicative components (dimensionless factor per energy bin), XSPEC definitions.

The photoelectric absorbers give ``exp(-nH sigma(E))`` with sigma per hydrogen atom evaluated at
the bin centre and nH in 1e22 cm^-2.  Their log is linear in nH, so they join the log-linear
fast path of :mod:`.component` at no cost.
"""

from __future__ import annotations

import numpy as np
import torch

from .component import Component, Kernel, Params
from .parameter import ParameterSpec


class _LogLinearKernel(Kernel):
    """log(value) = sum_j f_j(theta) b_j(E) with fixed energy features b (k, n_E)."""

    def __init__(self, grid, device, dtype, energy_features: np.ndarray, features):
        super().__init__(grid, device, dtype)
        self.energy_features = self.tensor(np.atleast_2d(energy_features))
        self._features = features

    def spectrum_features(self, p: Params) -> torch.Tensor:
        return torch.stack(self._features(p), dim=1)


class _Absorber(Component):
    kind = "multiplicative"
    parameters = (ParameterSpec("nH", "1e22 cm^-2", 1.0, 0.0, 1e6, "equivalent hydrogen column"),)
    default_abund: str

    def cross_section(self):
        from .xsect import cross_section

        return cross_section(self.name, table=self.options.get("table"), abund=self.options.get("abund"))

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        sigma = self.cross_section().sigma(grid.mid)
        return _LogLinearKernel(grid, device, dtype, -sigma, lambda p: [p["nH"]])

    def describe(self) -> str:
        return f"{self.name}: {self.cross_section().source}"


class tbabs(_Absorber):
    """Tuebingen-Boulder ISM absorption (Wilms, Allen & McCray 2000), ``wilm`` abundances."""

    name = "tbabs"
    default_abund = "wilm"


class phabs(_Absorber):
    """Photoelectric absorption (Balucinska-Church & McCammon 1992 cross-sections)."""

    name = "phabs"
    default_abund = "aspl"


class wabs(_Absorber):
    """Photoelectric absorption of Morrison & McCammon (1983), ``angr`` abundances."""

    name = "wabs"
    default_abund = "angr"


class constant(Component):
    """Energy-independent multiplicative factor."""

    name = "constant"
    kind = "multiplicative"
    parameters = (ParameterSpec("factor", "", 1.0, 0.0, 1e10, "multiplicative factor"),)

    def kernel(self, grid, device="cpu", dtype=torch.float32):
        return _LogLinearKernel(grid, device, dtype, np.ones(len(grid)), lambda p: [torch.log(p["factor"])])
