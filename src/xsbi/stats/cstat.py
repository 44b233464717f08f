"""Cash's C-statistic in the form XSPEC uses, for numpy arrays and torch tensors.

References
----------
Cash, W. 1979, ApJ 228, 939, "Parameter estimation in astronomy through application of the
likelihood ratio".
XSPEC manual, Appendix B "Statistics in XSPEC", section "Poisson data (cstat)".

This module also holds the small amount of array plumbing shared by the other statistics in
:mod:`xsbi.stats` (backend selection, input validation and the per-bin Poisson deviance), so
that every statistic treats numpy/torch inputs and bad counts identically.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import special

from xsbi.errors import DataError

__all__ = ["cstat"]

# Coefficients 1/3, 1/5, ... of the odd-power series in the deviance.  With |v| < 0.1 the
# first dropped term is < 1e-17 (8 terms, float64) or < 1e-9 (4 terms, float32) of the
# leading one, i.e. below the working precision.
_SERIES_64 = tuple(1.0 / (2 * j + 1) for j in range(1, 9))
_SERIES_32 = _SERIES_64[:4]


def _torch():
    # torch is looked up, not imported: if nobody imported it, no argument can be a tensor,
    # and numpy-only users do not pay torch's import time.
    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass(frozen=True)
class _Backend:
    """The handful of array functions the statistics need, for one array library."""

    where: Callable
    log: Callable
    log1p: Callable
    xlogy: Callable
    sqrt: Callable
    abs: Callable
    sum_last: Callable
    is_torch: bool


_NUMPY = _Backend(
    where=np.where,
    log=np.log,
    log1p=np.log1p,
    xlogy=special.xlogy,
    sqrt=np.sqrt,
    abs=np.abs,
    sum_last=lambda x: np.sum(x, axis=-1),
    is_torch=False,
)


def _torch_backend() -> _Backend:
    torch = _torch()
    return _Backend(
        where=torch.where,
        log=torch.log,
        log1p=torch.log1p,
        xlogy=torch.xlogy,
        sqrt=torch.sqrt,
        abs=torch.abs,
        sum_last=lambda x: torch.sum(x, dim=-1),
        is_torch=True,
    )


def _as_arrays(*xs: Any) -> tuple[_Backend, list]:
    """Convert all inputs to one array type.

    Any torch tensor among the inputs makes the computation torch, so that a torch model
    keeps its autograd graph even when the observed counts are a numpy array.  The dtype is
    the promoted dtype of the floating tensors (the model's precision is kept, e.g. float32),
    the device that of the first tensor (float64 if no tensor is floating).  Without tensors
    everything becomes float64 numpy.
    ``None`` entries pass through unchanged.
    """
    tensors = [x for x in xs if _is_tensor(x)]
    if not tensors:
        return _NUMPY, [None if x is None else np.asarray(x, dtype=np.float64) for x in xs]
    torch = _torch()
    dtype = None
    for t in tensors:
        if t.is_floating_point():
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    if dtype is None:
        # Only integer tensors (e.g. counts) next to numpy/Python model values: those are
        # float64, so keep their precision.
        dtype = torch.float64
    device = tensors[0].device
    out = [None if x is None else torch.as_tensor(x, dtype=dtype, device=device) for x in xs]
    return _torch_backend(), out


def _first_index(mask: Any) -> tuple[int, ...]:
    if _is_tensor(mask):
        return tuple(int(i) for i in _torch().nonzero(mask)[0].tolist())
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _any(mask: Any) -> bool:
    return bool(mask.any())


def _check_counts(
    x: Any, name: str, *, integer: bool, nonnegative: bool = True, hint: str = ""
) -> None:
    """Raise :class:`DataError` if ``x`` cannot be Poisson counts.

    Counts are data, so bad values are the user's to fix and are reported with the index of
    the first offending bin; models are never checked here (they are what is being fitted).
    """
    finite = _torch().isfinite(x) if _is_tensor(x) else np.isfinite(x)
    if not bool(finite.all()):
        idx = _first_index(~finite)
        raise DataError(
            f"{name} contain NaN or infinite values (first at index {idx}); "
            f"remove or mask those bins before computing the statistic"
        )
    if nonnegative and _any(x < 0):
        idx = _first_index(x < 0)
        raise DataError(
            f"{name} contain negative values (first at index {idx}: {float(x[idx])}); "
            f"Poisson counts must be >= 0{hint}"
        )
    if integer:
        frac = x != (x.round() if _is_tensor(x) else np.round(x))
        if _any(frac):
            idx = _first_index(frac)
            raise DataError(
                f"{name} contain non-integer values (first at index {idx}: {float(x[idx])}); "
                f"this statistic needs raw counts, not rates or background-subtracted data"
                f"{hint}"
            )


def _deviance(counts: Any, model: Any, be: _Backend) -> Any:
    """Per-bin Poisson deviance ``m - S + S ln(S/m)`` (half of the C-stat contribution).

    Equal to ``m`` for ``S = 0``; ``+inf`` where ``m < 0`` or ``m = 0 < S`` (such a model
    cannot produce the observed counts).

    Computing ``S ln S - S ln m`` and ``m - S`` separately cancels catastrophically when
    ``S ~ m`` is large, the usual situation near a good fit (and fatal in float32).  Where
    ``|S - m| < 0.1 (S + m)`` we therefore use the series of Loader (2000, "Fast and accurate
    computation of binomial probabilities", function bd0), truncated at working precision:
    with ``v = (S - m)/(S + m)``, ``S ln(S/m) + m - S = (S - m) v + 2 S (v^3/3 + v^5/5 + ...)``,
    whose terms are all small and of the right magnitude.

    Every branch is evaluated on safe stand-in values where it is not selected, so that torch
    gradients stay finite (a NaN in an unselected ``where`` branch still poisons the gradient).
    """
    pos = model > 0
    m = be.where(pos, model, 1.0)
    diff = counts - m
    # |v| <= 1 always and counts + m >= m > 0, so the series below is finite everywhere and
    # needs no masking of its own.
    v = diff / (counts + m)
    v2 = v * v
    coeffs = _SERIES_64
    if be.is_torch and counts.element_size() <= 4:
        coeffs = _SERIES_32
    poly = coeffs[-1]
    for c in coeffs[-2::-1]:
        poly = poly * v2 + c
    series = diff * v + 2.0 * counts * v * v2 * poly
    direct = be.xlogy(counts, counts) - be.xlogy(counts, m) - diff
    dev = be.where(be.abs(v) < 0.1, series, direct)
    # Given model <= 0: a negative model, or a zero model facing counts, cannot produce the
    # data; zero model with zero counts contributes exactly 0 (the limit of 2 m).
    impossible = (model < 0) | (counts > 0)
    return be.where(pos, dev, be.where(impossible, float("inf"), 0.0))


def cstat(counts: Any, model: Any, *, validate: bool = True) -> Any:
    """XSPEC's C-statistic (Cash 1979 with the Stirling-form data term).

    .. math::

        C = 2 \\sum_i \\left[ m_i - S_i + S_i (\\ln S_i - \\ln m_i) \\right],

    where ``S_i ln S_i`` is taken as 0 for ``S_i = 0`` (such a bin contributes ``2 m_i``).
    This is -2 times the Poisson log-likelihood ratio of the model to the saturated model
    (``m_i = S_i``), as in the XSPEC manual, Appendix B "Statistics in XSPEC"; for a correct
    model and many counts per bin it is approximately chi^2 distributed.  For its exact
    expectation and variance at low counts see :mod:`xsbi.stats.expected` (Kaastra 2017).

    Parameters
    ----------
    counts : array_like or torch.Tensor, shape (..., n_bins)
        Observed counts ``S_i``; must be finite, non-negative integers.
    model : array_like or torch.Tensor, shape (..., n_bins)
        Expected counts ``m_i`` (model rate x exposure, already folded through the response).
        Broadcast against ``counts``, e.g. one observation ``(n_bins,)`` against a batch of
        models ``(N, n_bins)``.
    validate : bool
        Check the counts (skip inside tight simulation loops where they are known good).

    Returns
    -------
    numpy.ndarray (float64) or torch.Tensor (dtype of the inputs), shape ``(...)``
        The statistic, summed over the last axis.  ``+inf`` if for some bin ``m_i < 0``, or
        ``m_i = 0`` while ``S_i > 0`` (the model cannot produce the data).  NaN in the model
        propagates.

    Raises
    ------
    DataError
        If counts are negative, NaN/inf or not integers (use :func:`xsbi.stats.chi2` for
        rates or background-subtracted data).
    """
    be, (s, m) = _as_arrays(counts, model)
    if validate:
        _check_counts(
            s, "counts", integer=True, hint="; for rates use xsbi.stats.chi2 instead"
        )
    return 2.0 * be.sum_last(_deviance(s, m, be))
