"""Pearson/Neyman chi-square with XSPEC's weighting conventions.

Reference: XSPEC manual, Appendix B "Statistics in XSPEC", section "chi" and the ``weight``
command (``standard`` = data weighting, ``model`` = model weighting).
"""

from __future__ import annotations

from typing import Any

from xsbi.errors import DataError
from xsbi.stats.cstat import _any, _as_arrays, _check_counts

__all__ = ["chi2"]

_WEIGHTS = ("data", "model")


def chi2(
    counts: Any,
    model: Any,
    errors: Any = None,
    *,
    weight: str = "data",
    validate: bool = True,
) -> Any:
    """Chi-square, ``sum_i (S_i - m_i)^2 / sigma_i^2``, summed over the last axis.

    Parameters
    ----------
    counts : array_like or torch.Tensor, shape (..., n_bins)
        Data ``S_i``: counts, or rates / background-subtracted values when ``errors`` is
        given.  Need not be integers.
    model : array_like or torch.Tensor, shape (..., n_bins)
        Model prediction ``m_i`` in the same units; broadcast against ``counts``.
    errors : array_like or torch.Tensor, optional
        One-sigma uncertainties ``sigma_i`` (> 0).  When given, ``weight`` is not used.
    weight : {"data", "model"}
        Without ``errors``: ``"data"`` (XSPEC's ``weight standard``, Neyman chi^2) uses
        ``sigma_i^2 = S_i``, except that bins with ``S_i = 0`` get ``sigma_i = 1`` -- a zero
        variance would make the bin infinitely constraining, and 1 is the conventional
        substitute; such bins bias chi^2 fits, so prefer :func:`cstat` for sparse data.
        ``"model"`` (Pearson chi^2) uses ``sigma_i^2 = m_i``; a bin with ``m_i = 0``
        contributes 0 if ``S_i = 0`` and ``+inf`` otherwise, as does ``m_i < 0``.
    validate : bool
        Check the inputs.

    Returns
    -------
    numpy.ndarray (float64) or torch.Tensor, shape ``(...)``

    Raises
    ------
    DataError
        On NaN/inf data; on negative data with data weighting (there is no ``sqrt(S)``);
        on non-positive ``errors``; on an unknown ``weight`` or ``errors`` combined with
        ``weight="model"``.
    """
    if weight not in _WEIGHTS:
        raise DataError(f"weight must be one of {_WEIGHTS}, got {weight!r}")
    if errors is not None and weight != "data":
        raise DataError("give either errors or weight='model', not both")
    be, (s, m, e) = _as_arrays(counts, model, errors)
    if validate:
        data_weighted = errors is None and weight == "data"
        _check_counts(
            s,
            "counts",
            integer=False,
            nonnegative=data_weighted,
            hint="; with data weighting sigma = sqrt(counts) is undefined, pass errors=",
        )
        if e is not None and (_any(~(e > 0)) or _any(e == float("inf"))):
            raise DataError("errors must be finite and > 0 in every bin")

    resid2 = (s - m) ** 2
    if e is not None:
        return be.sum_last(resid2 / (e * e))
    if weight == "data":
        return be.sum_last(resid2 / be.where(s > 0, s, 1.0))
    pos = m > 0
    terms = resid2 / be.where(pos, m, 1.0)
    impossible = (m < 0) | ((m == 0) & (s != 0))
    terms = be.where(pos, terms, be.where(impossible, float("inf"), 0.0))
    return be.sum_last(terms)
