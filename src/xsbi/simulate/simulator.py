"""Batched forward model ("fakeit"): parameters -> expected counts -> Poisson spectra."""

from __future__ import annotations




import math

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


def per_spectrum(values, n: int, name: str, error=ModelError) -> np.ndarray:
    """``values`` (one number, or one per spectrum; numpy, list or torch) as an (n,) float64
    array; ``error`` says "``name`` must be one number or one per spectrum" otherwise."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim == 0:
        return np.full(int(n), float(v))
    if v.shape != (int(n),):
        raise error(f"{name} must be one number or one per spectrum ({n}), got shape {v.shape}")
    return v


class Simulator:
    """Expected and Poisson-realised counts of a model folded through a spectrum's response.

    For N parameter vectors it computes, per grouped, noticed bin,
    ``mu = exposure * sum_E model(E) * ARF(E) * RMF(E, channels) * AREASCAL``, as XSPEC's
    ``fakeit`` does, on CPU or GPU, in float32 by default.  Work proceeds in chunks of
    ``chunk_size`` spectra so that memory stays bounded whatever N is.

    Model energies whose response to every noticed bin is exactly zero are dropped: they cannot
    contribute, and skipping them is exact.

    ``exposure`` (seconds, one per spectrum or one for all) simulates the same set-up observed for
    another time: the expected counts scale as ``exposure / spectrum.exposure``, as XSPEC's
    ``fakeit`` with another exposure gives (the response does not depend on it).

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
        #: seconds; the exposure the folded response includes
        self.exposure = exposure
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

    def exposure_scale(self, exposure, n: int) -> torch.Tensor | None:
        """``exposure / self.exposure`` as an (n,) tensor, or None for ``exposure`` None."""
        if exposure is None:
            return None
        e = per_spectrum(exposure, n, "exposure", ModelError)
        if not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise ModelError("exposures must be finite positive numbers of seconds")
        return torch.as_tensor(e / self.exposure, dtype=self.dtype, device=self.device)

    def iter_expected(self, theta, exposure=None):
        """Yield (start, mu_chunk) torch tensors over chunks of theta; bounded memory.
        ``exposure``: None (the spectrum's), one number or one per row of theta, in seconds."""
        t, _ = _as_tensor(theta, self.device, self.dtype)
        self._check_theta(t)
        scale = self.exposure_scale(exposure, t.shape[0])
        bound = self._bound_model()
        with torch.no_grad():
            for start in range(0, t.shape[0], self.chunk_size):
                mu = self._expected_chunk(bound, t[start : start + self.chunk_size])
                if scale is not None:
                    mu.mul_(scale[start : start + mu.shape[0], None])
                yield start, mu

    def expected_counts(self, theta, exposure=None):
        """Expected counts per grouped, noticed bin, shape (N, n_bins).

        Returns a numpy array for array input and a torch tensor (on the simulator's device) for
        tensor input.  ``exposure``: see :meth:`iter_expected`.
        """
        t, is_numpy = _as_tensor(theta, self.device, self.dtype)
        out = torch.empty(t.shape[0], self.n_bins, dtype=self.dtype, device=self.device)
        for start, mu in self.iter_expected(t, exposure):
            out[start : start + mu.shape[0]] = mu
        return out.cpu().numpy() if is_numpy else out

    def sample(self, theta, seed=None, exposure=None):
        """Poisson realisations of :meth:`expected_counts` (same shape and type).

        The same ``seed`` on the same device gives the same spectra, whatever the chunk size and
        number of threads.
        """
        return self.simulate(theta, seed, exposure)[1]

    def simulate(self, theta, seed=None, exposure=None):
        """Both expected counts and Poisson realisations: ``(mu, x)``; ``exposure`` as in
        :meth:`iter_expected`."""
        t, is_numpy = _as_tensor(theta, self.device, self.dtype)
        poisson = PoissonSampler(seed, self.device)
        mu_all = torch.empty(t.shape[0], self.n_bins, dtype=self.dtype, device=self.device)
        x_all = torch.empty_like(mu_all)
        for start, mu in self.iter_expected(t, exposure):
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


def sample_exposures(n: int, low: float, high: float, seed=None) -> np.ndarray:
    """``n`` exposures (s) log-uniform in ``[low, high]``, reproducible from ``seed``.

    Log-uniform because what the network must learn, the posterior width, changes like
    1/sqrt(exposure): each factor of exposure gets the same share of the training set.
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ModelError(f"an exposure range needs 0 < low <= high seconds, got [{low:g}, {high:g}]")
    u = np.random.default_rng(seed).random(int(n))
    # clipped: exp(log(t)) may land an ulp outside the range
    return np.clip(np.exp(math.log(low) + u * (math.log(high) - math.log(low))), low, high)


__all__ = ["Simulator", "sample_exposures"]
