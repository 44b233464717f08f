"""Photoabsorption cross-sections (xsbi.models.xsect) and abundance sets (xsbi.models.abundances).

The comparisons with XSPEC read the reference tables in ../shared/data/xsect in place and skip
when that directory is absent.  The accuracy bounds asserted here are read from the table in
docs/cross_sections.md, so the documentation cannot claim more than the code delivers.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xsbi.errors import DataError, ModelError
from xsbi.models import abundances as abmod
from xsbi.models import xsect
from xsbi.models.xsect import CrossSection, cross_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
XSECT_DIR = DATA / "xsect"
DOC = ROOT / "docs" / "cross_sections.md"

TABLES = {
    "tbabs": "xsect_tbabs_wilm.fits",
    "phabs": "xsect_phabs_aspl.fits",
    "wabs": "xsect_wabs_angr.fits",
}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} not available (../shared/data is absent here)")
    return path


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    """Tests of the computed path must not pick up a developer's $XSBI_DATA_DIR."""
    monkeypatch.delenv(xsect.ENV_DATA_DIR, raising=False)


def _read_reference(model: str) -> tuple[np.ndarray, np.ndarray]:
    """ENERGY (keV) and SIGMA (1e-22 cm^2) of XSPEC's table, read directly with astropy."""
    path = _need(XSECT_DIR / TABLES[model])
    with fits.open(path) as hdul:
        data = hdul[1].data
        return np.array(data["ENERGY"], dtype=np.float64), np.array(data["SIGMA"], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Abundances
# ----------------------------------------------------------------------------------------------
def _parse_xspec_abundances(path: Path) -> dict[str, dict[str, float]]:
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    header = [h.lower() for h in lines[0][1:]]
    table: dict[str, dict[str, float]] = {name: {} for name in header}
    for row in lines[1:]:
        element, values = row[0], row[1:]
        for name, value in zip(header, values):
            table[name][element] = float(value)
    return table


def test_abundance_sets_match_xspec_table():
    xspec = _parse_xspec_abundances(_need(XSECT_DIR / "abundances.dat"))
    compared = 0
    for name, ours in abmod.ABUNDANCES.items():
        assert name in xspec, f"abundance set {name} is not in XSPEC's table"
        for element in abmod.ELEMENTS:
            ref = xspec[name][element]
            # XSPEC prints 3 significant figures: allow 0.6% rounding.
            assert ours[element] == pytest.approx(ref, rel=6e-3), (name, element, ref)
            compared += 1
    assert {"wilm", "aspl", "angr"} <= set(abmod.ABUNDANCES)
    assert compared >= 3 * 18


def test_abundances_api():
    wilm = abmod.abundances("WILM")
    assert tuple(wilm) == abmod.ELEMENTS and wilm["H"] == 1.0
    wilm["O"] = 1.0  # a copy: the registry is untouched
    assert abmod.ABUNDANCES["wilm"]["O"] == pytest.approx(4.90e-4, rel=3e-3)
    assert set(abmod.available()) == set(abmod.ABUNDANCES) == set(abmod.REFERENCES)
    with pytest.raises(ModelError, match="unknown abundance set"):
        abmod.abundances("nosuch")


# ----------------------------------------------------------------------------------------------
# XSPEC tables
# ----------------------------------------------------------------------------------------------
def test_shared_tables_are_in_units_of_1e22_cm2():
    # TUNIT says "cm^2" but the values are in 1e-22 cm^2: tbabs/wilm at 1 keV is ~1.7e-22 cm^2
    # per H (Wilms et al. 2000, Fig. 1), wabs ~2.4e-22 cm^2 (Morrison & McCammon 1983).
    e, s = _read_reference("wabs")
    assert 2.2 < np.interp(1.0, e, s) < 2.6
    e, s = _read_reference("tbabs")
    assert 1.5 < np.interp(1.0, e, s) < 2.0
    cs = cross_section("tbabs", table=XSECT_DIR / TABLES["tbabs"])
    assert cs.sigma(1.0) == pytest.approx(np.exp(np.interp(0.0, np.log(e), np.log(s))), rel=1e-12)


@pytest.mark.parametrize("nh", [0.2, 1.0, 10.0])
def test_table_reproduces_transmission(nh):
    e, s = _read_reference("tbabs")
    cs = cross_section("tbabs", table=XSECT_DIR / TABLES["tbabs"])
    assert cs.source.startswith("table ") and cs.model == "tbabs" and cs.abund == "wilm"

    # at the table's own energies
    np.testing.assert_allclose(np.exp(-nh * cs.sigma(e)), np.exp(-nh * s), rtol=1e-3, atol=0)
    assert cs.sigma(e).dtype == np.float64

    # between the nodes: log-log interpolation of the file's values, done here independently
    for frac in (0.25, 0.5, 0.9):
        mid = np.exp(np.log(e[:-1]) + frac * np.diff(np.log(e)))
        ref = np.exp(np.log(s[:-1]) + frac * np.diff(np.log(s)))
        got = cs.sigma(mid)
        np.testing.assert_allclose(np.exp(-nh * got), np.exp(-nh * ref), rtol=1e-3, atol=0)
        lo, hi = np.minimum(s[:-1], s[1:]), np.maximum(s[:-1], s[1:])
        assert np.all((got >= lo * (1 - 1e-12)) & (got <= hi * (1 + 1e-12)))


def test_table_lookup_in_data_dir(monkeypatch):
    _need(XSECT_DIR)
    monkeypatch.setenv(xsect.ENV_DATA_DIR, str(XSECT_DIR))
    for model, abund in (("tbabs", "wilm"), ("phabs", "aspl"), ("wabs", "angr")):
        cs = cross_section(model)
        assert cs.source == f"table {XSECT_DIR / TABLES[model]}"
        assert (cs.model, cs.abund) == (model, abund)
        assert cross_section(model.upper(), abund=abund).source == cs.source
    # no xsect_tbabs_aspl.fits there: computed
    cs = cross_section("tbabs", abund="aspl")
    assert cs.source.startswith("computed") and cs.abund == "aspl"
    # a bare file name is also looked for in $XSBI_DATA_DIR
    assert cross_section("phabs", table="xsect_phabs_aspl.fits").source.startswith("table ")
    # a directory given as table
    assert cross_section("wabs", table=XSECT_DIR).abund == "angr"
    # an abundance set xsbi cannot compute is fine when a table holds it, an error otherwise
    with pytest.raises(ModelError, match="unknown abundance set 'feld'"):
        cross_section("tbabs", abund="feld")


def test_table_errors(tmp_path):
    path = _need(XSECT_DIR / TABLES["tbabs"])
    cs = cross_section("tbabs", table=path)
    emin, emax = cs.energy_range
    # the table starts at 0.1000265 keV (float32): 0.1 keV, a common response edge, is accepted
    assert np.isfinite(cs.sigma(np.array([0.1, 20.0]))).all()
    for bad in (0.05, 25.0):
        with pytest.raises(DataError, match="outside the range"):
            cs.sigma(np.array([1.0, bad]))
    with pytest.raises(DataError, match="finite"):
        cs.sigma(np.array([np.nan]))

    with pytest.raises(DataError, match="not found"):
        cross_section("tbabs", table=tmp_path / "missing.fits")
    with pytest.raises(DataError, match="holds the phabs"):
        cross_section("tbabs", table=XSECT_DIR / TABLES["phabs"])
    with pytest.raises(DataError, match="'wilm' abundances"):
        cross_section("tbabs", table=path, abund="aspl")

    wrong = tmp_path / "xsect_tbabs_wilm.fits"
    cols = [
        fits.Column("ENERGY", "E", array=np.array([1.0, 2.0])),
        fits.Column("XSECT", "E", array=np.array([1.0, 0.2])),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(wrong)
    with pytest.raises(DataError, match="ENERGY and SIGMA"):
        cross_section("tbabs", table=wrong)

    text = tmp_path / "notfits.fits"
    text.write_text("not a FITS file\n")
    with pytest.raises(DataError, match="cannot read"):
        cross_section("tbabs", table=text)

    neg = tmp_path / "neg.fits"
    cols = [
        fits.Column("ENERGY", "E", array=np.array([1.0, 2.0])),
        fits.Column("SIGMA", "E", array=np.array([1.0, -0.2])),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(neg)
    with pytest.raises(DataError, match="positive"):
        cross_section("tbabs", table=neg)


def test_table_in_plain_cm2_is_rescaled(tmp_path):
    e, s = _read_reference("phabs")
    path = tmp_path / "mine.fits"
    cols = [
        fits.Column("ENERGY", "D", unit="keV", array=e),
        fits.Column("SIGMA", "D", unit="cm^2", array=s * 1e-22),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="PHABS")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    cs = cross_section("phabs", table=path)
    assert cs.abund == "unknown"
    np.testing.assert_allclose(cs.sigma(e[::97]), s[::97], rtol=1e-12)
    # the file name supplies the abundance set when the header does not
    named = tmp_path / "xsect_phabs_aspl.fits"
    path.rename(named)
    assert cross_section("phabs", table=named).abund == "aspl"


# ----------------------------------------------------------------------------------------------
# Computed cross-sections
# ----------------------------------------------------------------------------------------------
def test_computed_api_and_errors():
    cs = cross_section("TBabs")
    assert isinstance(cs, CrossSection)
    assert (cs.model, cs.abund) == ("tbabs", "wilm")
    assert cs.energy_range == (xsect.EMIN_KEV, xsect.EMAX_KEV)
    assert cs.source.startswith("computed: xraydb ")
    for text in ("wilm abundances", "H2 fraction 0.2", "depletion", "grain shielding"):
        assert text in cs.source
    assert cross_section("phabs").abund == "aspl"
    assert cross_section("wabs").abund == "mm83"
    assert cross_section("wabs", abund="angr").abund == "angr"

    s = cs.sigma(1.0)
    assert isinstance(s, np.ndarray) and s.shape == () and s.dtype == np.float64
    grid = np.geomspace(0.3, 10.0, 12).reshape(3, 4)
    assert cs.sigma(grid).shape == (3, 4)
    assert cs.sigma(np.array([])).shape == (0,)
    assert np.all(cs.sigma(np.array([xsect.EMIN_KEV, xsect.EMAX_KEV])) > 0)

    for bad in (0.001, 600.0):
        with pytest.raises(ModelError, match="outside the range"):
            cs.sigma(np.array([1.0, bad]))
    with pytest.raises(ModelError, match="finite"):
        cs.sigma(np.array([1.0, np.inf]))
    with pytest.raises(ModelError, match="no photoabsorption cross-section"):
        cross_section("powerlaw")
    with pytest.raises(ModelError, match="unknown abundance set"):
        cross_section("tbabs", abund="solar")
    with pytest.raises(ModelError, match="letters and digits"):
        cross_section("tbabs", abund="../wilm")


def test_computed_physics():
    tb = cross_section("tbabs")
    # Wilms et al. (2000): sigma(1 keV) ~ 1.7e-22 cm^2 per H for their ISM.
    assert 1.6 < tb.sigma(1.0) < 1.9
    # sharp edges: O K and Fe K from xraydb's edge energies
    for edge in (0.5431, 7.112):
        below, above = tb.sigma(np.array([edge * (1 - 3e-4), edge * (1 + 3e-4)]))
        assert above > 1.3 * below
    # continuum falls steeply between edges
    e = np.geomspace(2.5, 3.15, 50)
    assert np.all(np.diff(tb.sigma(e)) < 0)
    # grains shield: tbabs lies below the same abundances as unshielded gas + H2 near 0.6 keV,
    # and H2 (2.9 sigma_H per molecule vs 2 sigma_H for two atoms) adds above it at 0.2 keV
    ph = cross_section("phabs", abund="wilm")
    assert tb.sigma(0.2) > ph.sigma(0.2)


def test_computed_is_fast_and_cached():
    for fn in (xsect._computed_grid, xsect._sigma_metal, xsect._energy_grid):
        fn.cache_clear()
    import xraydb

    xraydb.get_xraydb()  # opening the database is a one-off cost of the package, not ours
    t0 = time.perf_counter()
    cross_section("tbabs")
    t1 = time.perf_counter()
    cross_section("phabs")
    cross_section("wabs")
    t2 = time.perf_counter()
    assert t1 - t0 < 1.0, f"computing tbabs took {t1 - t0:.2f} s"
    assert t2 - t1 < 0.2, f"phabs and wabs took {t2 - t1:.2f} s with the metals cached"


# ----------------------------------------------------------------------------------------------
# Accuracy of the computed cross-sections against XSPEC (bounds from docs/cross_sections.md)
# ----------------------------------------------------------------------------------------------
BAND = (0.3, 10.0)
# Windows of +-2.5% around the principal absorption edges (energies from xraydb), where edge
# positions differ between atomic data sets, and for tbabs the energy ranges where XSPEC's
# tbabs uses measured fine structure.  Defined identically in docs/cross_sections.md.
EDGE_WINDOW = 0.025
MAJOR_EDGES = (
    ("C", "K"), ("N", "K"), ("O", "K"), ("Ne", "K"), ("Na", "K"), ("Mg", "K"), ("Al", "K"),
    ("Si", "K"), ("S", "K"), ("Ar", "K"), ("Ca", "K"), ("Fe", "L3"), ("Fe", "L2"), ("Fe", "K"),
    ("Ni", "K"),
)  # fmt: skip
TBABS_FINE_STRUCTURE = ((0.52, 0.58), (0.70, 0.75), (0.86, 0.88))


def _edge_windows(e: np.ndarray, model: str) -> np.ndarray:
    import xraydb

    mask = np.zeros(e.shape, dtype=bool)
    for element, shell in MAJOR_EDGES:
        edge = xraydb.xray_edge(element, shell).energy / 1e3
        mask |= np.abs(e / edge - 1.0) <= EDGE_WINDOW
    if model == "tbabs":
        for lo, hi in TBABS_FINE_STRUCTURE:
            mask |= (e >= lo) & (e <= hi)
    return mask


def _nicer_fwhm(e_kev):
    # NICER XTI-like resolution (FWHM 81 eV at 1 keV, 137 eV at 6 keV; shared data README)
    return np.sqrt(0.064**2 + 0.002442 * e_kev)


def _smooth(e: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian smoothing with the energy-dependent FWHM, done on a grid uniform in
    u = int dE / FWHM(E), where the kernel has constant width."""
    fine = np.geomspace(e[0], e[-1], 20001)
    du_fine = np.diff(fine) / _nicer_fwhm(0.5 * (fine[1:] + fine[:-1]))
    u_fine = np.concatenate([[0.0], np.cumsum(du_fine)])
    du = 0.01
    u = np.arange(0.0, u_fine[-1], du)
    energies = np.interp(u, u_fine, fine)
    values = np.exp(np.interp(np.log(energies), np.log(e), np.log(s)))
    width = 1.0 / 2.3548 / du
    k = np.arange(-int(5 * width), int(5 * width) + 1)
    kernel = np.exp(-0.5 * (k / width) ** 2)
    return energies, np.convolve(values, kernel / kernel.sum(), mode="same")


def measure_deviation(model: str) -> dict[str, tuple[float, float]]:
    """Deviation of the computed cross-section from XSPEC's table over 0.3-10 keV.

    Returns {metric: (|relative deviation|, energy keV)}; "band_fraction" has energy nan.
    """
    e, s = _read_reference(model)
    computed = cross_section(model).sigma(e)
    rel = computed / s - 1.0
    band = (e >= BAND[0]) & (e <= BAND[1])

    def worst(mask, r=rel, x=e):
        i = int(np.argmax(np.where(mask, np.abs(r), -1.0)))
        return float(abs(r[i])), float(x[i])

    out = {"pointwise": worst(band), "continuum": worst(band & ~_edge_windows(e, model))}
    es, ss = _smooth(e, s)
    _, cs = _smooth(e, computed)
    out["resolution"] = worst((es >= BAND[0]) & (es <= BAND[1]), cs / ss - 1.0, es)
    out["band_fraction"] = (float(np.mean(np.abs(rel[band]) > 0.03)), float("nan"))
    return out


def _documented_bounds() -> dict[str, dict[str, tuple[float, float]]]:
    row = re.compile(
        r"^\|\s*`?(tbabs|phabs|wabs)`?\s*\|[^|]*\|"
        + r"\s*([\d.]+)\s*% at ([\d.]+) keV\s*\|" * 3
        + r"\s*([\d.]+)\s*%\s*\|"
    )
    bounds = {}
    for line in DOC.read_text().splitlines():
        m = row.match(line.strip())
        if m:
            g = m.groups()
            bounds[g[0]] = {
                "pointwise": (float(g[1]) / 100, float(g[2])),
                "continuum": (float(g[3]) / 100, float(g[4])),
                "resolution": (float(g[5]) / 100, float(g[6])),
                "band_fraction": (float(g[7]) / 100, float("nan")),
            }
    return bounds


def test_docs_list_all_models():
    assert set(_documented_bounds()) == set(xsect.MODELS), "docs/cross_sections.md accuracy table"


@pytest.mark.parametrize("model", xsect.MODELS)
def test_computed_within_documented_deviation(model):
    measured = measure_deviation(model)
    documented = _documented_bounds()[model]
    for metric, (value, energy) in measured.items():
        bound, doc_energy = documented[metric]
        # small margin for roundoff of the documented figures and xraydb/scipy versions
        assert value <= bound * 1.02 + 0.002, (
            f"{model} {metric}: measured {100 * value:.2f}% at {energy:.4f} keV exceeds the "
            f"documented {100 * bound:.2f}%"
        )
