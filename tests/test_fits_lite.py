"""The fast FITS reader gives read_pha exactly what astropy gives, and hands astropy what it cannot read."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from xsbi.data import fits_lite, ogip
from test_ogip import gzip_file, write_pha


def _astropy_only(monkeypatch):
    def refuse(path):
        raise fits_lite.Unsupported("forced")

    monkeypatch.setattr(fits_lite, "read_tables", refuse)


def _same(a, b):
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "header":
            # astropy's dict(header) also holds COMMENT/HISTORY cards, which read_pha never uses
            skip = {"COMMENT", "HISTORY", ""}
            vb = {k: v for k, v in vb.items() if k not in skip}
            assert va.keys() == vb.keys()
            for k in va:
                assert type(va[k]) is type(vb[k]) and va[k] == vb[k], k
        elif isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            np.testing.assert_array_equal(va, vb)
            assert np.asarray(va).dtype.kind == np.asarray(vb).dtype.kind, f.name
        else:
            assert va == vb, f.name


def _both(path, monkeypatch):
    fast = ogip.read_pha(path)
    with monkeypatch.context() as m:
        _astropy_only(m)
        slow = ogip.read_pha(path)
    return fast, slow


def test_every_shared_spectrum_reads_the_same(shared_data, monkeypatch):
    files = sorted(shared_data.glob("*/*.pha")) + sorted(shared_data.glob("xmm_pn/*spectrum*.fits"))
    assert len(files) >= 14
    for path in files:
        assert fits_lite.read_tables(path)  # the fast path is the one taken
        _same(*_both(path, monkeypatch))


@pytest.mark.parametrize("fmt,values", [("J", [0, 5, 12, 3]), ("I", [1, 0, 7, 2]), ("K", [10, 0, 2, 9]),
                                        ("E", [1.0, 4.0, 0.0, 2.0]), ("D", [3.0, 1.0, 0.0, 8.0])])
def test_written_spectra_read_the_same(tmp_path, monkeypatch, fmt, values):
    extra = {"QUALITY": ("I", [0, 0, 5, 0]), "GROUPING": ("I", [1, -1, 1, 1]),
             "AREASCAL": ("E", [1.0, 1.0, 0.5, 1.0]), "FLAG": ("L", [True, False, True, False])}
    kw = {"RESPFILE": "o'hare.rmf", "ANCRFILE": "none", "BACKSCAL": 0.25, "OBJECT": "4U 1820-30 / burst"}
    path = write_pha(tmp_path / "s.pha", values, fmt=fmt, extra=extra, keywords=kw)
    fast, slow = _both(path, monkeypatch)
    _same(fast, slow)
    assert fast.respfile == "o'hare.rmf" and fast.header["OBJECT"] == "4U 1820-30 / burst"
    np.testing.assert_array_equal(fast.counts, values)
    _same(*_both(gzip_file(path), monkeypatch))


def test_rate_spectrum_reads_the_same(tmp_path, monkeypatch):
    path = write_pha(tmp_path / "r.pha", [0.02, 0.05, 0.0], column="RATE", fmt="E", keywords={"EXPOSURE": 100.0})
    fast, slow = _both(path, monkeypatch)
    _same(fast, slow)
    np.testing.assert_allclose(fast.counts, [2, 5, 0])


def test_unsupported_layouts_fall_back_to_astropy(tmp_path):
    # scaled columns (TZERO, as for unsigned integers): the fast reader declines, read_pha still works
    path = write_pha(tmp_path / "u.pha", [1, 2, 3], fmt="I")
    with fits.open(path, mode="update") as h:
        h[1].header["TZERO2"] = 0
    with pytest.raises(fits_lite.Unsupported):
        fits_lite.read_tables(path)
    np.testing.assert_array_equal(ogip.read_pha(path).counts, [1, 2, 3])
    # not a FITS file at all: the error is astropy's, turned into a DataError
    bad = tmp_path / "bad.pha"
    bad.write_text("hello")
    with pytest.raises(Exception, match="FITS"):
        ogip.read_pha(bad)
