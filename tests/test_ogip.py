"""Low-level OGIP readers: RMF/ARF decoding (CAL/GEN/92-002) and PHA parsing (OGIP/92-007)."""

import gzip
import shutil
import time

import numpy as np
import pytest
from astropy.io import fits

from xsbi.data import ARF, RMF, check_grids, read_arf, read_pha, read_rmf
from xsbi.errors import DataError

# ------------------------------------------------------------------------------- writers
ELO = np.array([1.0, 2.0, 3.0, 4.0])
EHI = np.array([2.0, 3.0, 4.0, 5.0])
NCH = 6
# Per energy row: list of (first channel *index*, values). Row 2 has two groups, row 3 none.
GROUPS = [
    [(0, [0.6, 0.3])],
    [(1, [0.2, 0.5, 0.2])],
    [(1, [0.1]), (3, [0.4, 0.3, 0.1])],
    [],
]


def dense_reference(groups=GROUPS, n_e=4, n_ch=NCH):
    m = np.zeros((n_e, n_ch))
    for i, row in enumerate(groups):
        for f, vals in row:
            m[i, f:f + len(vals)] = vals
    return m


def write_rmf(path, *, groups=GROUPS, fixed=False, tlmin=0, extname="MATRIX",
              hduclas3="REDIST", scale=1.0, n_ch=NCH, elo=ELO, ehi=EHI, detchans=None,
              first_ebounds=None):
    """Write an RMF; channel numbers are index + (tlmin if given else 1)."""
    offset = 1 if tlmin is None else tlmin
    n_grp = np.array([len(r) for r in groups], dtype=np.int16)
    fch = [np.array([f + offset for f, _ in r], dtype=np.int32) for r in groups]
    nch = [np.array([len(v) for _, v in r], dtype=np.int32) for r in groups]
    mat = [np.array([x * scale for _, v in r for x in v], dtype=np.float32) for r in groups]
    if fixed:
        # Fixed-width columns padded with junk beyond N_GRP / sum(N_CHAN): must be ignored.
        w, wm = 3, 6
        pad = lambda arrs, width, fill: np.array(  # noqa: E731
            [np.r_[a, np.full(width - a.size, fill, a.dtype)] for a in arrs])
        cols = [fits.Column("F_CHAN", f"{w}J", array=pad(fch, w, 99)),
                fits.Column("N_CHAN", f"{w}J", array=pad(nch, w, 99)),
                fits.Column("MATRIX", f"{wm}E", array=pad(mat, wm, 7.0))]
    else:
        obj = lambda arrs: np.array(arrs + [None], dtype=object)[:-1]  # noqa: E731
        cols = [fits.Column("F_CHAN", "PJ()", array=obj(fch)),
                fits.Column("N_CHAN", "PJ()", array=obj(nch)),
                fits.Column("MATRIX", "PE()", array=obj(mat))]
    mhdu = fits.BinTableHDU.from_columns(
        [fits.Column("ENERG_LO", "E", array=elo), fits.Column("ENERG_HI", "E", array=ehi),
         fits.Column("N_GRP", "I", array=n_grp)] + cols, name=extname)
    mhdu.header["HDUCLASS"] = "OGIP"
    mhdu.header["HDUCLAS1"] = "RESPONSE"
    mhdu.header["HDUCLAS2"] = "RSP_MATRIX"
    mhdu.header["HDUCLAS3"] = hduclas3
    mhdu.header["DETCHANS"] = n_ch if detchans is None else detchans
    if tlmin is not None:
        mhdu.header["TLMIN4"] = tlmin
    first = offset if first_ebounds is None else first_ebounds
    ebo = fits.BinTableHDU.from_columns(
        [fits.Column("CHANNEL", "J", array=first + np.arange(n_ch)),
         fits.Column("E_MIN", "E", array=0.5 * np.arange(n_ch)),
         fits.Column("E_MAX", "E", array=0.5 * np.arange(1, n_ch + 1))], name="EBOUNDS")
    fits.HDUList([fits.PrimaryHDU(), mhdu, ebo]).writeto(path, overwrite=True)
    return path


def write_arf(path, area, elo=ELO, ehi=EHI, vector=False):
    fmt = "1E" if vector else "E"
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("ENERG_LO", "E", array=elo), fits.Column("ENERG_HI", "E", array=ehi),
         fits.Column("SPECRESP", fmt, array=np.asarray(area, dtype=np.float32))],
        name="SPECRESP")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def write_pha(path, values, *, column="COUNTS", fmt="J", first=0, keywords=None, extra=None,
              tlmin=True):
    n = len(values)
    cols = [fits.Column("CHANNEL", "J", array=first + np.arange(n)),
            fits.Column(column, fmt, array=np.asarray(values))]
    for name, (f, arr) in (extra or {}).items():
        cols.append(fits.Column(name, f, array=np.asarray(arr)))
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    h["HDUCLASS"], h["HDUCLAS1"] = "OGIP", "SPECTRUM"
    if tlmin:
        h["TLMIN1"] = first
    h["DETCHANS"] = n
    kw = {"EXPOSURE": 100.0, "POISSERR": True}
    kw.update(keywords or {})
    for k, v in kw.items():
        if v is not None:
            h[k] = v
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def gzip_file(path):
    out = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def reference_decode(path):
    """Slow, obviously-correct RMF decoder (loop over rows and groups) for cross-checks."""
    with fits.open(path) as h:
        mat = h["MATRIX"] if "MATRIX" in h else h["SPECRESP MATRIX"]
        d = mat.data
        idx = [c.upper() for c in mat.columns.names].index("F_CHAN") + 1
        off = mat.header.get(f"TLMIN{idx}", 1)
        n_ch = len(h["EBOUNDS"].data)
        out = np.zeros((len(d), n_ch))
        for i in range(len(d)):
            ngrp = int(d["N_GRP"][i])
            f = np.atleast_1d(d["F_CHAN"][i])
            n = np.atleast_1d(d["N_CHAN"][i])
            m = np.atleast_1d(d["MATRIX"][i])
            k = 0
            for g in range(ngrp):
                out[i, f[g] - off:f[g] - off + n[g]] = m[k:k + n[g]]
                k += n[g]
        return out


# ------------------------------------------------------------------------------- RMF
@pytest.mark.parametrize("fixed", [False, True], ids=["variable-length", "fixed-width"])
@pytest.mark.parametrize("tlmin", [0, 1, None], ids=["tlmin0", "tlmin1", "no-tlmin"])
def test_rmf_decoding_matches_hand_built_matrix(tmp_path, fixed, tlmin):
    path = write_rmf(tmp_path / "r.rmf", fixed=fixed, tlmin=tlmin)
    rmf = read_rmf(path)
    assert rmf.matrix.format == "csr" and rmf.matrix.dtype == np.float64
    assert rmf.matrix.shape == (4, NCH)
    np.testing.assert_allclose(rmf.matrix.toarray(), dense_reference(), rtol=1e-6)
    expected_first = 1 if tlmin is None else tlmin
    assert rmf.first_channel == expected_first
    np.testing.assert_array_equal(rmf.channels, expected_first + np.arange(NCH))
    np.testing.assert_allclose(rmf.e_min, 0.5 * np.arange(NCH))
    np.testing.assert_allclose(rmf.energ_lo, ELO)
    assert rmf.n_energies == 4 and rmf.n_channels == NCH
    assert not rmf.is_rsp


def test_rmf_without_tlmin_but_zero_based_channels(tmp_path):
    # TLMIN absent (default 1) yet F_CHAN uses 0: the data say channels start at 0.
    path = write_rmf(tmp_path / "r.rmf", tlmin=0)
    with fits.open(path, mode="update") as h:
        del h["MATRIX"].header["TLMIN4"]
    rmf = read_rmf(path)
    np.testing.assert_allclose(rmf.matrix.toarray(), dense_reference(), rtol=1e-6)
    assert rmf.first_channel == 0


def test_combined_rsp_specresp_matrix(tmp_path):
    path = write_rmf(tmp_path / "r.rsp", extname="SPECRESP MATRIX", hduclas3="FULL",
                     scale=250.0)
    rmf = read_rmf(path)
    np.testing.assert_allclose(rmf.matrix.toarray(), 250.0 * dense_reference(), rtol=1e-6)
    assert rmf.is_rsp
    # Detected from the values alone too (HDUCLAS3 is often wrong or missing).
    path2 = write_rmf(tmp_path / "r2.rsp", hduclas3="REDIST", scale=250.0)
    assert read_rmf(path2).is_rsp


def test_rmf_gzip(tmp_path):
    path = gzip_file(write_rmf(tmp_path / "r.rmf"))
    np.testing.assert_allclose(read_rmf(path).matrix.toarray(), dense_reference(), rtol=1e-6)


def test_rmf_malformed_group_beyond_matrix(tmp_path):
    path = write_rmf(tmp_path / "r.rmf", fixed=True)
    with fits.open(path, mode="update") as h:
        h["MATRIX"].data["N_CHAN"][2, 1] = 5  # 1 + 5 > 6 stored values
    with pytest.raises(DataError, match="malformed"):
        read_rmf(path)


def test_rmf_channel_out_of_range(tmp_path):
    groups = [[(5, [0.5, 0.5])], [], [], []]  # channels 5 and 6 of a 6-channel RMF
    path = write_rmf(tmp_path / "r.rmf", groups=groups)
    with pytest.raises(DataError, match="outside"):
        read_rmf(path)


def test_rmf_detchans_vs_ebounds(tmp_path):
    path = write_rmf(tmp_path / "r.rmf", detchans=7)
    with pytest.raises(DataError, match="DETCHANS = 7"):
        read_rmf(path)


def test_rmf_from_dense_array():
    rmf = RMF(ELO, EHI, dense_reference(), 0.5 * np.arange(NCH), 0.5 * np.arange(1, NCH + 1))
    assert rmf.matrix.format == "csr"
    assert rmf.first_channel == 0
    with pytest.raises(DataError, match="EBOUNDS"):
        RMF(ELO, EHI, dense_reference(), np.arange(5), np.arange(1, 6))


def test_not_an_rmf(tmp_path):
    path = write_arf(tmp_path / "a.arf", [1, 2, 3, 4])
    with pytest.raises(DataError, match="MATRIX"):
        read_rmf(path)
    with pytest.raises(DataError, match="not found"):
        read_rmf(tmp_path / "missing.rmf")


# ------------------------------------------------------------------------------- ARF
@pytest.mark.parametrize("vector", [False, True])
def test_arf_read_and_grid_check(tmp_path, vector):
    arf = read_arf(write_arf(tmp_path / "a.arf", [10, 20, 30, 40], vector=vector))
    np.testing.assert_allclose(arf.specresp, [10, 20, 30, 40])
    np.testing.assert_allclose(arf.energ_hi, EHI)
    rmf = read_rmf(write_rmf(tmp_path / "r.rmf"))
    check_grids(rmf, arf)  # no error

    short = ARF(ELO[:3], EHI[:3], [1, 2, 3])
    with pytest.raises(DataError, match="different energy grids.*3 vs 4"):
        check_grids(rmf, short)
    shifted = ARF(ELO * (1 + 3e-5), EHI, [1, 2, 3, 4])
    with pytest.raises(DataError, match="ENERG_LO"):
        check_grids(rmf, shifted)
    tiny = ARF(ELO * (1 + 3e-6), EHI, [1, 2, 3, 4])  # float32 rounding level: accepted
    check_grids(rmf, tiny)


def test_arf_hash_identity(tmp_path):
    a = read_arf(write_arf(tmp_path / "a.arf", [10, 20, 30, 40]))
    b = read_arf(write_arf(tmp_path / "b.arf", [10, 20, 30, 40]))
    c = read_arf(write_arf(tmp_path / "c.arf", [10, 20, 30, 41]))
    assert a.hash == b.hash != c.hash


# ------------------------------------------------------------------------------- PHA
def test_pha_counts_and_keywords(tmp_path):
    path = write_pha(
        tmp_path / "s.pha", [1, 2, 3, 4, 5, 6], first=1,
        keywords={"RESPFILE": "r.rmf", "ANCRFILE": "none", "BACKFILE": "  ",
                  "AREASCAL": 0.9, "BACKSCAL": 2.5, "SYS_ERR": 0.02},
        extra={"QUALITY": ("I", [0, 0, 1, 0, 0, 5]), "GROUPING": ("I", [1, -1, 1, -1, -1, 1])},
    )
    pha = read_pha(path)
    np.testing.assert_array_equal(pha.counts, [1, 2, 3, 4, 5, 6])
    assert pha.counts.dtype == np.int64
    np.testing.assert_array_equal(pha.channels, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(pha.quality, [0, 0, 1, 0, 0, 5])
    np.testing.assert_array_equal(pha.grouping, [1, -1, 1, -1, -1, 1])
    assert pha.respfile == "r.rmf"
    assert pha.ancrfile is None and pha.backfile is None
    assert pha.areascal == 0.9 and pha.backscal == 2.5 and pha.sys_err == 0.02
    assert pha.exposure == 100.0 and pha.poisserr is True and pha.stat_err is None


def test_pha_columns_for_scales_and_errors(tmp_path):
    path = write_pha(
        tmp_path / "s.pha", [1, 2, 3], keywords={"POISSERR": False},
        extra={"BACKSCAL": ("E", [1.0, 2.0, 3.0]), "AREASCAL": ("E", [0.5, 0.5, 0.5]),
               "STAT_ERR": ("E", [1.0, 1.5, 2.0]), "SYS_ERR": ("E", [0.0, 0.1, 0.2])},
    )
    pha = read_pha(path)
    np.testing.assert_allclose(pha.backscal, [1, 2, 3])
    assert pha.areascal == 0.5  # constant column collapses to a float
    np.testing.assert_allclose(pha.stat_err, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(pha.sys_err, [0.0, 0.1, 0.2], rtol=1e-6)
    assert pha.poisserr is False


def test_pha_rate_column(tmp_path):
    exposure = 8.0
    counts = np.array([0, 3, 10, 7])
    path = write_pha(tmp_path / "r.pha", counts / exposure, column="RATE", fmt="E",
                     keywords={"EXPOSURE": exposure, "POISSERR": False},
                     extra={"STAT_ERR": ("E", np.sqrt(counts) / exposure)})
    pha = read_pha(path)
    np.testing.assert_array_equal(pha.counts, counts)
    np.testing.assert_allclose(pha.stat_err, np.sqrt(counts), rtol=1e-6)

    bad = write_pha(tmp_path / "b.pha", [0.1, 0.2], column="RATE", fmt="E",
                    keywords={"EXPOSURE": 3.0})
    with pytest.raises(DataError, match="not integer"):
        read_pha(bad)


@pytest.mark.parametrize("values, fmt, match", [
    ([1, -2, 3], "J", "negative"),
    ([1.0, np.nan, 3.0], "E", "NaN"),
    ([1.0, 2.5, 3.0], "E", "not integer"),
])
def test_pha_bad_counts(tmp_path, values, fmt, match):
    with pytest.raises(DataError, match=match):
        read_pha(write_pha(tmp_path / "s.pha", values, fmt=fmt))


def test_pha_float_integer_counts_accepted(tmp_path):
    pha = read_pha(write_pha(tmp_path / "s.pha", [1.0, 2.0, 0.0], fmt="E"))
    np.testing.assert_array_equal(pha.counts, [1, 2, 0])


@pytest.mark.parametrize("exposure", [0.0, -5.0, None])
def test_pha_bad_exposure(tmp_path, exposure):
    with pytest.raises(DataError, match="EXPOSURE"):
        read_pha(write_pha(tmp_path / "s.pha", [1, 2], keywords={"EXPOSURE": exposure}))


def test_pha_type_ii_rejected(tmp_path):
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("SPEC_NUM", "I", array=[1, 2]),
         fits.Column("CHANNEL", "3J", array=[[0, 1, 2], [0, 1, 2]]),
         fits.Column("COUNTS", "3J", array=[[1, 2, 3], [4, 5, 6]])], name="SPECTRUM")
    hdu.header["EXPOSURE"] = 10.0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "t2.pha")
    with pytest.raises(DataError, match="type II"):
        read_pha(tmp_path / "t2.pha")


def test_pha_gzip(tmp_path):
    path = gzip_file(write_pha(tmp_path / "s.pha", [4, 5, 6]))
    np.testing.assert_array_equal(read_pha(path).counts, [4, 5, 6])


def test_quality_keyword_applies_to_all_channels(tmp_path):
    pha = read_pha(write_pha(tmp_path / "s.pha", [4, 5, 6], keywords={"QUALITY": 0,
                                                                       "GROUPING": 0}))
    np.testing.assert_array_equal(pha.quality, [0, 0, 0])
    assert pha.grouping is None


# ------------------------------------------------------------------------------- real files
def test_nicer_rmf(shared_data):
    path = shared_data / "nicer" / "nicer_xti_gauss_approx.rmf"
    t0 = time.perf_counter()
    rmf = read_rmf(path)
    assert time.perf_counter() - t0 < 2.0
    assert rmf.matrix.shape == (3451, 1501)
    assert rmf.first_channel == 0
    np.testing.assert_array_equal(rmf.channels, np.arange(1501))
    # 10 eV channels: channel i covers [0.01 i, 0.01 (i + 1)) keV.
    i = np.arange(1501)
    np.testing.assert_allclose(rmf.e_min, 0.01 * i, atol=2e-6)
    np.testing.assert_allclose(rmf.e_max, 0.01 * (i + 1), atol=2e-6)
    sums = rmf.row_sums()
    assert sums.max() <= 1 + 1e-3
    mid = (rmf.energ_lo > 1.0) & (rmf.energ_hi < 10.0)
    np.testing.assert_allclose(sums[mid], 1.0, atol=1e-3)
    assert not rmf.is_rsp
    np.testing.assert_allclose(rmf.matrix.toarray(), reference_decode(path), rtol=1e-7)
    # The Gaussian peak of a 6 keV photon lands in channel ~600.
    row = np.searchsorted(rmf.energ_hi, 6.0)
    assert abs(int(np.argmax(rmf.matrix[row].toarray())) - 600) <= 1


def test_nicer_arfs_match_rmf(shared_data):
    rmf = read_rmf(shared_data / "nicer" / "nicer_xti_gauss_approx.rmf")
    for name in ("pre_burst_Tint200_raw.arf", "b_008_0.25s.arf"):
        arf = read_arf(shared_data / "nicer" / name)
        assert arf.specresp.shape == (3451,)  # stored as a 1E vector column
        check_grids(rmf, arf)
        assert arf.specresp.max() > 100  # cm^2


def test_pn_rmf_fixed_width(shared_data):
    path = shared_data / "xmm_pn" / "PN.rmf"
    rmf = read_rmf(path)
    arf = read_arf(shared_data / "xmm_pn" / "PN.arf")
    assert rmf.matrix.shape == (2067, 4096)
    assert rmf.first_channel == 0
    np.testing.assert_array_equal(arf.energ_lo, rmf.energ_lo)
    np.testing.assert_array_equal(arf.energ_hi, rmf.energ_hi)
    check_grids(rmf, arf)
    assert rmf.row_sums().max() <= 1 + 1e-3
    assert not rmf.is_rsp
    np.testing.assert_allclose(rmf.matrix.toarray(), reference_decode(path), rtol=1e-7)
    with fits.open(path) as h:
        assert h["MATRIX"].data["N_GRP"].max() > 1  # multi-group rows are exercised
