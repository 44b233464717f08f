"""What the network sees of a spectrum.

Raw counts span orders of magnitude across a training set (a prior over four decades of
normalisation gives spectra of 20 to 200,000 counts) and their Poisson noise grows with the
counts; z-scoring raw counts then leaves the bright spectra dominating every feature.  The
Anscombe (1948) transform ``2 sqrt(x + 3/8)`` makes Poisson noise ~unit variance at any count
level, so after z-scoring every bin carries information on the same footing at 1,000 and at
200,000 counts.  ``log1p`` is offered as an alternative.  An optional PCA (seed paper, section 7)
keeps the leading components that explain a chosen fraction of the variance of the transformed
training spectra.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import XsbiError

TRANSFORMS = ("anscombe", "log1p", "none")


class Preprocessor:
    """Variance-stabilising transform, then optional PCA.  Fit on training spectra."""

    def __init__(self, transform: str = "anscombe", pca: float | None = None):
        if transform not in TRANSFORMS:
            raise XsbiError(f"unknown preprocessing '{transform}'; choose one of {', '.join(TRANSFORMS)}")
        if pca is not None and not (0.0 < float(pca) <= 1.0):
            raise XsbiError(f"pca must be a variance fraction in (0, 1], got {pca}")
        self.transform = transform
        self.pca = None if pca is None else float(pca)
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None  # (n_bins, k)

    def _stabilise(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform == "anscombe":
            return 2.0 * torch.sqrt(x + 0.375)
        if self.transform == "log1p":
            return torch.log1p(x)
        return x

    def fit(self, x: torch.Tensor) -> "Preprocessor":
        if self.pca is not None:
            y = self._stabilise(x.to(torch.float64))
            self.mean = y.mean(0)
            u, s, vt = torch.linalg.svd(y - self.mean, full_matrices=False)
            explained = torch.cumsum(s**2, 0) / torch.sum(s**2)
            k = int(torch.searchsorted(explained, torch.tensor(self.pca, dtype=explained.dtype)).item()) + 1
            self.components = vt[: min(k, vt.shape[0])].T.contiguous()
            self.mean = self.mean.to(torch.float32)
            self.components = self.components.to(torch.float32)
        return self

    @property
    def n_features(self) -> int | None:
        return None if self.components is None else self.components.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self._stabilise(torch.as_tensor(x, dtype=torch.float32))
        if self.components is not None:
            y = (y - self.mean.to(y.device)) @ self.components.to(y.device)
        return y

    def state(self) -> dict:
        out = {"transform": self.transform, "pca": self.pca}
        if self.components is not None:
            out["pca_mean"] = self.mean
            out["pca_components"] = self.components
        return out

    @classmethod
    def from_state(cls, state: dict) -> "Preprocessor":
        p = cls(state["transform"], state["pca"])
        if "pca_components" in state:
            p.mean = state["pca_mean"]
            p.components = state["pca_components"]
        return p
