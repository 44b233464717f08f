"""Low-level readers for OGIP FITS files (spectra, responses, effective areas).

These functions only turn FITS tables into plain numpy arrays and validate them; the objects
built from them live in :mod:`xsbi.data.response` and :mod:`xsbi.data.spectrum`.

References
----------
OGIP/92-007 (PHA files) and CAL/GEN/92-002 (RMF and ARF files), HEASARC OGIP memos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from xsbi.data import fits_lite
from xsbi.errors import DataError

_ABSENT = {"", "NONE", "NULL"}
#: Counts derived from a RATE column must be this close to integers to be accepted.
INTEGER_TOLERANCE = 1e-3


def is_absent(value) -> bool:
    """True for keyword values that OGIP files use to mean "no such file/value"."""
    return value is None or (isinstance(value, str) and value.strip().upper() in _ABSENT)


def keyword(header, name, default=None):
    """Header keyword value, with ``'none'``/blank/missing mapped to ``default``."""
    value = header.get(name)
    return default if is_absent(value) else value


def open_fits(path: Path):
    """Open a FITS file (plain or gzip-compressed), turning I/O failures into DataError."""
    try:
        return fits.open(path, memmap=False)
    except FileNotFoundError:
        raise DataError(f"File not found: {path}") from None
    except OSError as exc:
        raise DataError(f"Cannot read {path} as a FITS file ({exc}).") from None


def find_hdu(hdul, extnames, hduclas=(), path=None):
    """First extension whose EXTNAME is in ``extnames`` or whose HDUCLASn matches.

    ``hduclas`` is a sequence of ``(keyword, value)`` pairs, e.g. ``("HDUCLAS1", "SPECTRUM")``.
    """
    wanted = {n.upper() for n in extnames}
    for hdu in hdul[1:]:
        if str(hdu.header.get("EXTNAME", "")).strip().upper() in wanted:
            return hdu
    for hdu in hdul[1:]:
        for key, value in hduclas:
            if str(hdu.header.get(key, "")).strip().upper() == value.upper():
                return hdu
    names = ", ".join(sorted(wanted))
    raise DataError(
        f"{path or 'FITS file'} has no {names} extension; is it the right kind of OGIP file?"
    )


def column_names(hdu) -> list[str]:
    return [c.upper() for c in hdu.columns.names]


def column_tlmin(hdu, name, default=None):
    """TLMINn of the named column (OGIP: lowest legal value, used for channel offsets)."""
    names = column_names(hdu)
    if name.upper() not in names:
        return default
    value = hdu.header.get(f"TLMIN{names.index(name.upper()) + 1}")
    return default if value is None else int(value)


def column_or_keyword(hdu, name, default=None):
    """Per-row column if present, else the keyword of the same name, else ``default``."""
    if name.upper() in column_names(hdu):
        return np.asarray(hdu.data[name])
    return keyword(hdu.header, name, default)


def ragged(column, n_rows):
    """Flatten a fixed-width or variable-length FITS column.

    Returns ``(values, lengths)``: the concatenated row contents and each row's length.
    Fixed-width columns (``18I``) and variable-length ones (``PJ(1)``) look the same afterwards.
    """
    arr = column
    if isinstance(arr, np.ndarray) and arr.dtype != object:
        arr = np.asarray(arr)
        if arr.ndim == 1:
            return arr, np.ones(n_rows, dtype=np.int64)
        flat = arr.reshape(n_rows, -1)
        return flat.ravel(), np.full(n_rows, flat.shape[1], dtype=np.int64)
    rows = [np.atleast_1d(np.asarray(r)) for r in arr]
    lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=n_rows)
    values = np.concatenate(rows) if rows and lengths.sum() else np.zeros(0)
    return values, lengths


def take_first(values, lengths, keep, what, path):
    """From each row of a flattened ragged array keep only the first ``keep[row]`` entries."""
    if np.any(lengths < keep):
        row = int(np.argmax(lengths < keep))
        raise DataError(
            f"{path}: row {row} of {what} has {lengths[row]} entries but {keep[row]} are needed "
            "(N_GRP/N_CHAN inconsistent with the stored arrays); the file is malformed."
        )
    if np.array_equal(lengths, keep):
        return values
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(values.size) - starts
    return values[position < np.repeat(keep, lengths)]


def to_counts(values, what, path):
    """Validate and convert counts to int64: finite, non-negative, integer-valued."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{path}: {what} contains {int(bad.sum())} NaN/infinite value(s) "
            f"(first at index {int(np.argmax(bad))}); counts must be finite."
        )
    if (values < 0).any():
        i = int(np.argmax(values < 0))
        raise DataError(
            f"{path}: {what} contains negative counts ({values[i]} at index {i}); "
            "Poisson counts must be >= 0. Is this a background-subtracted spectrum? "
            "Load the total spectrum and its background file instead."
        )
    rounded = np.rint(values)
    off = np.abs(values - rounded) > INTEGER_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        raise DataError(
            f"{path}: {what} is not integer-valued ({values[i]!r} at index {i}); "
            "Poisson statistics need integer counts."
        )
    return rounded.astype(np.int64)


@dataclass
class PHAData:
    """Contents of a type I PHA file (OGIP/92-007), channel by channel."""

    path: Path
    channels: np.ndarray
    counts: np.ndarray
    exposure: float
    quality: np.ndarray
    grouping: np.ndarray | None
    areascal: float | np.ndarray = 1.0
    backscal: float | np.ndarray = 1.0
    poisserr: bool = True
    stat_err: np.ndarray | None = None  # in counts, per channel
    sys_err: float | np.ndarray = 0.0  # fractional
    respfile: str | None = None
    ancrfile: str | None = None
    backfile: str | None = None
    header: dict = field(default_factory=dict)


def _scale(value, name, path, n):
    """AREASCAL/BACKSCAL: collapse a constant column to a float."""
    if isinstance(value, np.ndarray):
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.size != n:
            raise DataError(f"{path}: {name} column has {value.size} rows, expected {n}.")
        return float(value[0]) if np.all(value == value[0]) else value
    return float(value)


def read_pha(path) -> PHAData:
    """Read a type I PHA spectrum (OGIP/92-007).

    Parameters
    ----------
    path : str or Path
        Spectrum file, optionally gzip-compressed.

    Returns
    -------
    PHAData
        Channel-wise counts (RATE is converted to counts with EXPOSURE), QUALITY, GROUPING,
        AREASCAL, BACKSCAL, POISSERR, STAT_ERR (in counts), SYS_ERR and the file keywords.
    """
    path = Path(path)
    try:
        # the fast reader handles the common layouts; anything else goes to astropy
        tables = fits_lite.read_tables(path)
    except (fits_lite.Unsupported, OSError, KeyError, ValueError, TypeError):  # ValueError: bad text too
        tables = None
    if tables is not None:
        return _pha_from_hdus([None, *tables], path)
    with open_fits(path) as hdul:
        return _pha_from_hdus(hdul, path)


def _pha_from_hdus(hdul, path: Path) -> PHAData:
    hdu = find_hdu(hdul, ["SPECTRUM"], [("HDUCLAS1", "SPECTRUM")], path)
    header = hdu.header
    names = column_names(hdu)
    n = len(hdu.data) if hdu.data is not None else 0
    if n == 0:
        raise DataError(f"{path}: the SPECTRUM extension has no rows.")

    exposure = keyword(header, "EXPOSURE")
    if exposure is None:
        raise DataError(f"{path}: EXPOSURE keyword missing; cannot convert to rates.")
    exposure = float(exposure)
    if not np.isfinite(exposure) or exposure <= 0:
        raise DataError(
            f"{path}: EXPOSURE = {exposure} s; it must be a positive number of seconds."
        )

    if "COUNTS" in names:
        raw, what = hdu.data["COUNTS"], "COUNTS"
    elif "RATE" in names:
        raw, what = hdu.data["RATE"], "RATE"
    else:
        raise DataError(f"{path}: the SPECTRUM extension has neither COUNTS nor RATE column.")
    raw = np.asarray(raw)
    if raw.ndim > 1 and raw.shape[1] > 1:
        raise DataError(
            f"{path} is a PHA type II file ({n} spectra in one table); only type I is "
            "supported. Extract one spectrum into its own file first."
        )
    raw = raw.reshape(-1).astype(np.float64)
    scale = exposure if what == "RATE" else 1.0
    counts = to_counts(raw * scale, what if what == "COUNTS" else "RATE*EXPOSURE", path)

    first = column_tlmin(hdu, "CHANNEL")
    if "CHANNEL" in names:
        channels = np.asarray(hdu.data["CHANNEL"], dtype=np.int64).reshape(-1)
    else:
        channels = (1 if first is None else first) + np.arange(n, dtype=np.int64)

    quality = column_or_keyword(hdu, "QUALITY", 0)
    quality = np.broadcast_to(np.asarray(quality, dtype=np.int64).reshape(-1), (n,)).copy()
    grouping = column_or_keyword(hdu, "GROUPING", None)
    if grouping is not None:
        grouping = np.asarray(grouping, dtype=np.int64).reshape(-1)
        grouping = None if grouping.size == 1 and grouping[0] == 0 else grouping
        if grouping is not None:
            grouping = np.broadcast_to(grouping, (n,)).copy()

    poisserr = keyword(header, "POISSERR")
    stat_err = column_or_keyword(hdu, "STAT_ERR", None)
    if isinstance(stat_err, np.ndarray):
        stat_err = np.asarray(stat_err, dtype=np.float64).reshape(-1) * scale
    elif stat_err is not None and float(stat_err) > 0:
        stat_err = np.full(n, float(stat_err) * scale)
    else:
        stat_err = None
    # OGIP: POISSERR missing means Poisson errors unless explicit errors are given.
    poisserr = bool(poisserr) if poisserr is not None else stat_err is None

    sys_err = column_or_keyword(hdu, "SYS_ERR", 0.0)
    if isinstance(sys_err, np.ndarray):
        sys_err = np.asarray(sys_err, dtype=np.float64).reshape(-1)
    else:
        sys_err = float(sys_err)

    return PHAData(
        path=path,
        channels=channels,
        counts=counts,
        exposure=exposure,
        quality=quality,
        grouping=grouping,
        areascal=_scale(column_or_keyword(hdu, "AREASCAL", 1.0), "AREASCAL", path, n),
        backscal=_scale(column_or_keyword(hdu, "BACKSCAL", 1.0), "BACKSCAL", path, n),
        poisserr=poisserr,
        stat_err=stat_err,
        sys_err=sys_err,
        respfile=keyword(header, "RESPFILE"),
        ancrfile=keyword(header, "ANCRFILE"),
        backfile=keyword(header, "BACKFILE"),
        header=dict(header),
    )


@dataclass
class RMFData:
    """Raw contents of an RMF/RSP file (CAL/GEN/92-002), groups flattened."""

    path: Path
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    rows: np.ndarray  # energy index of each stored matrix element
    cols: np.ndarray  # channel index (0-based, offset removed) of each element
    values: np.ndarray
    n_channels: int
    first_channel: int
    e_min: np.ndarray
    e_max: np.ndarray
    hduclas3: str | None


def read_rmf_data(path) -> RMFData:
    """Read the MATRIX (or 'SPECRESP MATRIX') and EBOUNDS extensions of an RMF/RSP.

    Handles N_GRP/F_CHAN/N_CHAN/MATRIX stored as variable-length or fixed-width arrays; only
    the first N_GRP groups of each row and the first sum(N_CHAN) matrix values are used.
    The channel offset is TLMIN of F_CHAN (1 if absent, per CAL/GEN/92-002).
    """
    path = Path(path)
    with open_fits(path) as hdul:
        mat = find_hdu(
            hdul, ["MATRIX", "SPECRESP MATRIX"], [("HDUCLAS2", "RSP_MATRIX")], path
        )
        ebo = find_hdu(hdul, ["EBOUNDS"], [("HDUCLAS2", "EBOUNDS")], path)
        names = column_names(mat)
        for col in ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"):
            if col not in names:
                raise DataError(f"{path}: MATRIX extension lacks the {col} column.")
        data = mat.data
        n_rows = len(data)
        energ_lo = np.asarray(data["ENERG_LO"], dtype=np.float64).reshape(-1)
        energ_hi = np.asarray(data["ENERG_HI"], dtype=np.float64).reshape(-1)
        n_grp = np.asarray(data["N_GRP"], dtype=np.int64).reshape(-1)

        f_vals, f_len = ragged(data["F_CHAN"], n_rows)
        n_vals, n_len = ragged(data["N_CHAN"], n_rows)
        m_vals, m_len = ragged(data["MATRIX"], n_rows)
        f_chan = take_first(f_vals, f_len, n_grp, "F_CHAN", path).astype(np.int64)
        n_chan = take_first(n_vals, n_len, n_grp, "N_CHAN", path).astype(np.int64)
        per_row = np.bincount(np.repeat(np.arange(n_rows), n_grp), weights=n_chan,
                              minlength=n_rows).astype(np.int64)
        values = take_first(m_vals, m_len, per_row, "MATRIX", path).astype(np.float64)

        offset = column_tlmin(mat, "F_CHAN")
        ebo_names = column_names(ebo)
        for col in ("E_MIN", "E_MAX"):
            if col not in ebo_names:
                raise DataError(f"{path}: EBOUNDS extension lacks the {col} column.")
        e_min = np.asarray(ebo.data["E_MIN"], dtype=np.float64).reshape(-1)
        e_max = np.asarray(ebo.data["E_MAX"], dtype=np.float64).reshape(-1)
        if "CHANNEL" in ebo_names:
            ebo_chan = np.asarray(ebo.data["CHANNEL"], dtype=np.int64).reshape(-1)
            order = np.argsort(ebo_chan, kind="stable")
            e_min, e_max, ebo_chan = e_min[order], e_max[order], ebo_chan[order]
        else:
            ebo_chan = None
        if offset is None:
            offset = 1
            # Some writers omit TLMIN yet number channels from 0; trust the data over the default.
            if f_chan.size and f_chan.min() == 0:
                offset = int(ebo_chan[0]) if ebo_chan is not None else 0

        detchans = keyword(mat.header, "DETCHANS")
        n_channels = e_min.size
        if detchans is not None and int(detchans) != n_channels:
            raise DataError(
                f"{path}: DETCHANS = {detchans} but EBOUNDS has {n_channels} rows; "
                "the file is inconsistent."
            )
        rows = np.repeat(np.repeat(np.arange(n_rows), n_grp), n_chan)
        # Column of each element: group's first channel plus its position inside the group.
        group_start = np.cumsum(n_chan) - n_chan
        cols = np.repeat(f_chan - offset - group_start, n_chan) + np.arange(n_chan.sum())
        if cols.size and (cols.min() < 0 or cols.max() >= n_channels):
            raise DataError(
                f"{path}: matrix refers to channels outside 0..{n_channels - 1} after removing "
                f"the F_CHAN offset {offset} (TLMIN); the file is malformed."
            )
        hduclas3 = keyword(mat.header, "HDUCLAS3")
        return RMFData(
            path=path,
            energ_lo=energ_lo,
            energ_hi=energ_hi,
            rows=rows,
            cols=cols,
            values=values,
            n_channels=n_channels,
            first_channel=int(offset),
            e_min=e_min,
            e_max=e_max,
            hduclas3=None if hduclas3 is None else str(hduclas3).strip().upper(),
        )


def read_arf_data(path):
    """Read ENERG_LO, ENERG_HI, SPECRESP (cm^2) of an ARF's SPECRESP extension (CAL/GEN/92-002)."""
    path = Path(path)
    with open_fits(path) as hdul:
        hdu = find_hdu(hdul, ["SPECRESP"], [("HDUCLAS2", "SPECRESP")], path)
        names = column_names(hdu)
        for col in ("ENERG_LO", "ENERG_HI", "SPECRESP"):
            if col not in names:
                raise DataError(f"{path}: SPECRESP extension lacks the {col} column.")
        return tuple(
            np.asarray(hdu.data[c], dtype=np.float64).reshape(len(hdu.data), -1)[:, 0]
            for c in ("ENERG_LO", "ENERG_HI", "SPECRESP")
        )
