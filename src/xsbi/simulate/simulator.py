"""Batched forward model ("fakeit"): parameters -> expected counts -> Poisson spectra."""

from __future__ import annotations




import numpy as np
import torch

from ..errors import ModelError
from .fold import Response
from .poisson import PoissonSampler


def _as_tensor(theta, device, dtype) -> tuple[torch.Tensor, bool]:
    is_numpy = not isinstance(theta, torch.Tensor)
    t = torch.as_tensor(np.asarray(theta, dtype=np.float64) if is_numpy else theta)
    if t.ndim == 1:
        t = t[None, :]
    return t.to(device=device, dtype=dtype), is_numpy


class Simulator:
    """Expected and Poisson-realised counts of a model folded through a spectrum's response.

    For N parameter vectors it computes, per grouped, noticed bin,
    ``mu = exposure * sum_E model(E) * ARF(E) * RMF(E, channels) * AREASCAL``, as XSPEC's
    ``fakeit`` does, on CPU or GPU, in float32 by default.  Work proceeds in chunks of
    ``chunk_size`` spectra so that memory stays bounded whatever N is.

    Model energies whose response to every noticed bin is exactly zero are dropped: they cannot
    contribute, and skipping them is exact.

    Parameters
    ----------
    model : xsbi.Model
        The model; its frozen parameters are read when the simulator is used, so freezing after
        construction is honoured.
    spectrum : xsbi.data.Spectrum
        Gives the response, grouping, noticed band and exposure.
    device, dtype
        Torch device and floating type of the computation.
    chunk_size : int, optional
        Spectra per chunk; by default chosen so that a chunk's working arrays take ~64 MB.
    """

    def __init__(self, model, spectrum, device="cpu", dtype=torch.float32, chunk_size: int | None = None):
        self.model = model
        self.spectrum = spectrum
        self.device = torch.device(device)
        self.dtype = dtype
        exposure = float(spectrum.exposure)
        response = np.asarray(spectrum.response_matrix(), dtype=np.float64) * exposure
        self.energy_mask = np.any(response != 0, axis=1)
        if not self.energy_mask.any():
            raise ModelError("the response is zero for every noticed bin; check the band and the response files")
        self.energ_lo = np.asarray(spectrum.energ_lo, dtype=np.float64)[self.energy_mask]
        self.energ_hi = np.asarray(spectrum.energ_hi, dtype=np.float64)[self.energy_mask]
        self.fold = Response(response[self.energy_mask], self.device, dtype)
        self.n_bins = response.shape[1]
        # Chunks of a few MB per (chunk, n_E) array keep a CPU's caches warm; a GPU wants big ones.
        budget = (6 << 20) if self.device.type == "cpu" else (1 << 30)
        bytes_per_spectrum = int(self.energy_mask.sum()) * torch.finfo(dtype).bits // 8
        chunk = int(chunk_size or min(1 << 20 if self.device.type != "cpu" else 4096, budget // bytes_per_spectrum))
        # whole Poisson blocks per chunk keep realisations independent of the chunk size
        block = PoissonSampler.block
        self.chunk_size = max(block, chunk // block * block)
        self._bound = None
        self._bound_key = None

    # --- model binding ------------------------------------------------------------------------
    @property
    def parameter_names(self) -> list[str]:
        return self.model.parameter_names

    def _bound_model(self):
        key = (tuple(self.model.parameter_names), tuple(sorted(self.model.frozen.items())))
        if key != self._bound_key:
            self._bound = self.model.bind(self.energ_lo, self.energ_hi, self.device, self.dtype)
            self._bound_key = key
        return self._bound

    def _check_theta(self, theta: torch.Tensor) -> None:
        names = self.model.parameter_names
        if theta.ndim != 2 or theta.shape[1] != len(names):
            raise ModelError(f"theta must have shape (N, {len(names)}) with columns {names}; got {tuple(theta.shape)}")
        if theta.shape[0] == 0:
            return
        if not torch.isfinite(theta).all():
            raise ModelError("theta contains NaN or infinite values")
        lo = theta.min(0).values.tolist()
        hi = theta.max(0).values.tolist()
        for i, name in enumerate(names):
            spec = self.model.spec(name)
            if lo[i] < spec.hard_min or hi[i] > spec.hard_max:
                raise ModelError(
                    f"{name} takes values in [{lo[i]:g}, {hi[i]:g}], outside its hard limits "
                    f"[{spec.hard_min:g}, {spec.hard_max:g}]; restrict theta or the prior"
                )

    # --- simulation -----------------------------------------------------------------------------
    def _expected_chunk(self, bound, theta: torch.Tensor) -> torch.Tensor:
        return self.fold(bound(theta)).clamp_(min=0.0)

    def iter_expected(self, theta):
        """Yield (start, mu_chunk) torch tensors over chunks of theta; bounded memory."""
        t, _ = _as_tensor(theta, self.device, self.dtype)
        self._check_theta(t)
        bound = self._bound_model()
        with torch.no_grad():
            for start in range(0, t.shape[0], self.chunk_size):
                yield start, self._expected_chunk(bound, t[start : start + self.chunk_size])

    def expected_counts(self, theta):
        """Expected counts per grouped, noticed bin, shape (N, n_bins).

        Returns a numpy array for array input and a torch tensor (on the simulator's device) for
        tensor input.
        """
        t, is_numpy = _as_tensor(theta, self.device, self.dtype)
        out = torch.empty(t.shape[0], self.n_bins, dtype=self.dtype, device=self.device)
        for start, mu in self.iter_expected(t):
            out[start : start + mu.shape[0]] = mu
        return out.cpu().numpy() if is_numpy else out

    def sample(self, theta, seed=None):
        """Poisson realisations of :meth:`expected_counts` (same shape and type).

        The same ``seed`` on the same device gives the same spectra, whatever the chunk size and
        number of threads.
        """
        return self.simulate(theta, seed)[1]

    def simulate(self, theta, seed=None):
        """Both expected counts and Poisson realisations: ``(mu, x)``."""
        t, is_numpy = _as_tensor(theta, self.device, self.dtype)
        poisson = PoissonSampler(seed, self.device)
        mu_all = torch.empty(t.shape[0], self.n_bins, dtype=self.dtype, device=self.device)
        x_all = torch.empty_like(mu_all)
        for start, mu in self.iter_expected(t):
            mu_all[start : start + mu.shape[0]] = mu
            x_all[start : start + mu.shape[0]] = poisson(mu, start)
        if is_numpy:
            return mu_all.cpu().numpy(), x_all.cpu().numpy()
        return mu_all, x_all

    def record(self) -> dict:
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "chunk_size": self.chunk_size,
            "model_energies": int(self.energy_mask.sum()),
            "n_bins": self.n_bins,
            "response_density": self.fold.density,
            "fold": "sparse CSR" if self.fold.sparse else "dense",
        }


__all__ = ["Simulator"]
