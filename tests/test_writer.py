"""OGIP writers (xsbi.data.writer): PHA/RMF/ARF files round-trip through xsbi's readers."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

import xsbi
from xsbi.data import ARF, RMF, Spectrum, load_spectrum, read_arf, read_pha, read_rmf
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.errors import DataError
from xsbi.instruments.nicer_like import nicer_like_response, nicer_like_spectrum

REAL_RMF = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer" / \
    "nicer_xti_gauss_approx.rmf"


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def simulated():
    """The NICER-like spectrum (grouped by 5, 0.3-10 keV) filled by with_counts."""
    spec = nicer_like_spectrum(exposure=1.25)
    x = xsbi.Simulator(xsbi.Model("tbabs*powerlaw"), spec).sample([[0.2, 1.7, 1.0]], seed=0)
    return spec.with_counts(np.asarray(x[0]).astype(np.int64))


@pytest.fixture
def written(simulated, tmp_path):
    rmf_path = write_rmf(simulated.rmf, tmp_path / "sim.rmf")
    arf_path = write_arf(simulated.arf, tmp_path / "sim.arf")
    pha_path = write_pha(simulated, tmp_path / "sim.pha", respfile=rmf_path, ancrfile=arf_path)
    return pha_path, rmf_path, arf_path


# ------------------------------------------------------------------------------- PHA
def test_simulated_spectrum_round_trips_through_load_spectrum(simulated, written):
    pha_path, _, _ = written
    assert simulated.counts.sum() > 1000
    loaded = load_spectrum(pha_path).notice(0.3, 10.0)
    assert loaded.n_bins == simulated.n_bins
    np.testing.assert_array_equal(loaded.counts, simulated.counts)
    np.testing.assert_allclose(loaded.energy_bounds, simulated.energy_bounds, rtol=1e-6)
    assert loaded.exposure == simulated.exposure
    resp, ref = loaded.response_matrix(), simulated.response_matrix()
    assert resp.shape == ref.shape
    np.testing.assert_allclose(resp, ref, rtol=1e-6, atol=1e-6 * ref.max())
    assert loaded.respfile.name == "sim.rmf" and loaded.ancrfile.name == "sim.arf"
    assert loaded.background is None


def test_pha_columns_and_keywords(simulated, written):
    pha_path, _, _ = written
    pha = read_pha(pha_path)
    np.testing.assert_array_equal(pha.channels, simulated.channels)
    np.testing.assert_array_equal(pha.counts, simulated.channel_counts)
    np.testing.assert_array_equal(pha.grouping, simulated.grouping)
    np.testing.assert_array_equal(pha.quality, simulated.quality)
    assert pha.areascal == 1.0 and pha.backscal == 1.0 and pha.poisserr
    assert (pha.respfile, pha.ancrfile, pha.backfile) == ("sim.rmf", "sim.arf", None)
    with fits.open(pha_path) as hdul:
        h = hdul["SPECTRUM"].header
        assert h["HDUCLASS"] == "OGIP"
        assert (h["HDUCLAS1"], h["HDUCLAS2"], h["HDUCLAS3"]) == ("SPECTRUM", "TOTAL", "COUNT")
        assert h["HDUVERS"] == "1.2.1"
        assert h["DETCHANS"] == simulated.n_channels and h["CHANTYPE"] == "PI"
        assert (h["TLMIN1"], h["TLMAX1"]) == (0, simulated.n_channels - 1)
        assert h["POISSERR"] is True and h["BACKFILE"] == "none"
        assert h["CREATOR"] == f"xsbi {xsbi.__version__}" and "DATE" in h
        assert h["TFORM2"] == "J" and hdul["SPECTRUM"].data["COUNTS"].dtype.itemsize == 4
        assert "AREASCAL" not in hdul["SPECTRUM"].columns.names
        assert any("regrouping" in str(r) for r in h["HISTORY"])
        assert hdul["SPECTRUM"].verify_checksum() == 1


def test_channel_level_counts_override(tmp_path):
    rmf, arf = nicer_like_response()
    spec = nicer_like_spectrum(exposure=2.0)
    chan = np.random.default_rng(1).poisson(3.0, spec.n_channels)
    path = write_pha(spec, tmp_path / "c.pha", counts=chan)
    np.testing.assert_array_equal(read_pha(path).counts, chan)
    loaded = load_spectrum(path, rmf=rmf, arf=arf).notice(0.3, 10.0)
    np.testing.assert_array_equal(loaded.counts, spec.with_counts(loaded.counts).counts)
    # Channel counts can be regrouped: the sums follow the channels, not the first channel.
    regrouped = loaded.group_constant(10)
    np.testing.assert_array_equal(
        regrouped.counts, Spectrum(spec.channels, chan, 2.0, rmf, arf)
        .group_constant(10).notice(0.3, 10.0).counts)
    with fits.open(path) as hdul:
        assert not any("regrouping" in str(r) for r in hdul[1].header["HISTORY"])


def test_counts_validation(simulated, tmp_path):
    with pytest.raises(DataError, match="grouped counts"):
        write_pha(simulated, tmp_path / "a.pha", counts=simulated.counts)
    bad = np.zeros(simulated.n_channels)
    bad[3] = -1
    with pytest.raises(DataError, match="negative"):
        write_pha(simulated, tmp_path / "b.pha", counts=bad)
    with pytest.raises(DataError, match="Spectrum"):
        write_pha(simulated.rmf, tmp_path / "c.pha")
    assert not any(tmp_path.iterdir())


def test_file_keywords(simulated, tmp_path):
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    with pytest.warns(UserWarning, match="RESPFILE"):
        path = write_pha(simulated, tmp_path / "s.pha", respfile=elsewhere / "x.rmf",
                         ancrfile="plain.arf", backfile=tmp_path / "bkg.pha")
    pha = read_pha(path)
    assert (pha.respfile, pha.ancrfile, pha.backfile) == (None, "plain.arf", "bkg.pha")


def test_non_poisson_and_vector_keywords(tmp_path):
    rmf, arf = nicer_like_response()
    n = rmf.n_channels
    counts = np.arange(n) % 7
    backscal = np.linspace(0.5, 1.5, n)
    stat_err = np.sqrt(counts + 1.0)
    spec = Spectrum(rmf.channels, counts, 10.0, rmf, arf, areascal=0.9, backscal=backscal,
                    poisserr=False, stat_err=stat_err, sys_err=0.05)
    path = write_pha(spec, tmp_path / "np.pha")
    pha = read_pha(path)
    assert not pha.poisserr and pha.sys_err == pytest.approx(0.05)
    np.testing.assert_allclose(pha.stat_err, stat_err, rtol=1e-6)
    np.testing.assert_allclose(pha.backscal, backscal, rtol=1e-6)
    assert pha.areascal == pytest.approx(0.9)
    assert pha.grouping is not None and np.all(pha.grouping == 1)
    # Overriding the counts makes the file Poisson (STAT_ERR belongs to the old counts).
    path2 = write_pha(spec, tmp_path / "p.pha", counts=counts)
    assert read_pha(path2).poisserr and read_pha(path2).stat_err is None


# ------------------------------------------------------------------------------- RMF / ARF
def test_rmf_round_trip(simulated, written):
    _, rmf_path, _ = written
    orig = simulated.rmf
    back = read_rmf(rmf_path)
    assert back.matrix.shape == orig.matrix.shape
    assert back.first_channel == orig.first_channel == 0
    assert back.hduclas3 == "REDIST" and not back.is_rsp
    expected = orig.matrix.copy()
    expected.data = f32(expected.data)
    assert (back.matrix != expected).nnz == 0
    np.testing.assert_array_equal(back.energ_lo, f32(orig.energ_lo))
    np.testing.assert_array_equal(back.e_max, f32(orig.e_max))
    with fits.open(rmf_path) as hdul:
        h = hdul["MATRIX"].header
        assert (h["HDUCLAS1"], h["HDUCLAS2"], h["HDUCLAS3"]) == ("RESPONSE", "RSP_MATRIX",
                                                                 "REDIST")
        assert h["DETCHANS"] == orig.n_channels and h["CHANTYPE"] == "PI"
        assert (h["TLMIN4"], h["TLMAX4"]) == (0, orig.n_channels - 1)
        assert h["TFORM4"].startswith("PJ") and h["TFORM6"].startswith("PE")
        assert hdul["EBOUNDS"].header["HDUCLAS2"] == "EBOUNDS"
        np.testing.assert_array_equal(hdul["EBOUNDS"].data["CHANNEL"], orig.channels)


def test_rmf_groups_gaps_empty_rows_and_rsp(tmp_path):
    dense = np.array([
        [0.5, 0.25, 0.0, 0.0, 0.125, 0.0],   # two groups
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],      # no group
        [0.0, 0.0, 0.75, 0.125, 0.0, 0.0625],
    ])
    m = sp.coo_matrix(dense)
    # An explicitly stored zero (row 1) must not create a group.
    m = sp.csr_matrix((np.r_[m.data, 0.0], (np.r_[m.row, 1], np.r_[m.col, 3])), shape=m.shape)
    rmf = RMF([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], m, np.arange(6.0), np.arange(1.0, 7.0),
              first_channel=1)
    path = write_rmf(rmf, tmp_path / "small.rmf")
    with fits.open(path) as hdul:
        d = hdul["MATRIX"].data
        np.testing.assert_array_equal(d["N_GRP"], [2, 0, 2])
        assert [list(r) for r in d["F_CHAN"]] == [[1, 5], [], [3, 6]]
        assert [list(r) for r in d["N_CHAN"]] == [[2, 1], [], [2, 1]]
        assert hdul["MATRIX"].header["TLMIN4"] == 1
    back = read_rmf(path)
    assert back.first_channel == 1
    np.testing.assert_array_equal(back.matrix.toarray(), dense)

    rsp = RMF(rmf.energ_lo, rmf.energ_hi, m * 500.0, rmf.e_min, rmf.e_max, first_channel=1)
    path = write_rmf(rsp, tmp_path / "full.rsp")
    back = read_rmf(path)
    assert back.hduclas3 == "FULL" and back.is_rsp
    np.testing.assert_array_equal(back.matrix.toarray(), dense * 500.0)


def test_arf_round_trip(simulated, written):
    _, _, arf_path = written
    back = read_arf(arf_path)
    np.testing.assert_array_equal(back.specresp, f32(simulated.arf.specresp))
    np.testing.assert_array_equal(back.energ_hi, f32(simulated.arf.energ_hi))
    with fits.open(arf_path) as hdul:
        h = hdul["SPECRESP"].header
        assert (h["HDUCLAS1"], h["HDUCLAS2"]) == ("RESPONSE", "SPECRESP")
        assert hdul["SPECRESP"].columns["SPECRESP"].unit == "cm**2"


@pytest.mark.skipif(not REAL_RMF.is_file(), reason=f"reference RMF not available: {REAL_RMF}")
def test_real_rmf_round_trip(tmp_path):
    orig = read_rmf(REAL_RMF)
    back = read_rmf(write_rmf(orig, tmp_path / "copy.rmf"))
    assert back.matrix.shape == orig.matrix.shape
    assert back.first_channel == orig.first_channel
    assert (back.matrix != orig.matrix).nnz == 0
    for name in ("energ_lo", "energ_hi", "e_min", "e_max"):
        np.testing.assert_array_equal(getattr(back, name), f32(getattr(orig, name)))
    assert back.hduclas3 == (orig.hduclas3 or "REDIST")


# ------------------------------------------------------------------------------- overwrite
def test_overwrite_protection(simulated, tmp_path):
    rmf_path = tmp_path / "x.rmf"
    arf_path = tmp_path / "x.arf"
    pha_path = tmp_path / "x.pha"
    for p in (rmf_path, arf_path, pha_path):
        p.write_text("keep me")
    for write, obj, p in ((write_rmf, simulated.rmf, rmf_path),
                          (write_arf, simulated.arf, arf_path),
                          (write_pha, simulated, pha_path)):
        with pytest.raises(DataError, match="overwrite=True") as err:
            write(obj, p)
        assert str(p) in str(err.value)
        assert p.read_text() == "keep me"
        assert write(obj, p, overwrite=True) == p
    assert read_rmf(rmf_path).n_channels == simulated.n_channels
    assert read_arf(arf_path).n_energies == simulated.arf.n_energies
    assert read_pha(pha_path).counts.sum() == simulated.counts.sum()


def test_missing_directory(simulated, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        write_arf(simulated.arf, tmp_path / "nope" / "a.arf")


def test_arf_type_checked(tmp_path):
    with pytest.raises(DataError, match="ARF"):
        write_arf(ARF([1.0], [2.0], [3.0]).specresp, tmp_path / "a.arf")
