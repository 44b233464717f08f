r"""Background inside the simulator: what an instrument records with a background region.

An X-ray spectrum with a background (BACKFILE) is two measurements: the source-region counts
``S_i`` (source plus background) and the background-region counts ``B_i``.  With an unknown
background rate ``b_i`` (counts expected in the background region of bin ``i``) and the ratio
``r_i`` of the source to background region's exposure x BACKSCAL x AREASCAL,

.. math::

    S_i \sim \mathrm{Poisson}(\mu_i(\theta) + r_i b_i), \qquad B_i \sim \mathrm{Poisson}(b_i),

the same model as XSPEC's W-statistic (Wachter, Leach & Kellogg 1979; XSPEC manual,
Appendix B).  W-stat *profiles* the ``b_i`` out (maximises over them); simulation-based
inference *marginalises* them.  The background spectrum is independent of the source
parameters, so

.. math::

    p(\theta | S, B) \propto p(\theta) \int p(S | \theta, b)\, p(b | B)\, db,

which is exactly the posterior NPE learns from simulations with ``theta`` from the prior, the
rates from their posterior given the observed background, ``b_i ~ Gamma(B_i + 1/2, 1)`` (the
Jeffreys prior ``p(b) ~ b^{-1/2}`` of a Poisson rate), and ``S`` from the Poisson law above.
The network reads the source-region counts only (the observed background enters through
``p(b | B)``), so it is built for this background spectrum: ``AmortizedPosterior`` records its
identity and refuses a spectrum with another (unless conditioned on the background level, below).  With a well-exposed background the marginal and
the W-stat profile posteriors agree.

Simulated at another source exposure ``T`` (exposure-conditioned NPE), the background region's
rates ``b_i`` stay those of the observed background spectrum (its exposure does not change),
while the background falling in the source region grows with the source exposure: ``r_i`` is
proportional to it, so the whole source-region expectation scales by ``T / T_obs``.

Simulated at a background level ``L`` (background-level-conditioned NPE), the background-region
rates are ``L b_i`` with ``b_i ~ Gamma(B_i + 1/2, 1)``: the training background's shape, its
normalisation times ``L``, so the source region receives ``r_i L b_i``.  A spectrum whose
background is ``L`` times brighter than the training one (same shape) is then read with the
network's ``L`` input; the marginalisation uses the training background's shape scaled by ``L``,
exact in the limit of a well-exposed background of that shape.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from ..errors import DataError
from .poisson import PoissonSampler
from .simulator import per_spectrum

__all__ = ["PoissonBackground", "SourceAndBackground", "sample_background_levels"]


def sample_background_levels(n: int, low: float, high: float, seed=None) -> np.ndarray:
    """``n`` background levels (factors on the training background) log-uniform in
    ``[low, high]``, reproducible from ``seed``.

    Log-uniform as :func:`~xsbi.simulate.sample_exposures`: a background twice as bright and one
    half as bright are equally far from the training one, and get the same share of simulations.
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise DataError(f"a background level range needs 0 < low <= high, got [{low:g}, {high:g}]")
    u = np.random.default_rng(seed).random(int(n))
    # clipped: exp(log(l)) may land an ulp outside the range
    return np.clip(np.exp(math.log(low) + u * (math.log(high) - math.log(low))), low, high)


def _levels(background_level, n: int) -> np.ndarray | None:
    """(n,) checked background levels, or None for the observed background."""
    if background_level is None:
        return None
    lv = per_spectrum(background_level, n, "background_level", DataError)
    if not np.all(np.isfinite(lv)) or np.any(lv <= 0):
        raise DataError("background levels must be finite positive factors")
    return lv


class PoissonBackground:
    """Per-bin Poisson background rates constrained by the observed background spectrum.

    Parameters
    ----------
    spectrum : Spectrum
        A grouped, noticed source spectrum with its background attached
        (``spectrum.background_counts`` and ``spectrum.background_ratio``).
    """

    def __init__(self, spectrum):
        if spectrum.background_counts is None:
            raise DataError(
                f"{spectrum.path or 'the spectrum'} has no background spectrum: set BACKFILE in the PHA header "
                "or pass background=<file> (data.background in the YAML)"
            )
        self.counts = np.asarray(spectrum.background_counts, dtype=np.float64)
        self.ratio = np.broadcast_to(np.asarray(spectrum.background_ratio, dtype=np.float64), self.counts.shape).copy()
        if np.any(self.counts < 0) or not np.all(np.isfinite(self.counts)):
            raise DataError("background counts must be finite and non-negative")
        if np.any(self.ratio <= 0) or not np.all(np.isfinite(self.ratio)):
            raise DataError("the background scaling (EXPOSURE*BACKSCAL*AREASCAL ratio) must be positive")
        self.n_bins = self.counts.size

    def rates(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of the background-region rates, shape (n, n_bins)."""
        return rng.gamma(self.counts + 0.5, 1.0, size=(int(n), self.n_bins))

    def identity(self) -> dict:
        """What a spectrum must match to reuse a network trained with this background."""
        return {
            "counts": int(self.counts.sum()),
            "counts_hash": hashlib.sha256(self.counts.astype(np.int64).tobytes()).hexdigest(),
            "ratio_mean": float(self.ratio.mean()),
            "ratio_hash": hashlib.sha256(np.round(self.ratio, 9).tobytes()).hexdigest(),
        }

    def record(self) -> dict:
        return {"method": "poisson nuisance rates, Gamma(B + 1/2) (Jeffreys prior)", **self.identity(),
                "scaled_to_source_region": float((self.counts * self.ratio).sum())}


class SourceAndBackground:
    """Simulator of the source-region spectrum, source plus background: ``(N, n_bins)``.

    Wraps a source :class:`~xsbi.simulate.Simulator`; each simulated spectrum has its own
    background rates drawn from :meth:`PoissonBackground.rates`.  ``simulate`` returns the
    expected counts (source plus scaled background) and their Poisson realisations, so restriction
    criteria (total counts, C-stat against the observation) and NPE work on what is observed.
    """

    def __init__(self, simulator, background: PoissonBackground):
        if background.n_bins != simulator.n_bins:
            raise DataError(f"background has {background.n_bins} bins, the source spectrum {simulator.n_bins}")
        self.source = simulator
        self.background = background
        self.n_bins = simulator.n_bins
        self.parameter_names = simulator.parameter_names
        self.exposure = simulator.exposure
        self._ratio = torch.as_tensor(background.ratio, dtype=simulator.dtype)

    def simulate(self, theta, seed=None, exposure=None, background_level=None):
        """``(mu, x)``, each (N, n_bins): expected and drawn source-region counts.  ``exposure``
        (s, one or one per row): the source exposure, the background spectrum staying as observed.
        ``background_level`` (one or one per row): a factor on the background-region rates, the
        background's shape staying the observed one (default 1)."""
        is_tensor = isinstance(theta, torch.Tensor)
        theta = theta.detach().cpu().numpy() if is_tensor else np.asarray(theta, dtype=np.float64)
        # independent streams for the rates and the counts, both fixed by the seed
        entropy = np.random.SeedSequence(seed).entropy
        rng = np.random.default_rng([entropy, 0])
        poisson = PoissonSampler([entropy, 1])
        n = np.atleast_2d(theta).shape[0]
        scale = self.source.exposure_scale(exposure, n)
        levels = _levels(background_level, n)
        mu_all = torch.empty(n, self.n_bins, dtype=self.source.dtype)
        x_all = torch.empty_like(mu_all)
        for start, mu_src in self.source.iter_expected(theta):
            m = mu_src.shape[0]
            b = torch.as_tensor(self.background.rates(m, rng), dtype=self.source.dtype)
            if levels is not None:
                b.mul_(torch.as_tensor(levels[start:start + m, None], dtype=b.dtype))
            mu = mu_src.cpu() + self._ratio * b
            if scale is not None:
                mu.mul_(scale[start:start + m, None].cpu())
            mu_all[start:start + m] = mu
            x_all[start:start + m] = poisson(mu, start)
        if is_tensor:
            return mu_all, x_all
        return mu_all.numpy(), x_all.numpy()

    def sample(self, theta, seed=None, exposure=None, background_level=None):
        return self.simulate(theta, seed, exposure, background_level)[1]

    def expected_counts(self, theta, exposure=None):
        """The source model's expected counts in the source region (no background), (N, n_bins)."""
        return self.source.expected_counts(theta, exposure)

    def record(self) -> dict:
        return {**self.source.record(), "background": self.background.record()}
