"""Spectrum: grouping, quality, notice/ignore, regrouping, background scaling, loading."""

import gzip
import os
import shutil
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

from xsbi.data import ARF, RMF, Spectrum, load_spectrum, read_arf, read_rmf
from xsbi.errors import DataError

# A toy instrument: 8 channels of 0.5 keV (channel i covers [0.5 i, 0.5 (i + 1)] keV), 5 energies.
NCH = 8
E_MIN = 0.5 * np.arange(NCH)
E_MAX = 0.5 * np.arange(1, NCH + 1)
ELO = np.array([0.2, 1.0, 2.0, 3.0, 4.0])
EHI = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
RNG = np.random.default_rng(1)
MATRIX = RNG.uniform(0, 1, (5, NCH)) * (RNG.uniform(size=(5, NCH)) > 0.3)
MATRIX /= MATRIX.sum(axis=1, keepdims=True) * 1.1
AREA = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
COUNTS = np.array([5, 1, 2, 3, 4, 6, 7, 8])
QUALITY = np.array([0, 1, 0, 0, 0, 0, 0, 1])
GROUPING = np.array([1, -1, -1, 1, -1, 1, -1, -1])


def toy_rmf(scale=1.0):
    return RMF(ELO, EHI, sp.csr_matrix(MATRIX * scale), E_MIN, E_MAX, first_channel=0)


def toy(counts=COUNTS, grouping=GROUPING, quality=QUALITY, **kw):
    kw.setdefault("rmf", toy_rmf())
    kw.setdefault("arf", ARF(ELO, EHI, AREA))
    return Spectrum(np.arange(NCH), counts, 100.0, grouping=grouping, quality=quality, **kw)


# ------------------------------------------------------------------------------- toy instrument
def test_grouped_counts_energies_and_matrices():
    areascal = np.array([1.0, 1.0, 0.5, 0.8, 1.0, 1.0, 0.9, 1.0])
    s = toy(areascal=areascal)
    # Groups {0,1,2} {3,4} {5,6,7}; channels 1 and 7 are bad and contribute nothing.
    np.testing.assert_array_equal(s.counts, [5 + 2, 3 + 4, 6 + 7])
    assert s.counts.dtype == np.int64 and s.n_bins == 3 and s.n_channels == NCH
    np.testing.assert_allclose(s.energy_bounds, [[0.0, 1.5], [1.5, 2.5], [2.5, 3.5]])
    g = np.zeros((NCH, 3))
    g[[0, 2], 0] = 1
    g[[3, 4], 1] = 1
    g[[5, 6], 2] = 1
    G = s.grouping_matrix()
    assert sp.issparse(G) and G.shape == (NCH, 3)
    np.testing.assert_array_equal(G.toarray(), g)
    expected = AREA[:, None] * (MATRIX @ np.diag(areascal) @ g)
    np.testing.assert_allclose(s.response_matrix(), expected, rtol=1e-12)
    np.testing.assert_array_equal(s.channel_counts, COUNTS)
    np.testing.assert_allclose(s.energ_lo, ELO)
    assert s.background is None and s.background_counts is None and s.background_ratio is None
    np.testing.assert_array_equal(s.channel_mask, [1, 0, 1, 1, 1, 1, 1, 0])


def test_no_grouping_means_one_bin_per_good_channel():
    s = toy(grouping=None)
    np.testing.assert_array_equal(s.counts, COUNTS[QUALITY == 0])
    np.testing.assert_allclose(s.energy_bounds[:, 0], E_MIN[QUALITY == 0])


def test_notice_keeps_only_bins_inside_band():
    s = toy()
    n = s.notice(1.4, 3.6)
    np.testing.assert_array_equal(n.counts, [7, 13])
    assert s.n_bins == 3  # original unchanged
    assert n.notice_ranges == [(1.4, 3.6)]
    assert s.notice(1.6, 3.6).n_bins == 1  # [1.5, 2.5] is only partly inside
    # Float32-rounded bounds are absorbed by the tolerance...
    assert s.notice(0.0, 1.4999999).n_bins == 1
    # ...but a real shortfall is not.
    with pytest.raises(DataError, match="contains no bins"):
        s.notice(0.0, 1.49)
    # Calling notice twice intersects.
    np.testing.assert_array_equal(s.notice(0, 3).notice(1.5, 4).counts, [7])
    # A list of intervals selects their union.
    np.testing.assert_array_equal(s.notice([(0, 1.5), (2.5, 3.5)]).counts, [7, 13])


def test_ignore_removes_overlapping_bins():
    s = toy()
    np.testing.assert_array_equal(s.ignore(1.0, 2.0).counts, [13])
    # Bins touching the ignored interval's edges do not overlap it.
    np.testing.assert_array_equal(s.ignore(1.5, 2.5).counts, [7, 13])
    chained = s.notice(0.0, 3.5).ignore(1.5, 2.5)
    assert chained.notice_ranges == [(0.0, 1.5), (2.5, 3.5)]


def test_empty_band_error_names_range():
    s = toy()
    with pytest.raises(DataError, match=r"3\.6-4 keV contains no bins.*0-3\.5 keV"):
        s.notice(3.6, 4.0)
    with pytest.raises(DataError, match="contains no bins"):
        s.notice(0, 1).notice(2, 3)
    with pytest.raises(DataError, match="emin < emax"):
        s.notice(3.0, 1.0)


def test_group_constant_aligned_on_first_channel():
    s = toy(grouping=None)
    g = s.group_constant(3)  # {0,1,2} {3,4,5} {6,7}: trailing short group kept
    np.testing.assert_array_equal(g.counts, [5 + 2, 3 + 4 + 6, 7])
    np.testing.assert_allclose(g.energy_bounds, [[0, 1.5], [1.5, 3.0], [3.0, 3.5]])
    np.testing.assert_array_equal(s.counts, COUNTS[QUALITY == 0])  # unchanged
    with pytest.raises(DataError, match="positive integer"):
        s.group_constant(0)


def test_group_min_counts():
    s = toy(grouping=None)
    # n=6: {0..2}=7 (bad channel 1 skipped), {3,4}=7, {5}=6, {6}=7.
    np.testing.assert_array_equal(s.group_min_counts(6).counts, [7, 7, 6, 7])
    # n=10: {0..3}=10, {4,5}=10, then {6}=7 < 10 is merged into the previous group.
    g = s.group_min_counts(10)
    np.testing.assert_array_equal(g.counts, [10, 17])
    np.testing.assert_allclose(g.energy_bounds, [[0, 2.0], [2.0, 3.5]])


def test_group_min_counts_respects_band_and_reapplies_it():
    s = toy(grouping=None).notice(1.0, 4.0)
    g = s.group_min_counts(10)
    # Grouping starts at the band edge: {2..5}=15, {6}=7 merged -> one bin of 22 counts.
    np.testing.assert_array_equal(g.counts, [22])
    np.testing.assert_allclose(g.energy_bounds, [[1.0, 3.5]])
    assert g.notice_ranges == [(1.0, 4.0)]
    # Regrouping keeps the band selection.
    np.testing.assert_array_equal(s.group_constant(2).counts, [2 + 3, 4 + 6, 7])


def test_background_grouped_and_scaled():
    bkg_quality = np.array([0, 0, 0, 0, 1, 0, 0, 0])  # bad in background -> bad in source too
    bkg_backscal = np.array([1.0, 1.0, 4.0, 2.0, 2.0, 1.0, 2.0, 1.0])
    bkg = Spectrum(np.arange(NCH), [1, 1, 1, 2, 50, 3, 4, 9], 200.0, rmf=toy_rmf(),
                   quality=bkg_quality, backscal=bkg_backscal, areascal=0.5)
    s = toy(background=bkg, backscal=2.0)
    np.testing.assert_array_equal(s.counts, [7, 3, 13])  # channel 4 now excluded
    np.testing.assert_array_equal(s.background_counts, [1 + 1, 2, 3 + 4])
    assert s.background.n_bins == s.n_bins
    np.testing.assert_array_equal(s.background.counts, s.background_counts)
    ratio_ch = (100.0 * 2.0 * 1.0) / (200.0 * bkg_backscal * 0.5)
    expected = [np.mean(ratio_ch[[0, 2]]), ratio_ch[3], np.mean(ratio_ch[[5, 6]])]
    np.testing.assert_allclose(s.background_ratio, expected)
    # notice/regroup carry the background along with the source binning.
    n = s.notice(1.5, 3.5).group_constant(2)  # {4,5} -> good {5}; {6,7} -> good {6}
    np.testing.assert_array_equal(n.counts, [6, 7])
    np.testing.assert_array_equal(n.background_counts, [3, 4])
    np.testing.assert_allclose(n.background_ratio, ratio_ch[[5, 6]])


def test_background_zero_backscal_rejected():
    bkg = Spectrum(np.arange(NCH), np.ones(NCH), 200.0, rmf=toy_rmf(), backscal=0.0)
    with pytest.raises(DataError, match="BACKSCAL"):
        toy(background=bkg)


def test_errors_grouped():
    stat = np.arange(1.0, NCH + 1)
    sys_err = np.array([0.1, 0.9, 0.3, 0.2, 0.4, 0.0, 0.2, 0.9])
    s = toy(stat_err=stat, poisserr=False, sys_err=sys_err)
    np.testing.assert_allclose(s.stat_err, np.sqrt([1 + 9, 16 + 25, 36 + 49]))
    np.testing.assert_allclose(s.sys_err, [0.2, 0.3, 0.1])
    assert s.poisserr is False
    default = toy()
    assert default.stat_err is None and default.poisserr is True
    np.testing.assert_array_equal(default.sys_err, np.zeros(3))


def test_with_counts():
    s = toy().notice(1.4, 3.6)
    sim = s.with_counts(np.array([4, 9]))
    np.testing.assert_array_equal(sim.counts, [4, 9])
    assert sim.counts.dtype == np.int64
    np.testing.assert_array_equal(sim.energy_bounds, s.energy_bounds)
    np.testing.assert_allclose(sim.response_matrix(), s.response_matrix())
    assert sim.response_hash == s.response_hash
    np.testing.assert_array_equal(s.counts, [7, 13])  # original unchanged
    np.testing.assert_array_equal(sim.notice(2.5, 3.5).counts, [9])
    np.testing.assert_array_equal(s.with_counts([4.0, 9.0]).counts, [4, 9])
    with pytest.raises(DataError, match="shape"):
        s.with_counts([1, 2, 3])
    with pytest.raises(DataError, match="negative"):
        s.with_counts([1, -1])
    with pytest.raises(DataError, match="not integer"):
        s.with_counts([1, 1.5])
    with pytest.raises(DataError, match="regroup"):
        sim.group_constant(2)


def test_with_counts_background():
    bkg = Spectrum(np.arange(NCH), np.full(NCH, 3), 100.0, rmf=toy_rmf())
    s = toy(background=bkg)
    sim = s.with_counts([1, 2, 3], background_counts=[7, 8, 9])
    np.testing.assert_array_equal(sim.background_counts, [7, 8, 9])
    np.testing.assert_allclose(sim.background_ratio, s.background_ratio)
    kept = s.with_counts([1, 2, 3])
    np.testing.assert_array_equal(kept.background_counts, s.background_counts)


def test_combined_rsp_without_arf():
    rsp = toy_rmf(scale=300.0)
    assert rsp.is_rsp
    s = toy(rmf=rsp, arf=None)
    assert s.arf is None
    np.testing.assert_allclose(s.response_matrix(), 300.0 * MATRIX @ s.grouping_matrix())


def test_response_hash():
    a, b = toy(), toy(grouping=None)
    assert a.response_hash == b.response_hash  # grouping is not part of the instrument
    assert toy(arf=ARF(ELO, EHI, AREA * 2)).response_hash != a.response_hash
    assert toy(arf=None).response_hash != a.response_hash
    assert toy(rmf=toy_rmf(scale=0.5)).response_hash != a.response_hash


def test_constructor_validation():
    with pytest.raises(DataError, match="DETCHANS = 8"):
        Spectrum(np.arange(7), np.ones(7), 10.0, rmf=toy_rmf())
    with pytest.raises(DataError, match="exposure"):
        Spectrum(np.arange(NCH), np.ones(NCH), 0.0, rmf=toy_rmf())
    with pytest.raises(DataError, match="negative"):
        Spectrum(np.arange(NCH), -np.ones(NCH), 1.0, rmf=toy_rmf())
    with pytest.raises(DataError, match="NaN"):
        Spectrum(np.arange(NCH), np.full(NCH, np.nan), 1.0, rmf=toy_rmf())
    with pytest.raises(DataError, match="different energy grids"):
        toy(arf=ARF(ELO[:4], EHI[:4], AREA[:4]))
    with pytest.raises(DataError, match="bad QUALITY"):
        toy(quality=np.ones(NCH))


# ------------------------------------------------------------------------------- files
def write_rmf(path, matrix=MATRIX, first=0, elo=ELO, ehi=EHI):
    n_e, n_ch = matrix.shape
    obj = lambda arrs: np.array(list(arrs) + [None], dtype=object)[:-1]  # noqa: E731
    cols = [
        fits.Column("ENERG_LO", "E", array=elo), fits.Column("ENERG_HI", "E", array=ehi),
        fits.Column("N_GRP", "I", array=np.ones(n_e)),
        fits.Column("F_CHAN", "PJ()", array=obj(np.array([first]) for _ in range(n_e))),
        fits.Column("N_CHAN", "PJ()", array=obj(np.array([n_ch]) for _ in range(n_e))),
        fits.Column("MATRIX", "PE()", array=obj(r.astype(np.float32) for r in matrix)),
    ]
    m = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    m.header["TLMIN4"], m.header["DETCHANS"] = first, n_ch
    e = fits.BinTableHDU.from_columns(
        [fits.Column("CHANNEL", "J", array=first + np.arange(n_ch)),
         fits.Column("E_MIN", "E", array=0.5 * np.arange(n_ch)),
         fits.Column("E_MAX", "E", array=0.5 * np.arange(1, n_ch + 1))], name="EBOUNDS")
    fits.HDUList([fits.PrimaryHDU(), m, e]).writeto(path, overwrite=True)
    return path


def write_arf(path, area=AREA):
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("ENERG_LO", "E", array=ELO), fits.Column("ENERG_HI", "E", array=EHI),
         fits.Column("SPECRESP", "E", array=area)], name="SPECRESP")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def write_pha(path, counts=COUNTS, exposure=100.0, column="COUNTS", **keywords):
    n = len(counts)
    cols = [fits.Column("CHANNEL", "J", array=np.arange(n)),
            fits.Column(column, "J" if column == "COUNTS" else "E", array=counts),
            fits.Column("QUALITY", "I", array=QUALITY[:n]),
            fits.Column("GROUPING", "I", array=GROUPING[:n])]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "TLMIN1": 0,
                       "EXPOSURE": exposure, "POISSERR": True, "DETCHANS": n})
    hdu.header.update({k: v for k, v in keywords.items() if v is not None})
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def gz(path):
    out = path.with_name(path.name + ".gz")
    with open(path, "rb") as a, gzip.open(out, "wb") as b:
        shutil.copyfileobj(a, b)
    os.remove(path)
    return out


@pytest.fixture
def toy_files(tmp_path, monkeypatch):
    d = tmp_path / "obs"
    d.mkdir()
    write_rmf(d / "toy.rmf")
    write_arf(d / "toy.arf")
    write_pha(d / "bkg.pha", counts=np.full(NCH, 2), exposure=50.0, BACKSCAL=4.0)
    write_pha(d / "src.pha", RESPFILE="toy.rmf", ANCRFILE="toy.arf", BACKFILE="bkg.pha",
              BACKSCAL=1.0)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # header names must resolve relative to the PHA, not the cwd
    return d


def test_load_spectrum_resolves_header_files(toy_files):
    s = load_spectrum(toy_files / "src.pha")
    assert s.respfile == toy_files / "toy.rmf"
    assert s.ancrfile == toy_files / "toy.arf"
    assert s.backfile == toy_files / "bkg.pha"
    assert s.path == toy_files / "src.pha"
    np.testing.assert_array_equal(s.counts, [7, 7, 13])
    np.testing.assert_array_equal(s.background_counts, [4, 4, 4])
    np.testing.assert_allclose(s.background_ratio, (100.0 * 1.0) / (50.0 * 4.0))
    assert s.exposure == 100.0
    np.testing.assert_allclose(s.response_matrix(),
                               AREA[:, None] * MATRIX @ s.grouping_matrix(), rtol=1e-6)
    assert load_spectrum(toy_files / "src.pha", background=False).background is None


def test_load_spectrum_gzip_everything(tmp_path):
    write_rmf(tmp_path / "toy.rmf")
    write_arf(tmp_path / "toy.arf")
    gz(tmp_path / "toy.rmf")
    gz(tmp_path / "toy.arf")
    pha = gz(write_pha(tmp_path / "src.pha", RESPFILE="toy.rmf.gz", ANCRFILE="toy.arf.gz"))
    s = load_spectrum(pha)
    np.testing.assert_array_equal(s.counts, [7, 7, 13])
    assert s.arf is not None and s.respfile.name == "toy.rmf.gz"


def test_load_spectrum_none_keywords_and_rate(tmp_path):
    write_rmf(tmp_path / "toy.rmf")
    pha = write_pha(tmp_path / "r.pha", counts=COUNTS / 8.0, column="RATE", exposure=8.0,
                    RESPFILE="toy.rmf", ANCRFILE="NONE", BACKFILE="none")
    s = load_spectrum(pha)
    assert s.arf is None and s.background is None
    np.testing.assert_array_equal(s.counts, [7, 7, 13])


def test_explicit_paths_override_header(toy_files, tmp_path):
    alt = write_arf(tmp_path / "alt.arf", area=AREA * 3)
    s = load_spectrum(toy_files / "src.pha", arf=alt, background=toy_files / "src.pha")
    assert s.ancrfile == alt
    np.testing.assert_allclose(s.arf.specresp, AREA * 3)
    np.testing.assert_array_equal(s.background_counts, s.counts)
    np.testing.assert_allclose(s.background_ratio, 1.0)
    no_arf = load_spectrum(toy_files / "src.pha", arf=False)
    assert no_arf.arf is None
    rmf = read_rmf(toy_files / "toy.rmf")
    assert load_spectrum(toy_files / "src.pha", rmf=rmf).rmf is rmf


def test_missing_response_file(tmp_path):
    pha = write_pha(tmp_path / "s.pha", RESPFILE="gone.rmf")
    with pytest.raises(DataError, match=r"gone\.rmf.*searched .*gone\.rmf.*rmf="):
        load_spectrum(pha)


def test_no_respfile(tmp_path):
    with pytest.raises(DataError, match="no RESPFILE.*rmf="):
        load_spectrum(write_pha(tmp_path / "s.pha"))
    with pytest.raises(DataError, match="no RESPFILE"):
        load_spectrum(write_pha(tmp_path / "t.pha", RESPFILE="none"))


def test_missing_arf_and_background(tmp_path):
    write_rmf(tmp_path / "toy.rmf")
    pha = write_pha(tmp_path / "s.pha", RESPFILE="toy.rmf", ANCRFILE="gone.arf")
    with pytest.raises(DataError, match="gone.arf.*arf="):
        load_spectrum(pha)
    assert load_spectrum(pha, arf=False).arf is None
    pha2 = write_pha(tmp_path / "t.pha", RESPFILE="toy.rmf", BACKFILE="gone_bkg.pha")
    with pytest.raises(DataError, match="gone_bkg.pha.*background="):
        load_spectrum(pha2)
    with pytest.raises(DataError, match="not found"):
        load_spectrum(tmp_path / "nothing.pha")


def test_channel_count_mismatch(tmp_path):
    write_rmf(tmp_path / "toy.rmf")
    pha = write_pha(tmp_path / "s.pha", counts=COUNTS[:6], RESPFILE="toy.rmf")
    with pytest.raises(DataError, match="6 channels.*DETCHANS = 8"):
        load_spectrum(pha)


def test_arf_rmf_grid_mismatch(tmp_path):
    write_rmf(tmp_path / "toy.rmf", elo=ELO * 1.01, ehi=EHI * 1.01)
    write_arf(tmp_path / "toy.arf")
    pha = write_pha(tmp_path / "s.pha", RESPFILE="toy.rmf", ANCRFILE="toy.arf")
    with pytest.raises(DataError, match="different energy grids"):
        load_spectrum(pha)


def test_zero_exposure_file(tmp_path):
    write_rmf(tmp_path / "toy.rmf")
    with pytest.raises(DataError, match="EXPOSURE"):
        load_spectrum(write_pha(tmp_path / "s.pha", exposure=0.0, RESPFILE="toy.rmf"))


def test_combined_rsp_file_loads_without_arf(tmp_path):
    write_rmf(tmp_path / "toy.rsp", matrix=MATRIX * 500)
    s = load_spectrum(write_pha(tmp_path / "s.pha", RESPFILE="toy.rsp"))
    assert s.arf is None and s.rmf.is_rsp
    np.testing.assert_allclose(s.response_matrix(), 500 * MATRIX @ s.grouping_matrix(),
                               rtol=1e-6)


# ------------------------------------------------------------------------------- real data
def _column_sum(path, lo_chan, hi_chan):
    """COUNTS summed over good channels lo_chan..hi_chan, straight from the FITS table."""
    d = fits.getdata(path, "SPECTRUM")
    sel = (d["CHANNEL"] >= lo_chan) & (d["CHANNEL"] <= hi_chan) & (d["QUALITY"] == 0)
    return int(d["COUNTS"][sel].sum())


def _file_bins(path):
    """Grouped good-channel counts of a PHA file by a plain loop over its GROUPING column."""
    d = fits.getdata(path, "SPECTRUM")
    bins, current = [], None
    for g, q, c in zip(d["GROUPING"], d["QUALITY"], d["COUNTS"]):
        if g != -1:
            current = None
        if q != 0:
            continue
        if current is None:
            bins.append(0)
            current = len(bins) - 1
        bins[current] += int(c)
    return np.array(bins)


def test_all_nicer_spectra_load(shared_data):
    files = sorted((shared_data / "nicer").glob("*.pha"))
    assert len(files) == 11
    for path in files:
        s = load_spectrum(path)
        assert s.n_channels == 1501 and s.channels[0] == 0
        assert s.exposure == fits.getval(path, "EXPOSURE", "SPECTRUM")
        assert s.arf is not None and s.rmf.n_energies == 3451
        assert s.background is None
        np.testing.assert_array_equal(s.counts, _file_bins(path))
        assert s.counts.sum() == _column_sum(path, 0, 1500)


def test_nicer_groupconstant_notice_194_bins(shared_data):
    for path in sorted((shared_data / "nicer").glob("*_groupconstant_5.pha")):
        s = load_spectrum(path).notice(0.3, 10.0)
        assert s.n_bins == 194
        k = np.arange(194)
        np.testing.assert_allclose(s.energy_bounds[:, 0], 0.30 + 0.05 * k, atol=1e-6)
        np.testing.assert_allclose(s.energy_bounds[:, 1], 0.35 + 0.05 * k, atol=1e-6)
        # 0.3-10 keV is channels 30..999.
        assert s.counts.sum() == _column_sum(path, 30, 999)
        assert s.response_matrix().shape == (3451, 194)


def test_nicer_regroup_reproduces_grppha(shared_data):
    path = shared_data / "nicer" / "Reference_pha_tbabs_powerlaw_20000counts_groupconstant_5.pha"
    from_file = load_spectrum(path)
    regrouped = from_file.ungroup().group_constant(5)
    # grppha keeps the 5-channel alignment across the bad channels 0-21 (bin 22-24 is short).
    np.testing.assert_array_equal(regrouped.counts, from_file.counts)
    np.testing.assert_allclose(regrouped.energy_bounds, from_file.energy_bounds)
    np.testing.assert_allclose(regrouped.energy_bounds[0], [0.22, 0.25], atol=1e-6)
    chained = load_spectrum(path).ungroup().notice(0.3, 10).group_constant(5)
    np.testing.assert_array_equal(chained.counts, from_file.notice(0.3, 10).counts)


def test_nicer_pre_burst(shared_data):
    path = shared_data / "nicer" / "pre_burst_spectrum_opt.pha"
    s = load_spectrum(path)
    assert s.counts.sum() == 224600  # good channels only; 30 counts sit in bad channels
    assert int(s.channel_counts.sum()) == 224630
    n = s.notice(0.3, 10)
    assert abs(n.counts.sum() - 224600) < 1000
    assert n.energy_bounds[0, 0] >= 0.3 - 1e-6 and n.energy_bounds[-1, 1] <= 10 + 1e-5
    # Response to a 6 keV photon summed over 0.3-10 keV bins is ~ the effective area there.
    row = int(np.searchsorted(s.energ_hi, 6.0))
    resp = n.response_matrix()
    np.testing.assert_allclose(resp[row].sum(), s.arf.specresp[row], rtol=1e-3)


def test_nicer_burst_sys_err_column(shared_data):
    path = shared_data / "nicer" / "b_008_0.25s_raw_opt.pha"
    s = load_spectrum(path)
    d = fits.getdata(path, "SPECTRUM")
    ch = s.grouping_matrix()
    expected = (ch.T @ d["SYS_ERR"].astype(float)) / np.asarray(ch.sum(axis=0)).ravel()
    np.testing.assert_allclose(s.sys_err, expected)
    assert 0.0149 <= s.sys_err.min() and s.sys_err.max() <= 1.0
    assert s.counts.sum() == 3932


def test_pn_spectra(shared_data):
    d = shared_data / "xmm_pn"
    for name in ("PN.pha", "PN_spectrum_grp20.fits"):
        s = load_spectrum(d / name)
        assert s.n_channels == 4096
        assert s.rmf.n_energies == 2067 and s.rmf.n_channels == 4096
        assert s.respfile == d / "PN.rmf" and s.ancrfile == d / "PN.arf"
        assert s.backfile == d / "PNbackground_spectrum.fits"
        np.testing.assert_array_equal(s.counts, _file_bins(d / name))
        assert s.counts.sum() == 11526
        n = s.notice(0.3, 10.0)
        assert n.n_bins == 110
        assert n.counts.min() >= 20  # grouped to >= 20 counts per bin
        assert n.counts.sum() == int(n.channel_counts[n.channel_mask].sum())
        # Source and background BACKSCAL differ; same exposure and AREASCAL.
        np.testing.assert_allclose(n.background_ratio, 2010100 / 6866200, rtol=1e-12)
        bkg = fits.getdata(d / "PNbackground_spectrum.fits", "SPECTRUM")["COUNTS"]
        assert n.background_counts.sum() == int(bkg[n.channel_mask].sum())
        assert n.background.exposure == pytest.approx(20265.98058616)


def test_pn_response_matrix(shared_data):
    s = load_spectrum(shared_data / "xmm_pn" / "PN_spectrum_grp20.fits").notice(0.3, 10)
    rmf = read_rmf(shared_data / "xmm_pn" / "PN.rmf")
    arf = read_arf(shared_data / "xmm_pn" / "PN.arf")
    dense = rmf.matrix.toarray()
    mask = s.channel_mask
    chan_of_bin = np.asarray(s.grouping_matrix().argmax(axis=1)).ravel()
    expected = np.zeros((2067, s.n_bins))
    for b in range(s.n_bins):
        expected[:, b] = dense[:, mask & (chan_of_bin == b)].sum(axis=1)
    expected *= arf.specresp[:, None]
    np.testing.assert_allclose(s.response_matrix(), expected, rtol=1e-10, atol=1e-12)


def test_response_hash_real(shared_data):
    n = shared_data / "nicer"
    a = load_spectrum(n / "Reference_pha_tbabs_powerlaw_2000counts.pha")
    b = load_spectrum(n / "Reference_pha_tbabs_powerlaw_200000counts_groupconstant_5.pha")
    c = load_spectrum(n / "b_008_0.25s_raw_opt.pha")
    assert a.response_hash == b.response_hash != c.response_hash


def test_no_warnings_on_real_data(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_spectrum(shared_data / "xmm_pn" / "PN.pha")
        load_spectrum(shared_data / "nicer" / "pre_burst_spectrum_opt.pha")


def test_warnings_for_suspicious_combinations(tmp_path):
    with pytest.warns(UserWarning, match="matched by position"):
        Spectrum(np.arange(1, NCH + 1), COUNTS, 10.0, rmf=toy_rmf())
    write_rmf(tmp_path / "toy.rsp", matrix=MATRIX * 500)
    write_arf(tmp_path / "toy.arf")
    pha = write_pha(tmp_path / "s.pha", RESPFILE="toy.rsp", ANCRFILE="toy.arf")
    with pytest.warns(UserWarning, match="already includes the effective area"):
        load_spectrum(pha)
