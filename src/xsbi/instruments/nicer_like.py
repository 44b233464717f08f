"""A NICER-like instrument built in code, for demos and tests that must run without files.

It mimics NICER XTI (Gendreau et al. 2016): 1501 PI channels of 10 eV, a model energy grid of
5 eV bins below 1 keV and 10 eV above, a Gaussian redistribution whose FWHM grows from ~85 eV at
1 keV to ~137 eV at 6 keV, and an effective area peaking near 1.5 keV at ~1,900 cm^2.  It is not
a calibration product: use real responses for science.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from ..data import ARF, RMF, Spectrum

N_CHANNELS = 1501
CHANNEL_WIDTH = 0.01  # keV


def _energy_grid() -> tuple[np.ndarray, np.ndarray]:
    edges = np.concatenate([np.arange(0.2, 1.0, 0.005), np.arange(1.0, 15.0 + 1e-9, 0.01)])
    edges = np.round(edges, 6)
    return edges[:-1], edges[1:]


def _effective_area(e: np.ndarray) -> np.ndarray:
    """cm^2: a log-normal bump at 1.5 keV with a soft filter cut-off and a high-energy tail."""
    bump = 1900.0 * np.exp(-0.5 * (np.log(e / 1.5) / 0.55) ** 2)
    tail = 60.0 * (e / 8.0) ** -1.5 / (1.0 + np.exp(-(e - 5.0)))
    window = 1.0 / (1.0 + (0.35 / e) ** 6)
    return (bump + tail) * window


def _fwhm(e: np.ndarray) -> np.ndarray:
    """keV; FWHM^2 = a + b E matched to ~85 eV at 1 keV and ~137 eV at 6 keV."""
    return 1e-3 * np.sqrt(4916.0 + 2309.0 * e)


def nicer_like_response() -> tuple[RMF, ARF]:
    lo, hi = _energy_grid()
    mid = 0.5 * (lo + hi)
    sigma = _fwhm(mid) / 2.3548
    ch_lo = np.arange(N_CHANNELS) * CHANNEL_WIDTH
    ch_hi = ch_lo + CHANNEL_WIDTH
    rows, cols, vals = [], [], []
    for i, (m, s) in enumerate(zip(mid, sigma)):
        first = max(0, int((m - 6 * s) / CHANNEL_WIDTH))
        last = min(N_CHANNELS, int((m + 6 * s) / CHANNEL_WIDTH) + 1)
        c = np.arange(first, last)
        p = ndtr((ch_hi[c] - m) / s) - ndtr((ch_lo[c] - m) / s)
        rows.append(np.full(c.size, i))
        cols.append(c)
        vals.append(p)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(lo.size, N_CHANNELS)
    )
    rmf = RMF(lo, hi, matrix, ch_lo, ch_hi, first_channel=0)
    arf = ARF(lo, hi, _effective_area(mid))
    return rmf, arf


def nicer_like_spectrum(exposure: float = 1.0, group: int = 5, band=(0.3, 10.0)) -> Spectrum:
    """An empty (zero-count) spectrum on the built-in NICER-like response.

    Fill it with simulated counts with :meth:`Spectrum.with_counts`.
    """
    rmf, arf = nicer_like_response()
    spec = Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, dtype=np.int64), exposure, rmf=rmf, arf=arf)
    if group and group > 1:
        spec = spec.group_constant(group)
    if band is not None:
        spec = spec.notice(*band)
    return spec
