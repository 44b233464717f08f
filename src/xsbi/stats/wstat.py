"""XSPEC's W-statistic: C-stat for Poisson source data with a Poisson background, the
background being profiled out bin by bin.

References
----------
Cash, W. 1979, ApJ 228, 939.
Wachter, K., Leach, R. & Kellogg, E. 1979, ApJ 230, 274 (profile likelihood for a Poisson
background).
XSPEC manual, Appendix B "Statistics in XSPEC", section "Poisson data with Poisson background
(cstat)" -- XSPEC reports this as "W-statistic".

Mapping from XSPEC's notation
-----------------------------
XSPEC writes the statistic with exposures ``t_s``, ``t_b``, a model *rate* ``m_i`` and a
background *rate* ``f_i`` (per source-region area):

    W = 2 sum_i [ t_s m_i + (t_s + t_b) f_i - S_i ln(t_s m_i + t_s f_i) - B_i ln(t_b f_i)
                  - S_i (1 - ln S_i) - B_i (1 - ln B_i) ],

with ``f_i`` the value maximising the likelihood.  Different extraction areas enter through
``t_b -> t_b * backscal_b / backscal_s`` (the background region sees ``backscal_b/backscal_s``
times the source-region background).  Here everything is in counts:

    mu_i   = t_s m_i                               expected source counts (``model``)
    r      = (t_s backscal_s) / (t_b backscal_b)   ``ratio``
    beta_i = t_s f_i                               expected background counts in the source region

so ``t_b f_i = beta_i / r`` is the expected background-region count and
``(t_s + t_b) f_i = beta_i (1 + 1/r)``.  Dividing the XSPEC expression through, each bin's
contribution is the sum of two Poisson deviances (see :func:`xsbi.stats.cstat.cstat`),

    W_i = 2 [ d(S_i, mu_i + beta_i) + d(B_i, beta_i / r) ],   d(S, m) = m - S + S ln(S/m),

i.e. -2 ln of the joint likelihood ratio against the saturated model.  Setting d/d beta = 0
gives ``(1+r) beta^2 + [(1+r) mu - r (S+B)] beta - r B mu = 0`` whose non-negative root is
XSPEC's ``f_i = [S+B-(t_s+t_b) m + d]/(2 (t_s+t_b))`` times ``t_s``.

XSPEC's special cases, in these units (each bin contributes ``2 x``):

* ``S_i = 0``:  beta = r B/(1+r);  ``x = mu + B ln(1 + r)``
  (XSPEC: ``t_s m_i - B_i ln(t_b/(t_s+t_b))``).
* ``B_i = 0`` and ``mu < S r/(1+r)`` (XSPEC: ``m_i < S_i/(t_s+t_b)``): beta = S r/(1+r) - mu;
  ``x = -mu/r + S ln(1 + 1/r)`` (XSPEC: ``-t_b m_i - S_i ln(t_s/(t_s+t_b))``).
* ``B_i = 0`` otherwise: beta = 0;  ``x = mu - S + S ln(S/mu)``, the plain C-stat term.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xsbi.errors import DataError
from xsbi.stats.cstat import _any, _as_arrays, _check_counts, _deviance

__all__ = ["wstat", "profile_background", "wstat_goodness"]


def _check_ratio(r: Any) -> None:
    finite = r == r
    finite = finite & (r != float("inf"))
    if not bool(finite.all()) or _any(r <= 0):
        raise DataError(
            "ratio must be finite and > 0 in every bin: it is "
            "(t_s * backscal_s) / (t_b * backscal_b); check the exposures and BACKSCAL of "
            "the source and background spectra"
        )


def wstat(counts: Any, bkg_counts: Any, model: Any, ratio: Any, *, validate: bool = True) -> Any:
    """XSPEC's W-statistic (C-stat with the Poisson background profiled out).

    Parameters
    ----------
    counts : array_like or torch.Tensor, shape (..., n_bins)
        Source-region counts ``S_i`` (non-negative integers).
    bkg_counts : array_like or torch.Tensor, shape (..., n_bins)
        Background-region counts ``B_i`` (non-negative integers).
    model : array_like or torch.Tensor, shape (..., n_bins)
        Expected *source* counts in the source region, ``mu_i = t_s * model rate``, without
        background.  Broadcast against the data, e.g. ``(N, n_bins)`` models vs one spectrum.
    ratio : float or array_like, broadcastable to (..., n_bins)
        ``(t_s * backscal_s) / (t_b * backscal_b)``: the factor that scales background-region
        counts to the source region.  Must be > 0.
    validate : bool
        Check counts and ratio.

    Returns
    -------
    numpy.ndarray (float64) or torch.Tensor, shape ``(...)``
        ``W``, summed over the last axis; ``+inf`` if any ``mu_i < 0``.  Unlike the C-stat,
        ``mu_i = 0`` is allowed even where ``S_i > 0`` (the background can supply the counts).

    Notes
    -----
    See the module docstring for the derivation and XSPEC's special cases, all of which are
    implemented explicitly.  For ``ratio -> 0`` (background infinitely well measured and
    negligible in the source region) ``W -> C``.  As XSPEC warns, W can be biased when
    background bins hold few counts; group the background if so.
    """
    be, (s, b, mu, r) = _as_arrays(counts, bkg_counts, model, ratio)
    if validate:
        hint = "; for rates use xsbi.stats.chi2 instead"
        _check_counts(s, "counts", integer=True, hint=hint)
        _check_counts(b, "bkg_counts", integer=True, hint=hint)
        _check_ratio(r)

    negative = mu < 0
    mu = be.where(negative, 0.0, mu)

    # XSPEC special case S = 0: the background alone explains the zero source counts.
    w_s0 = mu + b * be.log1p(r)

    # XSPEC special cases B = 0: the profiled background is either on the boundary (beta=0,
    # plain C-stat) or supplies the source counts the model cannot.
    low = mu < s * r / (1.0 + r)
    w_b0_low = -mu / r + s * be.log1p(1.0 / r)
    w_b0_high = _deviance(s, mu, be)

    # General case.  Stand-in counts of 1 where a special case applies keep the unselected
    # branch finite, which torch needs for finite gradients.
    general = (s > 0) & (b > 0)
    sg = be.where(general, s, 1.0)
    bg = be.where(general, b, 1.0)
    a = 1.0 + r
    lin = a * mu - r * (sg + bg)
    disc = be.sqrt(lin * lin + 4.0 * a * r * bg * mu)
    # Pick the root formula without cancellation: (-lin + disc) loses all digits when lin is
    # large and positive, where the equivalent -2c / (lin + disc) is exact.
    root_pos = 2.0 * r * bg * mu / be.where(lin > 0, lin + disc, 1.0)
    root_neg = (disc - lin) / (2.0 * a)
    beta = be.where(lin > 0, root_pos, root_neg)
    w_gen = _deviance(sg, mu + beta, be) + _deviance(bg, beta / r, be)

    w = be.where(s == 0, w_s0, be.where(b == 0, be.where(low, w_b0_low, w_b0_high), w_gen))
    w = be.where(negative, float("inf"), w)
    return 2.0 * be.sum_last(w)


def profile_background(counts, bkg_counts, model, ratio):
    """The background level ``beta_i`` (expected background counts in the *source* region) that
    W-stat profiles out, with XSPEC's special cases (module docstring); numpy, float64."""
    s, b, mu = (np.asarray(v, dtype=np.float64) for v in (counts, bkg_counts, model))
    r = np.broadcast_to(np.asarray(ratio, dtype=np.float64), np.broadcast_shapes(s.shape, b.shape, mu.shape))
    mu = np.maximum(mu, 0.0)
    a = 1.0 + r
    lin = a * mu - r * (s + b)
    disc = np.sqrt(lin * lin + 4.0 * a * r * b * mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(lin > 0, 2.0 * r * b * mu / np.where(lin > 0, lin + disc, 1.0), (disc - lin) / (2.0 * a))
    b0 = np.where(mu < s * r / a, s * r / a - mu, 0.0)
    return np.where(s == 0, r * b / a, np.where(b == 0, b0, root))


def wstat_goodness(counts, bkg_counts, model, ratio, n_sims: int = 2000, seed: int = 0):
    """Observed W-stat with its expectation, spread and z-score, by parametric bootstrap.

    Kaastra's (2017) exact moments exist for the C-stat only.  For W-stat the source and
    background spectra are re-drawn ``n_sims`` times from the model and the profiled
    background of the observation (``S* ~ Poisson(mu + beta)``, ``B* ~ Poisson(beta / r)``)
    and W is evaluated at the same model: the analogue of Kaastra's expectation at fixed
    parameters.  Returns :class:`~xsbi.stats.expected.CstatGoodness` (fields for W).
    """
    from xsbi.stats.expected import CstatGoodness

    s, b, mu = (np.asarray(v, dtype=np.float64) for v in (counts, bkg_counts, model))
    r = np.broadcast_to(np.asarray(ratio, dtype=np.float64), s.shape)
    w_obs = float(wstat(s, b, mu, r))
    beta = profile_background(s, b, mu, r)
    rng = np.random.default_rng(seed)
    s_sim = rng.poisson(mu + beta, size=(int(n_sims), s.size))
    b_sim = rng.poisson(beta / r, size=(int(n_sims), s.size))
    w = np.asarray(wstat(s_sim, b_sim, mu, r, validate=False))
    mean, std = float(w.mean()), float(w.std(ddof=1))
    return CstatGoodness(cstat=w_obs, expected=mean, std=std, z=(w_obs - mean) / std)
