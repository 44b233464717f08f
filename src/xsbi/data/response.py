"""Instrument response: redistribution matrix (RMF) and effective area (ARF).

File formats follow OGIP memo CAL/GEN/92-002 ("The Calibration Requirements for Spectral
Analysis"): an RMF holds P(channel | photon energy) per energy bin plus the EBOUNDS nominal
channel energies; an ARF holds the effective area (cm^2) on the same energy grid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xsbi.data.ogip import read_arf_data, read_rmf_data
from xsbi.errors import DataError

#: Relative tolerance when comparing the energy grids of an ARF and an RMF.
GRID_RTOL = 1e-5


def _vector(values, name):
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or infinite values.")
    return arr


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class RMF:
    """Redistribution matrix (CAL/GEN/92-002), optionally including the effective area (RSP).

    Parameters
    ----------
    energ_lo, energ_hi : array_like, shape (n_energies,)
        Photon energy bin edges in keV.
    matrix : scipy.sparse matrix or array_like, shape (n_energies, n_channels)
        Probability that a photon in energy bin i is recorded in channel j (times the effective
        area for a combined RSP).
    e_min, e_max : array_like, shape (n_channels,)
        Nominal channel energy bounds (EBOUNDS), keV.
    first_channel : int
        Number of the first channel (0 or 1).
    hduclas3 : str, optional
        HDUCLAS3 of the matrix ('REDIST', 'DETECTOR' or 'FULL').
    path : Path, optional
        File the matrix was read from.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, float64
    channels : ndarray of channel numbers
    is_rsp : bool
        True when the matrix includes the effective area (HDUCLAS3 'FULL', or row sums well
        above 1), so no ARF is needed.
    """

    def __init__(self, energ_lo, energ_hi, matrix, e_min, e_max, first_channel=0, *,
                 hduclas3=None, path=None):
        self.energ_lo = _vector(energ_lo, "RMF ENERG_LO")
        self.energ_hi = _vector(energ_hi, "RMF ENERG_HI")
        self.e_min = _vector(e_min, "RMF EBOUNDS E_MIN")
        self.e_max = _vector(e_max, "RMF EBOUNDS E_MAX")
        self.matrix = sp.csr_matrix(matrix, dtype=np.float64)
        self.matrix.sum_duplicates()
        self.first_channel = int(first_channel)
        self.hduclas3 = None if hduclas3 is None else str(hduclas3).upper()
        self.path = None if path is None else Path(path)
        n_e, n_ch = self.matrix.shape
        if self.energ_lo.size != n_e or self.energ_hi.size != n_e:
            raise DataError(
                f"RMF energy grid has {self.energ_lo.size} bins but the matrix has {n_e} rows."
            )
        if self.e_min.size != n_ch or self.e_max.size != n_ch:
            raise DataError(
                f"RMF EBOUNDS has {self.e_min.size} channels but the matrix has {n_ch} columns."
            )
        if np.any(self.energ_hi < self.energ_lo):
            raise DataError("RMF energy grid has ENERG_HI < ENERG_LO.")
        if not np.all(np.isfinite(self.matrix.data)):
            raise DataError("RMF matrix contains NaN or infinite values.")
        self.channels = self.first_channel + np.arange(n_ch, dtype=np.int64)
        self._hash = None
        self._is_rsp = None

    @property
    def n_energies(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_channels(self) -> int:
        return self.matrix.shape[1]

    @property
    def is_rsp(self) -> bool:
        if self._is_rsp is None:  # asked for every spectrum that shares this matrix (xsbi batch)
            # A pure redistribution matrix sums to <= 1 per energy; effective areas are >> 1 cm^2.
            self._is_rsp = self.hduclas3 == "FULL" or bool(self.matrix.nnz and self.row_sums().max() > 1.5)
        return self._is_rsp

    def row_sums(self) -> np.ndarray:
        """Total probability of detection per energy bin (<= 1 for a redistribution matrix)."""
        return np.asarray(self.matrix.sum(axis=1)).reshape(-1)

    @property
    def hash(self) -> str:
        """sha256 of the matrix, energy grid and EBOUNDS."""
        if self._hash is None:
            m = self.matrix
            self._hash = _digest(self.energ_lo, self.energ_hi, self.e_min, self.e_max,
                                 np.asarray(m.shape), m.indptr, m.indices, m.data)
        return self._hash

    def __repr__(self):
        src = f" from {self.path.name}" if self.path else ""
        return (f"RMF({self.n_energies} energies x {self.n_channels} channels{src}, "
                f"{self.energ_lo[0]:.4g}-{self.energ_hi[-1]:.4g} keV)")


class ARF:
    """Ancillary response: effective area in cm^2 per energy bin (CAL/GEN/92-002).

    Parameters
    ----------
    energ_lo, energ_hi, specresp : array_like, shape (n_energies,)
    path : Path, optional
    """

    def __init__(self, energ_lo, energ_hi, specresp, *, path=None):
        self.energ_lo = _vector(energ_lo, "ARF ENERG_LO")
        self.energ_hi = _vector(energ_hi, "ARF ENERG_HI")
        self.specresp = _vector(specresp, "ARF SPECRESP")
        self.path = None if path is None else Path(path)
        if not (self.energ_lo.size == self.energ_hi.size == self.specresp.size):
            raise DataError("ARF ENERG_LO, ENERG_HI and SPECRESP have different lengths.")
        if np.any(self.specresp < 0):
            raise DataError("ARF SPECRESP has negative effective areas.")
        self._hash = None

    @property
    def n_energies(self) -> int:
        return self.specresp.size

    @property
    def hash(self) -> str:
        """sha256 of the energy grid and effective areas."""
        if self._hash is None:
            self._hash = _digest(self.energ_lo, self.energ_hi, self.specresp)
        return self._hash

    def __repr__(self):
        src = f" from {self.path.name}" if self.path else ""
        return f"ARF({self.n_energies} energies{src})"


def check_grids(rmf: RMF, arf: ARF) -> None:
    """Raise DataError unless the ARF is tabulated on the RMF's energy grid."""
    names = f"ARF {arf.path or ''} and RMF {rmf.path or ''}".replace("  ", " ")
    if arf.n_energies != rmf.n_energies:
        raise DataError(
            f"{names} have different energy grids ({arf.n_energies} vs {rmf.n_energies} "
            "bins); they were not made for each other. Pass the matching arf= / rmf=."
        )
    for a, r, label in ((arf.energ_lo, rmf.energ_lo, "ENERG_LO"),
                        (arf.energ_hi, rmf.energ_hi, "ENERG_HI")):
        scale = np.maximum(np.abs(r), 1e-30)
        rel = np.abs(a - r) / scale
        if np.any(rel > GRID_RTOL):
            i = int(np.argmax(rel))
            raise DataError(
                f"{names} have different energy grids: {label}[{i}] = {a[i]:.6g} vs "
                f"{r[i]:.6g} keV. Pass the matching arf= / rmf=."
            )


def read_rmf(path) -> RMF:
    """Read an RMF or combined RSP file into an :class:`RMF` (CAL/GEN/92-002)."""
    d = read_rmf_data(path)
    matrix = sp.csr_matrix((d.values, (d.rows, d.cols)),
                           shape=(d.energ_lo.size, d.n_channels), dtype=np.float64)
    return RMF(d.energ_lo, d.energ_hi, matrix, d.e_min, d.e_max, d.first_channel,
               hduclas3=d.hduclas3, path=d.path)


def read_arf(path) -> ARF:
    """Read an ARF file into an :class:`ARF` (CAL/GEN/92-002)."""
    lo, hi, area = read_arf_data(path)
    return ARF(lo, hi, area, path=Path(path))
