"""The model energy grid (the response's ENERG_LO/ENERG_HI) and the quantities derived from it.

Components integrate their photon spectrum over each bin of this grid (photons/cm^2/s per bin),
as XSPEC does.  Everything here is float64 numpy and computed once per grid; kernels cast it to
the simulation device and dtype.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..errors import ModelError


class EnergyGrid:
    """Contiguous or not, strictly positive energy bins ``[lo, hi)`` in keV."""

    #: Gauss-Legendre order used for bin integrals that have no closed form.  Three nodes integrate
    #: polynomials of degree 5 exactly; on the narrow bins of X-ray responses (dE/E <~ 5%) the error
    #: of a Planck or cut-off power law bin integral is below 1e-8 (see tests/test_components.py).
    quadrature_order = 3

    def __init__(self, lo, hi):
        lo = np.asarray(lo, dtype=np.float64).ravel()
        hi = np.asarray(hi, dtype=np.float64).ravel()
        if lo.shape != hi.shape or lo.size == 0:
            raise ModelError("energy grid needs matching, non-empty ENERG_LO and ENERG_HI arrays")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ModelError("energy grid contains NaN or infinite energies; check the response file")
        if np.any(hi <= lo):
            raise ModelError("energy grid has bins with ENERG_HI <= ENERG_LO; check the response file")
        # XSPEC replaces a zero lower edge with a small positive energy; do the same so that
        # log-energies stay finite (the bin's integral is dominated by its upper part anyway).
        lo = np.where(lo <= 0.0, hi * 1e-3, lo)
        self.lo = lo
        self.hi = hi

    def __len__(self) -> int:
        return self.lo.size

    @cached_property
    def mid(self) -> np.ndarray:
        return 0.5 * (self.lo + self.hi)

    @cached_property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    @cached_property
    def log_lo(self) -> np.ndarray:
        return np.log(self.lo)

    @cached_property
    def log_ratio(self) -> np.ndarray:
        """ln(hi/lo) per bin, computed without cancellation."""
        return np.log1p(self.width / self.lo)

    @cached_property
    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Legendre nodes (n_E, q) and weights (n_E, q) that integrate over each bin."""
        x, w = np.polynomial.legendre.leggauss(self.quadrature_order)
        half = 0.5 * self.width[:, None]
        return self.mid[:, None] + half * x[None, :], half * w[None, :]
