"""Spectrum: counts per grouped channel bin, with its response, background and band selection.

Follows the PHA conventions of OGIP/92-007 and XSPEC's notice/ignore/grouping semantics.
A :class:`Spectrum` is immutable: notice, ignore and regrouping return new objects.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xsbi.data import grouping as grp
from xsbi.data.ogip import read_pha, to_counts
from xsbi.data.response import ARF, RMF, check_grids, read_arf, read_rmf
from xsbi.errors import DataError


def _tol(emax):
    # Absorbs float32 rounding of EBOUNDS (e.g. 10.0 stored as 9.99999905).
    return 1e-6 * max(1.0, abs(emax)) if math.isfinite(emax) else 0.0


def _inside(lo, hi, ranges):
    """Mask of [lo, hi] intervals contained (within tolerance) in one of ``ranges``."""
    keep = np.zeros(np.shape(lo), dtype=bool)
    for r0, r1 in ranges:
        t = _tol(r1)
        keep |= (lo >= r0 - t) & (hi <= r1 + t)
    return keep


def _merge(ranges):
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _intersect(a, b):
    out = []
    for a0, a1 in a:
        for b0, b1 in b:
            lo, hi = max(a0, b0), min(a1, b1)
            if hi > lo:
                out.append((lo, hi))
    return _merge(out)


def _parse_ranges(emin, emax, what):
    if emax is None:
        try:
            pairs = [(float(lo), float(hi)) for lo, hi in emin]
        except (TypeError, ValueError):
            raise DataError(
                f"{what} takes (emin, emax) in keV or a list of (emin, emax) pairs."
            ) from None
    else:
        pairs = [(float(emin), float(emax))]
    for lo, hi in pairs:
        if math.isnan(lo) or math.isnan(hi) or not hi > lo:
            raise DataError(f"{what}: need emin < emax in keV, got ({lo}, {hi}).")
    return _merge(pairs)


def _per_channel(value, n, name):
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 \
        else np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise DataError(f"{name} has {arr.size} entries for {n} channels.")
    return arr


class Spectrum:
    """A type I PHA spectrum with its grouping, band selection, response and background.

    Parameters
    ----------
    channels : array_like of int, (n_channels,)
    channel_counts : array_like of non-negative integers, (n_channels,)
    exposure : float
        Seconds, > 0.
    rmf : RMF
        Redistribution matrix (or combined RSP); its channels map to ``channels`` by position.
    arf : ARF or None
        Effective area; None means 1 (e.g. with a combined RSP).
    grouping : array_like or None
        OGIP GROUPING (+1 starts a group, -1 continues); None: every channel is a bin.
    quality : array_like or None
        OGIP QUALITY; non-zero channels are bad and excluded everywhere.
    areascal, backscal : float or array_like (n_channels,)
    background : Spectrum or None
        Background spectrum; it is regrouped and noticed like this one. Bad channels of the
        background are bad for the source too.
    poisserr : bool
    stat_err : array_like or None
        Per-channel statistical errors in counts (POISSERR false).
    sys_err : float or array_like
        Fractional systematic error per channel (SYS_ERR).
    notice_ranges : list of (emin, emax) or None
        Energy band selection in keV; None keeps every good bin.
    path, respfile, ancrfile, backfile : Path or None
        Where the data came from (informative).

    Notes
    -----
    Counts of a grouped bin are summed over its good channels; its energy range runs from
    E_MIN of its first good channel to E_MAX of its last (EBOUNDS, CAL/GEN/92-002).
    """

    def __init__(self, channels, channel_counts, exposure, rmf, arf=None, grouping=None,
                 quality=None, areascal=1.0, backscal=1.0, background=None, *,
                 poisserr=True, stat_err=None, sys_err=0.0, notice_ranges=None,
                 path=None, respfile=None, ancrfile=None, backfile=None, simulated=False):
        self.path = None if path is None else Path(path)
        label = str(self.path) if self.path else "spectrum"
        self.channels = np.asarray(channels, dtype=np.int64).reshape(-1)
        n = self.channels.size
        self.channel_counts = to_counts(channel_counts, "COUNTS", label)
        if self.channel_counts.size != n:
            raise DataError(f"{label}: {self.channel_counts.size} counts for {n} channels.")
        exposure = float(exposure)
        if not math.isfinite(exposure) or exposure <= 0:
            raise DataError(f"{label}: exposure must be a positive number of seconds, "
                            f"got {exposure}.")
        self.exposure = exposure
        if not isinstance(rmf, RMF):
            raise DataError(f"{label}: rmf must be an RMF (use read_rmf(path)), got {rmf!r}.")
        if rmf.n_channels != n:
            raise DataError(
                f"{label} has {n} channels but the response {rmf.path or ''} has "
                f"DETCHANS = {rmf.n_channels}; they belong to different instruments or "
                "binnings. Pass the matching response with rmf=."
            )
        if n and self.channels[0] != rmf.first_channel:
            warnings.warn(f"{label}: first channel {self.channels[0]} but the response starts "
                          f"at channel {rmf.first_channel}; channels are matched by position.",
                          stacklevel=2)
        if arf is not None:
            if not isinstance(arf, ARF):
                raise DataError(f"{label}: arf must be an ARF or None, got {arf!r}.")
            check_grids(rmf, arf)
        self.rmf, self.arf = rmf, arf

        quality = np.zeros(n, dtype=np.int64) if quality is None else \
            np.asarray(quality, dtype=np.int64).reshape(-1)
        if quality.size != n:
            raise DataError(f"{label}: QUALITY has {quality.size} entries for {n} channels.")
        if background is not None:
            if not isinstance(background, Spectrum):
                raise DataError(f"{label}: background must be a Spectrum or None.")
            if background.n_channels != n:
                raise DataError(
                    f"{label} has {n} channels but its background {background.path or ''} has "
                    f"{background.n_channels}; pass the matching background= (or False)."
                )
            # XSPEC ignores a channel that is bad in either the source or the background.
            quality = np.where((quality == 0) & (background.quality != 0), background.quality,
                               quality)
        self.quality = quality
        self.grouping = None if grouping is None else np.asarray(grouping, np.int64).reshape(-1)
        self.areascal = areascal if np.ndim(areascal) == 0 else np.asarray(areascal, float)
        self.backscal = backscal if np.ndim(backscal) == 0 else np.asarray(backscal, float)
        self._areascal_ch = _per_channel(areascal, n, "AREASCAL")
        self._backscal_ch = _per_channel(backscal, n, "BACKSCAL")
        self._sys_err_ch = _per_channel(sys_err, n, "SYS_ERR")
        self._stat_err_ch = None if stat_err is None else _per_channel(stat_err, n, "STAT_ERR")
        self.poisserr = bool(poisserr)
        self.respfile = None if respfile is None else Path(respfile)
        self.ancrfile = None if ancrfile is None else Path(ancrfile)
        self.backfile = None if backfile is None else Path(backfile)
        self.simulated = bool(simulated)
        self._sys_err_arg, self._stat_err_arg = sys_err, stat_err
        self._ranges = None if notice_ranges is None else _merge(
            [(float(a), float(b)) for a, b in notice_ranges])
        self._layout(label)

        used = self._chan_bin >= 0
        if np.any(~(self._areascal_ch[used] > 0)):
            raise DataError(f"{label}: AREASCAL must be > 0 for every good channel.")
        self.background = None
        self.background_counts = None
        self.background_ratio = None
        if background is not None:
            self._attach_background(background, label)

    # ----------------------------------------------------------------------------- layout
    def _layout(self, label):
        n = self.channels.size
        good = self.quality == 0
        gids = grp.group_ids(self.grouping, n)
        first, last, group_of_bin = grp.bin_layout(gids, good)
        if first.size == 0:
            raise DataError(f"{label}: every channel has bad QUALITY; nothing to fit.")
        lo_all = self.rmf.e_min[first]
        hi_all = self.rmf.e_max[last]
        self._full_range = (float(lo_all.min()), float(hi_all.max()))
        sel = np.ones(first.size, bool) if self._ranges is None else \
            _inside(lo_all, hi_all, self._ranges)
        if not sel.any():
            bands = ", ".join(f"{a:g}-{b:g}" for a, b in self._ranges) or "(empty)"
            raise DataError(
                f"{label}: the energy band {bands} keV contains no bins (a bin is kept only if "
                f"it lies wholly inside the band); the spectrum's good bins cover "
                f"{self._full_range[0]:.4g}-{self._full_range[1]:.4g} keV."
            )
        bin_of_group = np.full(gids[-1] + 1, -1, dtype=np.int64)
        bin_of_group[group_of_bin[sel]] = np.arange(int(sel.sum()))
        self._chan_bin = np.where(good, bin_of_group[gids], -1)
        self._first_chan = first[sel]
        self.n_bins = int(sel.sum())
        self.energy_bounds = np.column_stack([lo_all[sel], hi_all[sel]])
        self.counts = np.rint(self._sum(self.channel_counts)).astype(np.int64)
        self._response = None

    def _sum(self, values):
        return grp.sum_by_bin(values, self._chan_bin, self.n_bins)

    def _mean(self, values):
        return self._sum(values) / self._sum(np.ones(self.channels.size))

    def _attach_background(self, background, label):
        bkg = background._replace(
            rmf=self.rmf, arf=None, grouping=self.grouping, quality=self.quality,
            notice_ranges=self._ranges, background=None,
        )
        if bkg.n_bins != self.n_bins:  # cannot happen: same channels, grouping and quality
            raise DataError(f"{label}: background binning differs from the source's.")
        src = self.exposure * self._areascal_ch * self._backscal_ch
        ref = bkg.exposure * bkg._areascal_ch * bkg._backscal_ch
        used = self._chan_bin >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = src / ref
        if not np.all(np.isfinite(ratio[used]) & (ratio[used] > 0)):
            raise DataError(
                f"{label}: background scaling (EXPOSURE*BACKSCAL*AREASCAL) of the source or of "
                f"{bkg.path or 'the background'} is zero, negative or missing on good channels."
            )
        self.background = bkg
        self.background_counts = bkg.counts
        self.background_ratio = self._mean(np.where(used, ratio, 0.0))

    def _kwargs(self):
        return dict(
            channels=self.channels, channel_counts=self.channel_counts, exposure=self.exposure,
            rmf=self.rmf, arf=self.arf, grouping=self.grouping, quality=self.quality,
            areascal=self.areascal, backscal=self.backscal, background=self.background,
            poisserr=self.poisserr, stat_err=self._stat_err_arg, sys_err=self._sys_err_arg,
            notice_ranges=self._ranges, path=self.path, respfile=self.respfile,
            ancrfile=self.ancrfile, backfile=self.backfile, simulated=self.simulated,
        )

    def _replace(self, **changes):
        kwargs = self._kwargs()
        kwargs.update(changes)
        return Spectrum(**kwargs)

    # ----------------------------------------------------------------------------- info
    @property
    def n_channels(self) -> int:
        return self.channels.size

    @property
    def energ_lo(self) -> np.ndarray:
        return self.rmf.energ_lo

    @property
    def energ_hi(self) -> np.ndarray:
        return self.rmf.energ_hi

    @property
    def notice_ranges(self) -> list:
        """Selected energy intervals in keV; the whole spectrum's range if none was set."""
        return list(self._ranges) if self._ranges is not None else [self._full_range]

    @property
    def channel_mask(self) -> np.ndarray:
        """True for channels that contribute to a noticed bin."""
        return self._chan_bin >= 0

    @property
    def stat_err(self):
        """Grouped statistical errors in counts (quadrature sum), or None."""
        if self._stat_err_ch is None:
            return None
        return np.sqrt(self._sum(self._stat_err_ch ** 2))

    @property
    def sys_err(self) -> np.ndarray:
        """Fractional systematic error per bin: mean of SYS_ERR over the bin's good channels."""
        return self._mean(self._sys_err_ch)

    @property
    def response_hash(self) -> str:
        """sha256 identifying the instrument response (RMF matrix, grids, EBOUNDS, ARF)."""
        arf = self.arf.hash if self.arf is not None else "no-arf"
        return hashlib.sha256(f"{self.rmf.hash}:{arf}".encode()).hexdigest()

    def grouping_matrix(self) -> sp.csr_matrix:
        """(n_channels, n_bins) sparse matrix, 1 where a good channel belongs to a noticed bin."""
        return grp.grouping_matrix(self._chan_bin, self.n_bins)

    def response_matrix(self) -> np.ndarray:
        """Dense (n_energies, n_bins) response in cm^2 counts/photon, exposure not included.

        ``arf[:, None] * (rmf.matrix @ diag(areascal) @ grouping_matrix)``; model photon fluxes
        (photons/cm^2/s per energy bin) times this and the exposure give expected counts.
        """
        if self._response is None:
            g = self.grouping_matrix().multiply(self._areascal_ch[:, None]).tocsc()
            resp = np.asarray((self.rmf.matrix @ g).todense(), dtype=np.float64)
            if self.arf is not None:
                resp *= self.arf.specresp[:, None]
            self._response = resp
        return self._response.copy()

    def __repr__(self):
        name = self.path.name if self.path else "spectrum"
        lo, hi = self.energy_bounds[0, 0], self.energy_bounds[-1, 1]
        bkg = ", with background" if self.background is not None else ""
        return (f"Spectrum({name}: {self.n_bins} bins, {lo:.3g}-{hi:.3g} keV, "
                f"{int(self.counts.sum())} counts, {self.exposure:g} s{bkg})")

    # ----------------------------------------------------------------------------- selection
    def notice(self, emin, emax=None) -> "Spectrum":
        """Keep only grouped bins lying inside [emin, emax] keV (XSPEC ``notice``).

        Intersects with any earlier selection. ``emin`` may instead be a list of
        ``(emin, emax)`` pairs (their union is intersected). Returns a new Spectrum.
        """
        wanted = _parse_ranges(emin, emax, "notice")
        current = self._ranges if self._ranges is not None else [(-math.inf, math.inf)]
        new = _intersect(current, wanted)
        if not new:
            raise DataError(
                f"{self.path or 'spectrum'}: the energy band "
                f"{', '.join(f'{a:g}-{b:g}' for a, b in wanted)} keV contains no bins; it does "
                f"not overlap the current selection {self.notice_ranges} (the spectrum's good "
                f"bins cover {self._full_range[0]:.4g}-{self._full_range[1]:.4g} keV)."
            )
        return self._replace(notice_ranges=new)

    def ignore(self, emin, emax) -> "Spectrum":
        """Remove grouped bins overlapping (emin, emax) keV (XSPEC ``ignore``). New Spectrum."""
        (cut0, cut1), = _parse_ranges(emin, emax, "ignore")
        current = self._ranges if self._ranges is not None else [(-math.inf, math.inf)]
        new = []
        for a, b in current:
            if cut1 <= a or cut0 >= b:
                new.append((a, b))
                continue
            if cut0 > a:
                new.append((a, cut0))
            if cut1 < b:
                new.append((cut1, b))
        if not new:
            raise DataError(
                f"{self.path or 'spectrum'}: ignoring {cut0:g}-{cut1:g} keV leaves no energy "
                f"band (the spectrum's good bins cover {self._full_range[0]:.4g}-"
                f"{self._full_range[1]:.4g} keV)."
            )
        return self._replace(notice_ranges=new)

    # ----------------------------------------------------------------------------- grouping
    def _check_regroup(self, what):
        if self.simulated:
            raise DataError(f"{what}: this spectrum was made by with_counts() and only knows "
                            "grouped counts; regroup the original spectrum before simulating.")

    def group_constant(self, n) -> "Spectrum":
        """Regroup into bins of ``n`` adjacent channels from the first channel (grppha-like)."""
        self._check_regroup("group_constant")
        return self._replace(grouping=grp.constant_grouping(self.n_channels, n))

    def group_min_counts(self, n) -> "Spectrum":
        """Regroup so every bin has >= ``n`` counts (good channels only, within the band).

        Grouping runs separately over each noticed energy interval so that bins never straddle
        a band edge; a short last group of an interval is merged into the previous one.
        """
        self._check_regroup("group_min_counts")
        ranges = self._ranges if self._ranges is not None else [(-math.inf, math.inf)]
        segment = np.full(self.n_channels, -1, dtype=np.int64)
        for k, rng in enumerate(ranges):
            inside = _inside(self.rmf.e_min, self.rmf.e_max, [rng]) & (segment < 0)
            segment[inside] = k
        grouping = grp.min_counts_grouping(self.channel_counts, self.quality == 0, segment, n)
        return self._replace(grouping=grouping)

    def ungroup(self) -> "Spectrum":
        """Every good channel its own bin (drops the file's GROUPING)."""
        self._check_regroup("ungroup")
        return self._replace(grouping=None)

    # ----------------------------------------------------------------------------- simulation
    def with_counts(self, counts, background_counts=None) -> "Spectrum":
        """Same bins and response with new grouped counts (e.g. a simulated spectrum).

        Parameters
        ----------
        counts : array_like of non-negative integers, (n_bins,)
        background_counts : array_like, optional
            New grouped background counts; the background is kept unchanged otherwise.

        Notes
        -----
        Channel-level counts are unknown, so each bin's counts are put on its first good
        channel; the result cannot be regrouped. STAT_ERR is dropped (Poisson errors).
        """
        counts = self._bin_counts(counts, "with_counts counts")
        chan = np.zeros(self.n_channels, dtype=np.int64)
        chan[self._first_chan] = counts
        background = self.background
        if background_counts is not None:
            if background is None:
                raise DataError("with_counts: background_counts given but the spectrum has "
                                "no background.")
            background = background.with_counts(background_counts)
        elif background is not None and not background.simulated:
            # Keep background bins in sync with a source that can no longer be regrouped.
            background = background.with_counts(background.counts)
        return self._replace(channel_counts=chan, background=background, stat_err=None,
                             poisserr=True, simulated=True)

    def _bin_counts(self, counts, what):
        arr = np.asarray(counts)
        if arr.shape != (self.n_bins,):
            raise DataError(f"{what}: expected shape ({self.n_bins},), got {arr.shape}.")
        return to_counts(arr, what, self.path or "spectrum")


# --------------------------------------------------------------------------------- loading
def _find(name, base, kind, arg, pha_path):
    """Resolve a RESPFILE/ANCRFILE/BACKFILE value relative to the PHA file's directory."""
    candidates = [base / name]
    text = str(name)
    if text.endswith(("]", "}")):  # extension specifiers such as file.rmf[1]
        candidates.append(base / text[: text.rfind("[" if text.endswith("]") else "{")])
    candidates.append(base / (text + ".gz"))
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(
        f"{kind} file '{name}' named in {pha_path} not found (searched {candidates[0]}). "
        f"Pass the file explicitly with {arg}='path/to/file' (or {arg}=False if allowed)."
    )


def _explicit(value, kind, arg):
    path = Path(value)
    if not path.is_file():
        raise DataError(f"{kind} file passed as {arg}={str(value)!r} not found "
                        f"(searched {path.resolve()}).")
    return path


def load_spectrum(path, rmf=None, arf=None, background=None, files=None) -> Spectrum:
    """Load a type I PHA spectrum (OGIP/92-007) with its response and background.

    Parameters
    ----------
    path : str or Path
        PHA file (may be gzip-compressed).
    rmf : str, Path or RMF, optional
        Overrides RESPFILE. Header file names are resolved relative to the PHA's directory.
    arf : str, Path, ARF or False, optional
        Overrides ANCRFILE; False uses no ARF (combined RSP).
    background : str, Path, Spectrum or False, optional
        Overrides BACKFILE; False ignores the background.
    files : object, optional
        Reads the response, ARF and background files: ``files.rmf(path)``, ``files.arf(path)``
        and ``files.background(path, rmf)`` (e.g. :class:`xsbi.batch.ResponseCache`, which reads
        each file once for many spectra).  Default: read them.

    Returns
    -------
    Spectrum
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Spectrum file not found: {path} (searched {path.resolve()}).")
    pha = read_pha(path)
    base = path.resolve().parent

    if isinstance(rmf, RMF):
        rmf_obj, respfile = rmf, rmf.path
    else:
        if rmf is not None and rmf is not False:
            respfile = _explicit(rmf, "Response", "rmf")
        elif pha.respfile is not None:
            respfile = _find(pha.respfile, base, "Response (RESPFILE)", "rmf", path)
        else:
            raise DataError(f"{path} has no RESPFILE keyword (or it is 'none'); pass the "
                            "response explicitly with rmf='path/to/file.rmf'.")
        rmf_obj = files.rmf(respfile) if files is not None else read_rmf(respfile)

    if isinstance(arf, ARF):
        arf_obj, ancrfile = arf, arf.path
    elif arf is False:
        arf_obj, ancrfile = None, None
    else:
        if arf is not None:
            ancrfile = _explicit(arf, "ARF", "arf")
        elif pha.ancrfile is not None:
            ancrfile = _find(pha.ancrfile, base, "ARF (ANCRFILE)", "arf", path)
        else:
            ancrfile = None
        arf_obj = None if ancrfile is None else files.arf(ancrfile) if files is not None else read_arf(ancrfile)
    if arf_obj is not None and rmf_obj.is_rsp:
        warnings.warn(f"{path}: the response {respfile} already includes the effective area "
                      "but an ARF is also applied; pass arf=False if that is wrong.",
                      stacklevel=2)

    if isinstance(background, Spectrum):
        bkg, backfile = background, background.path
    elif background is False:
        bkg, backfile = None, None
    else:
        if background is not None:
            backfile = _explicit(background, "Background", "background")
        elif pha.backfile is not None:
            backfile = _find(pha.backfile, base, "Background (BACKFILE)", "background", path)
        else:
            backfile = None
        if backfile is None:
            bkg = None
        else:
            bkg = files.background(backfile, rmf_obj) if files is not None else _load_background(backfile, rmf_obj)

    return Spectrum(
        pha.channels, pha.counts, pha.exposure, rmf=rmf_obj, arf=arf_obj,
        grouping=pha.grouping, quality=pha.quality, areascal=pha.areascal,
        backscal=pha.backscal, background=bkg, poisserr=pha.poisserr, stat_err=pha.stat_err,
        sys_err=pha.sys_err, path=path, respfile=respfile, ancrfile=ancrfile,
        backfile=backfile,
    )


def _load_background(path, rmf) -> Spectrum:
    pha = read_pha(path)
    if pha.counts.size != rmf.n_channels:
        raise DataError(
            f"Background {path} has {pha.counts.size} channels but the response has "
            f"DETCHANS = {rmf.n_channels}; pass the matching background= (or False)."
        )
    return Spectrum(
        pha.channels, pha.counts, pha.exposure, rmf=rmf, arf=None, grouping=None,
        quality=pha.quality, areascal=pha.areascal, backscal=pha.backscal,
        poisserr=pha.poisserr, stat_err=pha.stat_err, sys_err=pha.sys_err, path=path,
    )
