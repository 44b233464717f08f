"""Folding model fluxes through a (mostly zero) instrument response, fast.

An X-ray response folded onto grouped, noticed channels is banded: each model energy lands in a
handful of neighbouring channels (NICER grouped by 5 over 0.3-10 keV: 5% of the matrix is
non-zero).  On a CPU the transposed response is kept as a compressed sparse row matrix, so that
folding skips the zeros (MKL's sparse-dense product; 3-4x faster there than a dense product).  On
a GPU a dense product is faster and is used instead.  Both give the dense product up to rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


class Response:
    """``flux (N, n_E) -> counts (N, n_bins)`` for a fixed response matrix (n_E, n_bins)."""

    def __init__(self, matrix: np.ndarray, device="cpu", dtype=torch.float32):
        matrix = np.asarray(matrix, dtype=np.float64)
        self.shape = matrix.shape
        self.density = float(np.count_nonzero(matrix)) / matrix.size
        self.device = torch.device(device)
        transposed = torch.as_tensor(np.ascontiguousarray(matrix.T), dtype=dtype, device=self.device)
        self.sparse = self.device.type == "cpu"
        if self.sparse:
            with warnings.catch_warnings():
                # torch flags sparse CSR as beta; the product used here is long-standing
                warnings.simplefilter("ignore", UserWarning)
                self.matrix_t = transposed.to_sparse_csr()
        else:
            self.matrix_t = transposed

    def __call__(self, flux: torch.Tensor) -> torch.Tensor:
        # (n_bins, n_E) @ (n_E, N): a transposed flux view (as the models return) is contiguous here
        return (self.matrix_t @ flux.t()).t()
