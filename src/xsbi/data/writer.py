"""Writers for OGIP FITS files: PHA spectra, RMF redistribution matrices and ARFs.

The files follow OGIP/92-007 (type I PHA) and CAL/GEN/92-002 (RMF and ARF), so that XSPEC and
xsbi's own readers (:func:`~xsbi.data.load_spectrum`, :func:`~xsbi.data.read_rmf`,
:func:`~xsbi.data.read_arf`) accept them. Floating-point columns are stored as single precision
(FITS ``E``), as in calibration files: values read back equal the originals to float32 precision.

None of the writers replaces an existing file unless ``overwrite=True`` is passed.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from xsbi.data.ogip import to_counts
from xsbi.data.response import ARF, RMF
from xsbi.errors import DataError

__all__ = ["write_arf", "write_pha", "write_rmf"]

_INT32_MAX = np.iinfo(np.int32).max


# ------------------------------------------------------------------------------- helpers
def _creator() -> str:
    # Resolved at call time: importing xsbi.__version__ here would be circular.
    try:
        return f"xsbi {version('xsbi')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "xsbi 0.0.0"


def _stamp(header, what):
    """Keywords every xsbi-written HDU carries: CREATOR, DATE and a one-line origin note."""
    header["CREATOR"] = (_creator(), "Software that wrote this file")
    header["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                      "File creation date (UTC)")
    if what:
        header.add_history(f"{what} written by {_creator()}")


def _target(path, overwrite, kind) -> Path:
    """Check that ``path`` may be written; returns it as a Path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{kind} file {path} already exists; pass overwrite=True to replace it.")
    if not path.parent.is_dir():
        raise DataError(f"Cannot write {kind} file {path}: directory {path.parent} does not "
                        "exist. Create it first.")
    return path


def _write(hdus, path, overwrite, kind) -> Path:
    hdul = fits.HDUList(hdus)
    _stamp(hdul[0].header, None)
    try:
        hdul.writeto(path, overwrite=overwrite, checksum=True)
    except OSError as exc:
        raise DataError(f"Cannot write {kind} file {path} ({exc}).") from None
    return path


def _ogip(header, hduclas1, hduclas2, hduvers, hduclas3=None):
    header["HDUCLASS"] = ("OGIP", "Format conforms to OGIP standard")
    header["HDUCLAS1"] = hduclas1
    header["HDUCLAS2"] = hduclas2
    if hduclas3 is not None:
        header["HDUCLAS3"] = hduclas3
    header["HDUVERS"] = (hduvers, "Version of the format")


def _mission(header):
    # Mandatory OGIP keywords; xsbi objects do not record the mission, so they are 'none'.
    header["TELESCOP"] = ("none", "Mission or telescope name")
    header["INSTRUME"] = ("none", "Instrument name")
    header["FILTER"] = ("none", "Filter in use")


def _object_column(rows, dtype):
    """Object array of per-row arrays, as astropy wants for variable-length (P) columns."""
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        out[i] = np.asarray(r, dtype=dtype)
    return out


# ------------------------------------------------------------------------------- RMF
def _hduclas3(rmf: RMF) -> str:
    if rmf.hduclas3 in {"REDIST", "DETECTOR", "FULL"}:
        return rmf.hduclas3
    return "FULL" if rmf.is_rsp else "REDIST"


def _groups(matrix, first_channel):
    """Split each sparse row into groups of contiguous non-zero channels (CAL/GEN/92-002).

    Returns per-row lists ``(n_grp, f_chan, n_chan, values)``: N_GRP (n_rows,), and object
    arrays of the rows' F_CHAN (channel numbers, offset included), N_CHAN and MATRIX values.
    Elements that are zero once stored as float32 are dropped.
    """
    m = sp.csr_matrix(matrix, copy=True)
    m.sum_duplicates()
    m.sort_indices()
    m.data = m.data.astype(np.float32)
    m.eliminate_zeros()
    n_rows = m.shape[0]
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(n_rows), counts)
    cols = m.indices.astype(np.int64)
    # A group starts at a row's first element or after a gap in the channel numbers.
    start = np.ones(cols.size, dtype=bool)
    if cols.size:
        start[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + 1)
    pos = np.flatnonzero(start)
    f_chan = cols[pos] + first_channel
    n_chan = np.diff(np.r_[pos, cols.size])
    n_grp = np.bincount(rows[pos], minlength=n_rows)
    grp_split = np.cumsum(n_grp)[:-1]
    return (
        n_grp,
        _object_column(np.split(f_chan, grp_split), np.int32),
        _object_column(np.split(n_chan, grp_split), np.int32),
        _object_column(np.split(m.data, m.indptr[1:-1]), np.float32),
    )


def _ebounds_hdu(rmf: RMF) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=rmf.channels.astype(np.int32)),
        fits.Column("E_MIN", "E", unit="keV", array=rmf.e_min.astype(np.float32)),
        fits.Column("E_MAX", "E", unit="keV", array=rmf.e_max.astype(np.float32)),
    ], name="EBOUNDS")
    h = hdu.header
    _ogip(h, "RESPONSE", "EBOUNDS", "1.2.0")
    _mission(h)
    h["CHANTYPE"] = ("PI", "Channel type")
    h["DETCHANS"] = (rmf.n_channels, "Total number of detector channels")
    h["TLMIN1"] = rmf.first_channel
    h["TLMAX1"] = rmf.first_channel + rmf.n_channels - 1
    _stamp(h, "EBOUNDS")
    return hdu


def write_rmf(rmf: RMF, path, overwrite: bool = False) -> Path:
    """Write an :class:`RMF` as an OGIP response file (CAL/GEN/92-002).

    Parameters
    ----------
    rmf : RMF
        Redistribution matrix, or combined response (RSP) including the effective area.
    path : str or Path
        Output file.
    overwrite : bool
        Replace ``path`` if it exists (otherwise :class:`~xsbi.errors.DataError`).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The MATRIX extension (HDUCLAS1 RESPONSE, HDUCLAS2 RSP_MATRIX, HDUCLAS3 from
    ``rmf.hduclas3`` or, when unknown, FULL for a matrix that includes the effective area and
    REDIST otherwise) stores each energy row as N_GRP groups of contiguous non-zero channels:
    F_CHAN (first channel number, TLMIN4 = ``rmf.first_channel``), N_CHAN and MATRIX, as
    variable-length arrays; the EBOUNDS extension gives CHANNEL, E_MIN and E_MAX. Energies and
    matrix values are stored as float32.
    """
    if not isinstance(rmf, RMF):
        raise DataError(f"write_rmf needs an RMF (e.g. from read_rmf), got {rmf!r}.")
    path = _target(path, overwrite, "RMF")
    n_grp, f_chan, n_chan, values = _groups(rmf.matrix, rmf.first_channel)
    first, last = rmf.first_channel, rmf.first_channel + rmf.n_channels - 1
    if last > _INT32_MAX:
        raise DataError(f"RMF channel numbers up to {last} do not fit the 32-bit F_CHAN column.")
    mat = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=rmf.energ_lo.astype(np.float32)),
        fits.Column("ENERG_HI", "E", unit="keV", array=rmf.energ_hi.astype(np.float32)),
        fits.Column("N_GRP", "I" if n_grp.max(initial=0) <= 32767 else "J", array=n_grp),
        fits.Column("F_CHAN", "PJ()", array=f_chan),
        fits.Column("N_CHAN", "PJ()", array=n_chan),
        fits.Column("MATRIX", "PE()", array=values),
    ], name="MATRIX")
    h = mat.header
    hduclas3 = _hduclas3(rmf)
    _ogip(h, "RESPONSE", "RSP_MATRIX", "1.3.0", hduclas3)
    _mission(h)
    h["CHANTYPE"] = ("PI", "Channel type")
    h["DETCHANS"] = (rmf.n_channels, "Total number of detector channels")
    h["LO_THRES"] = (0.0, "Lower threshold of stored matrix values")
    h["TLMIN4"] = (first, "First legal channel number")
    h["TLMAX4"] = (last, "Last legal channel number")
    if hduclas3 == "FULL":
        h["EFFAREA"] = (1.0, "Matrix includes the effective area (cm^2)")
    _stamp(h, "Response matrix")
    return _write([fits.PrimaryHDU(), mat, _ebounds_hdu(rmf)], path, overwrite, "RMF")


# ------------------------------------------------------------------------------- ARF
def write_arf(arf: ARF, path, overwrite: bool = False) -> Path:
    """Write an :class:`ARF` as an OGIP ancillary response file (CAL/GEN/92-002).

    The SPECRESP extension (HDUCLAS1 RESPONSE, HDUCLAS2 SPECRESP) holds ENERG_LO, ENERG_HI
    (keV) and SPECRESP (cm^2) as float32. Returns ``path``; an existing file is replaced only
    with ``overwrite=True``.
    """
    if not isinstance(arf, ARF):
        raise DataError(f"write_arf needs an ARF (e.g. from read_arf), got {arf!r}.")
    path = _target(path, overwrite, "ARF")
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=arf.energ_lo.astype(np.float32)),
        fits.Column("ENERG_HI", "E", unit="keV", array=arf.energ_hi.astype(np.float32)),
        fits.Column("SPECRESP", "E", unit="cm**2", array=arf.specresp.astype(np.float32)),
    ], name="SPECRESP")
    h = hdu.header
    _ogip(h, "RESPONSE", "SPECRESP", "1.1.0")
    _mission(h)
    _stamp(h, "Effective area")
    return _write([fits.PrimaryHDU(), hdu], path, overwrite, "ARF")


# ------------------------------------------------------------------------------- PHA
def _file_keyword(value, pha_path: Path, keyword: str):
    """RESPFILE/ANCRFILE/BACKFILE value: ``(text, problem)``.

    A bare file name is taken to lie in the PHA's directory and is written as is. A path is
    written as its file name when it is in the PHA's directory; otherwise the keyword is 'none'
    (``problem`` then says why), since readers resolve these names from the PHA's directory.
    """
    if value is None or value is False:
        return "none", None
    text = os.fspath(value)
    if not text.strip() or text.strip().upper() in {"NONE", "NULL"}:
        return "none", None
    p = Path(text)
    if p.parent == Path("."):
        name = p.name
    elif p.resolve().parent == pha_path.resolve().parent:
        name = p.name
    else:
        return "none", (f"{keyword} {text} is not in the directory of {pha_path}, so {keyword} is "
                        "written as 'none'; keep the files together or pass the file to "
                        "load_spectrum explicitly.")
    if len(name) > 68:
        raise DataError(f"{keyword} file name {name!r} is longer than the 68 characters a FITS "
                        "keyword can hold; use a shorter name.")
    return name, None


def _channel_counts(spectrum, counts):
    n = spectrum.n_channels
    if counts is None:
        values = spectrum.channel_counts
    else:
        arr = np.asarray(counts)
        if arr.shape != (n,):
            hint = ""
            if arr.shape == (spectrum.n_bins,):
                hint = (" These look like grouped counts (one per bin): pass "
                        "spectrum.with_counts(counts) and leave counts=None.")
            raise DataError(f"write_pha counts: expected one value per channel, shape ({n},), "
                            f"got {arr.shape}.{hint}")
        values = to_counts(arr, "write_pha counts", spectrum.path or "spectrum")
    if values.size and values.max() > _INT32_MAX:
        raise DataError(f"write_pha: counts up to {values.max()} do not fit the 32-bit "
                        "COUNTS column.")
    return values.astype(np.int32)


def _scalar_or_column(value, name, n, cols, header, comment):
    if np.ndim(value) == 0:
        header[name] = (float(value), comment)
    else:
        cols.append(fits.Column(name, "E", array=np.asarray(value, np.float32).reshape(n)))


def write_pha(spectrum, path, counts=None, respfile=None, ancrfile=None, backfile=None,
              overwrite: bool = False) -> Path:
    """Write a :class:`~xsbi.data.Spectrum` as a type I PHA file (OGIP/92-007).

    Parameters
    ----------
    spectrum : Spectrum
        Supplies channels, channel-level counts, QUALITY, GROUPING, EXPOSURE, AREASCAL,
        BACKSCAL and the channel numbering of its response.
    path : str or Path
        Output file.
    counts : array_like of non-negative integers, (n_channels,), optional
        Channel-level counts written instead of ``spectrum.channel_counts`` (e.g. a
        simulated spectrum); POISSERR is then true.
    respfile, ancrfile, backfile : str or Path, optional
        Files named by RESPFILE, ANCRFILE and BACKFILE. They must lie in the PHA's directory
        (a bare file name is taken to): they are written as file names relative to it, which is
        how :func:`~xsbi.data.load_spectrum` resolves them. Anything else, or None, gives 'none'
        (a warning says so when a path elsewhere was given).
    overwrite : bool
        Replace ``path`` if it exists (otherwise :class:`~xsbi.errors.DataError`).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The SPECTRUM extension has CHANNEL, COUNTS (int32), QUALITY and GROUPING columns (GROUPING
    is all +1 for an ungrouped spectrum); AREASCAL and BACKSCAL are keywords when scalar and
    columns otherwise. Non-Poisson errors of a spectrum read from a file (POISSERR false) are
    kept as a STAT_ERR column unless ``counts`` is given; SYS_ERR is written as a keyword or
    column. The notice/ignore band selection is not stored (as in XSPEC): notice the loaded
    spectrum again.

    A spectrum made by :meth:`Spectrum.with_counts` knows only grouped counts; they are written
    as the Spectrum holds them, each bin's counts on its first good channel, together with its
    GROUPING and QUALITY. Loading the file therefore gives the same grouped counts for the
    same notice band, but the file must not be regrouped (a HISTORY record says so). Pass
    ``counts`` to write genuine channel-level counts instead.
    """
    from xsbi.data.spectrum import Spectrum  # avoids an import cycle at package import

    if not isinstance(spectrum, Spectrum):
        raise DataError(f"write_pha needs a Spectrum, got {spectrum!r}.")
    path = _target(path, overwrite, "PHA")
    n = spectrum.n_channels
    values = _channel_counts(spectrum, counts)
    channels = spectrum.channels
    if channels.size and (channels.min() < -2**31 or channels.max() > _INT32_MAX):
        raise DataError("write_pha: channel numbers do not fit the 32-bit CHANNEL column.")
    grouping = np.ones(n, dtype=np.int16) if spectrum.grouping is None else \
        spectrum.grouping.astype(np.int16)
    cols = [
        fits.Column("CHANNEL", "J", array=channels.astype(np.int32)),
        fits.Column("COUNTS", "J", unit="count", array=values),
        fits.Column("QUALITY", "I", array=spectrum.quality.astype(np.int16)),
        fits.Column("GROUPING", "I", array=grouping),
    ]
    header = fits.Header()
    stat_err = getattr(spectrum, "_stat_err_ch", None)
    poisserr = counts is not None or spectrum.poisserr or stat_err is None
    if not poisserr:
        cols.append(fits.Column("STAT_ERR", "E", unit="count",
                                array=np.asarray(stat_err, np.float32)))
    sys_err = getattr(spectrum, "_sys_err_ch", np.zeros(n))
    if np.all(sys_err == sys_err[0]):
        header["SYS_ERR"] = (float(sys_err[0]), "Fractional systematic error")
    else:
        cols.append(fits.Column("SYS_ERR", "E", array=np.asarray(sys_err, np.float32)))
    _scalar_or_column(spectrum.areascal, "AREASCAL", n, cols, header, "Area scaling factor")
    _scalar_or_column(spectrum.backscal, "BACKSCAL", n, cols, header,
                      "Background scaling factor")

    warnings_out = []
    files = {}
    for key, value in (("RESPFILE", respfile), ("ANCRFILE", ancrfile), ("BACKFILE", backfile)):
        files[key], problem = _file_keyword(value, path, key)
        if problem:
            warnings_out.append(problem)

    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    _ogip(h, "SPECTRUM", "TOTAL", "1.2.1", "COUNT")
    h["HDUCLAS4"] = ("TYPE:I", "Single PHA spectrum")
    _mission(h)
    h["EXPOSURE"] = (float(spectrum.exposure), "Exposure time (s)")
    for key, value in header.items():
        h[key] = (value, header.comments[key])
    h["POISSERR"] = (bool(poisserr), "Poisson errors apply")
    h["RESPFILE"] = (files["RESPFILE"], "Redistribution matrix file")
    h["ANCRFILE"] = (files["ANCRFILE"], "Ancillary response file")
    h["BACKFILE"] = (files["BACKFILE"], "Background file")
    h["CORRFILE"] = ("none", "Correction file")
    h["CORRSCAL"] = (1.0, "Correction scaling factor")
    h["CHANTYPE"] = ("PI", "Channel type")
    h["DETCHANS"] = (n, "Total number of detector channels")
    h["TLMIN1"] = (int(channels.min()) if n else 0, "First legal channel number")
    h["TLMAX1"] = (int(channels.max()) if n else 0, "Last legal channel number")
    _stamp(h, "Spectrum")
    if spectrum.simulated and counts is None:
        h.add_history("Simulated from grouped counts: each bin's counts are on its first good")
        h.add_history("channel. Keep the GROUPING; regrouping this file gives wrong counts.")
    out = _write([fits.PrimaryHDU(), hdu], path, overwrite, "PHA")
    for msg in warnings_out:
        warnings.warn(msg, stacklevel=2)
    return out
