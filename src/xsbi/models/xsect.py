"""Photoelectric absorption cross-sections of the interstellar medium, per hydrogen atom.

Units follow XSPEC: ``sigma`` is in 1e-22 cm^2 per H atom, so that the transmission of a column
``nH`` (in 1e22 cm^-2) is ``exp(-nH * sigma)``.

Two sources, chosen by :func:`cross_section`:

1. **An XSPEC-generated table** (preferred whenever one is available): a FITS file with a binary
   table holding ``ENERGY`` (keV) and ``SIGMA`` columns, given by path or found in the directory
   named by ``$XSBI_DATA_DIR`` as ``xsect_{model}_{abund}.fits``.  It is interpolated linearly in
   log(sigma) versus log(E); asking for energies outside its range is a :class:`DataError`.
2. **Computed** from atomic data, when no table is given or found:

   * metals (C ... Ni): photoabsorption cross-sections of Elam, Ravel & Sieber (2002,
     Radiat. Phys. Chem. 63, 121) from the ``xraydb`` package (mass coefficient times atomic
     mass / Avogadro).  Elam's tables start at 0.1 keV; below it the Chantler (2000) tables of
     ``xraydb`` are used, scaled to join Elam continuously at 0.1 keV.
   * H: the hydrogenic 1s cross-section in the approximation of Band et al. (1990, A&A 237,
     267), as ``tbabs`` does (it agrees with the fit of Verner et al. 1996, ApJ 465, 487, used by
     ``phabs``, to 1% over 0.1-10 keV).
   * He: Yan, Sadeghpour & Dalgarno (1998, ApJ 496, 1044) for ``tbabs`` and ``wabs``; the
     Verner et al. (1996) analytic fit for ``phabs``, because that is what XSPEC's ``phabs``
     uses with its default cross-section setting (``xsect vern``).  The He autoionisation
     resonances near 60-65 eV (widths < 0.05 eV) are left out.
   * H2 (``tbabs`` only): Yan et al. (1998) above 85 eV; below it the hydrogenic shape scaled to
     join at 85 eV (an approximation; this is far below any X-ray band).

   and combined per model:

   * ``tbabs`` -- Wilms, Allen & McCray (2000, ApJ 542, 914): 20% of H in H2, metals depleted
     into grains with their Table 2 depletion factors, grains of density 1 g cm^-3 with an
     a^-3.5 size distribution between 0.025 and 0.25 micron, and the self-shielding of the grain
     material from their appendix (it lowers sigma by ~1% at 0.3-1 keV).  Default
     abundances ``wilm``.
   * ``phabs`` -- photoabsorption by cold gas summed over the 18 elements with the chosen
     abundances (default ``aspl``).  XSPEC's ``phabs`` obtains the same sum from the
     Balucinska-Church & McCammon (1992, ApJ 400, 699) fits or, by default, from Verner et
     al. (1996); here the metals come from Elam et al.
   * ``wabs`` -- Morrison & McCammon (1983, ApJ 270, 119), whose fit is built on Henke et al.
     (1982) cross-sections and a fixed composition; it is approximated by the same gas sum with
     the Anders & Ebihara (1982) abundances and He/H = 0.10 (composition name ``mm83``).
     XSPEC's ``wabs`` ignores the abundance setting; an explicit ``abund`` is honoured here.

   What the computed cross-sections cannot reproduce: the positions of the absorption edges
   differ between data sets by up to ~12 eV (e.g. Fe K at 7.112 keV in Elam, 7.124 keV in
   Verner; O K at 0.532, 0.538 and 0.543 keV in Henke/MM83, Verner and Elam), and ``tbabs``
   includes measured/R-matrix fine structure at the O K (0.52-0.58 keV), Fe L (0.70-0.75 keV)
   and Ne K (~0.867 keV) edges -- e.g. the O 1s-2p resonance at 0.527 keV -- that isolated-atom
   photoabsorption tables lack.  Away from the edges the computed values agree with XSPEC's
   tables to ~1-3% (``wabs``: ~7%); docs/cross_sections.md gives the measured deviations.
   Where this matters, use an XSPEC table.

The computed cross-section is tabulated once per (model, abundances) and process on a log grid
(1000 points per decade from 2 eV to 20 keV, 100 per decade from 20 to 500 keV) that also holds
both sides of every absorption edge, and interpolated log-log from there.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from xsbi.errors import DataError, ModelError, XsbiError

from .abundances import ABUNDANCES, ELEMENTS

__all__ = [
    "CrossSection",
    "cross_section",
    "DEFAULT_ABUND",
    "MODELS",
    "ENV_DATA_DIR",
    "EMIN_KEV",
    "EMAX_KEV",
    "TBABS_DEPLETION",
    "H2_FRACTION",
]

#: Absorption models with a computed cross-section.
MODELS: tuple[str, ...] = ("tbabs", "phabs", "wabs")

#: Abundance set each model uses by default (and the ``{abund}`` of the table file name looked
#: up when ``abund`` is not given).
DEFAULT_ABUND: Mapping[str, str] = MappingProxyType(
    {"tbabs": "wilm", "phabs": "aspl", "wabs": "angr"}
)

#: Environment variable naming a directory of XSPEC-generated ``xsect_{model}_{abund}.fits``.
ENV_DATA_DIR = "XSBI_DATA_DIR"

#: Energy range (keV) of the computed cross-sections.
EMIN_KEV = 0.002
EMAX_KEV = 500.0

#: Wilms, Allen & McCray (2000) Table 2: fraction of each element in the *gas* phase
#: (the rest is in grains); XSPEC's ``tbabs`` uses the same values.
TBABS_DEPLETION: Mapping[str, float] = MappingProxyType({
    "H": 1.0, "He": 1.0, "C": 0.5, "N": 1.0, "O": 0.6, "Ne": 1.0, "Na": 0.25, "Mg": 0.2,
    "Al": 0.02, "Si": 0.1, "S": 0.6, "Cl": 0.5, "Ar": 1.0, "Ca": 0.003, "Cr": 0.03, "Fe": 0.3,
    "Co": 0.05, "Ni": 0.04,
})  # fmt: skip

#: Fraction of hydrogen nuclei bound in H2 in ``tbabs`` (Wilms et al. 2000).
H2_FRACTION = 0.2

# tbabs grain model defaults (Wilms et al. 2000, section 2.4 and appendix).
_GRAIN_RHO = 1.0  # g cm^-3
_GRAIN_AMIN = 0.025e-4  # cm
_GRAIN_AMAX = 0.25e-4  # cm
_GRAIN_PL = 3.5  # dn/da ~ a^-PL

# wabs: Morrison & McCammon (1983) composition, approximated by Anders & Ebihara (1982) with
# He/H = 0.10; with AE82's own He/H = 0.080 the He-dominated 0.1-0.28 keV part of XSPEC's wabs
# comes out 12% low, with 0.10 it matches to ~1% (docs/cross_sections.md).
_MM83_HE = 0.10

_AVOGADRO = 6.02214076e23
_AMU_G = 1.66053906660e-24
_ELAM_EMIN_EV = 100.0  # Elam's tables are not defined below 100 eV (xraydb clamps there)
_H2_JOIN_EV = 85.0  # lower validity limit of Yan et al.'s high-energy H2 formula
_GRID_PER_DECADE = 1000
_GRID_FINE_MAX_KEV = 20.0
_EDGE_SIDE = 1e-4  # relative offset of the grid points placed on either side of an edge
_TABLE_END_TOL = 1e-3  # relative slack at the ends of a table (float32 energies)

_TABLE_NAME = re.compile(r"^xsect_([a-z0-9]+)_([a-z0-9]+)\.fits?$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# The public object
# --------------------------------------------------------------------------------------------
class CrossSection:
    """Absorption cross-section per H atom, in 1e-22 cm^2, of one model and abundance set.

    Attributes
    ----------
    model : str
        ``"tbabs"``, ``"phabs"`` or ``"wabs"``.
    abund : str
        Abundance set (``"wilm"``, ...; ``"mm83"`` for the computed ``wabs`` composition).
    source : str
        One line for the run record: the table file, or how the values were computed.
    energy_range : tuple of float
        (min, max) energy in keV where :meth:`sigma` may be evaluated.
    """

    __slots__ = ("model", "abund", "source", "_log_e", "_log_sigma", "_emin", "_emax", "_error")

    def __init__(
        self,
        model: str,
        abund: str,
        source: str,
        energies_keV: np.ndarray,
        sigma: np.ndarray,
        *,
        emin: float | None = None,
        emax: float | None = None,
        error: type[XsbiError] = ModelError,
    ):
        e = np.asarray(energies_keV, dtype=np.float64)
        s = np.asarray(sigma, dtype=np.float64)
        self.model = model
        self.abund = abund
        self.source = source
        self._log_e = np.log(e)
        self._log_sigma = np.log(s)
        self._log_e.flags.writeable = False
        self._log_sigma.flags.writeable = False
        self._emin = float(e[0]) if emin is None else float(emin)
        self._emax = float(e[-1]) if emax is None else float(emax)
        self._error = error

    @property
    def energy_range(self) -> tuple[float, float]:
        return (self._emin, self._emax)

    def sigma(self, energies_keV) -> np.ndarray:
        """Cross-section (float64, 1e-22 cm^2 per H atom) at ``energies_keV``; keeps the shape.

        Raises :class:`ModelError` (computed values) or :class:`DataError` (table) when an
        energy is not finite or lies outside :attr:`energy_range`.
        """
        e = np.asarray(energies_keV, dtype=np.float64)
        if e.size == 0:
            return np.empty(e.shape, dtype=np.float64)
        if not np.all(np.isfinite(e)):
            raise self._error(f"{self.model}: energies must be finite numbers (keV)")
        lo, hi = float(e.min()), float(e.max())
        if lo < self._emin or hi > self._emax:
            bad = lo if lo < self._emin else hi
            raise self._error(
                f"{self.model}: energy {bad:.6g} keV is outside the range "
                f"{self._emin:.6g}-{self._emax:.6g} keV of {self.source}"
                + (
                    "; supply a table that covers the response's energies, or drop the table "
                    "to use the computed cross-section"
                    if self._error is DataError
                    else "; restrict the response's energy grid"
                )
            )
        # np.interp clamps: this is what the end tolerance of tables relies on.
        out = np.exp(np.interp(np.log(e), self._log_e, self._log_sigma))
        return np.asarray(out, dtype=np.float64).reshape(e.shape)

    def __repr__(self) -> str:
        return f"CrossSection(model={self.model!r}, abund={self.abund!r}, source={self.source!r})"


def cross_section(model: str, table=None, abund: str | None = None) -> CrossSection:
    """Cross-section of absorption model ``model`` (``tbabs``, ``phabs`` or ``wabs``).

    Parameters
    ----------
    model : str
        Model name, case-insensitive.
    table : str or path-like, optional
        XSPEC-generated FITS table (``ENERGY`` keV, ``SIGMA`` 1e-22 cm^2 per H atom), or a
        directory holding ``xsect_{model}_{abund}.fits``.  A relative path that does not exist
        is also looked for in ``$XSBI_DATA_DIR``.  ``None``: use
        ``$XSBI_DATA_DIR/xsect_{model}_{abund}.fits`` if it exists, else compute.
    abund : str, optional
        Abundance set.  Default: the model's (``tbabs`` wilm, ``phabs`` aspl, ``wabs`` angr for
        the table name; the computed ``wabs`` then uses its Morrison & McCammon composition).

    Raises
    ------
    ModelError
        Unknown model or abundance set.
    DataError
        A table that is missing, unreadable, lacks the columns, or contradicts ``model`` or
        ``abund``.
    """
    name = _normalise_model(model)
    ab = None if abund is None else str(abund).strip().lower()
    if ab is not None and not re.fullmatch(r"[a-z0-9]+", ab):
        raise ModelError(f"abundance set name {abund!r} must be letters and digits, e.g. 'wilm'")

    path = _resolve_table(name, table, ab)
    if path is not None:
        # any XSPEC abundance set is fine here (feld, lgpp...): the table already holds it
        return _table_cross_section(name, path, ab)

    if ab is None:
        ab = "mm83" if name == "wabs" else DEFAULT_ABUND[name]
    if ab not in ABUNDANCES and ab != "mm83":
        raise ModelError(
            f"unknown abundance set {abund!r} for the computed {name} cross-section; known: "
            f"{', '.join(ABUNDANCES)}, mm83 (or give an XSPEC table made with it)"
        )
    energies, sigma, source = _computed(name, ab)
    return CrossSection(name, ab, source, energies, sigma, emin=EMIN_KEV, emax=EMAX_KEV)


def _normalise_model(model) -> str:
    name = str(model).strip().lower()
    if name not in MODELS:
        raise ModelError(
            f"no photoabsorption cross-section for model {model!r}; available: {', '.join(MODELS)}"
        )
    return name


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _table_file_name(model: str, abund: str | None) -> str:
    return f"xsect_{model}_{abund or DEFAULT_ABUND[model]}.fits"


def _resolve_table(model: str, table, abund: str | None) -> Path | None:
    data_dir = os.environ.get(ENV_DATA_DIR, "").strip()
    if table is None:
        if not data_dir:
            return None
        candidate = Path(data_dir).expanduser() / _table_file_name(model, abund)
        return candidate if candidate.is_file() else None

    path = Path(os.fspath(table)).expanduser()
    if not path.exists() and not path.is_absolute() and data_dir:
        path = Path(data_dir).expanduser() / path
    if path.is_dir():
        path = path / _table_file_name(model, abund)
    if not path.is_file():
        where = f" (also looked in ${ENV_DATA_DIR}={data_dir})" if data_dir else ""
        raise DataError(f"cross-section table {os.fspath(table)!r} not found{where}")
    return path


def _table_cross_section(model: str, path: Path, abund: str | None) -> CrossSection:
    st = path.stat()
    energies, sigma, extname, table_abund = _read_table(
        str(path.resolve()), st.st_mtime_ns, st.st_size
    )

    if extname in MODELS and extname != model:
        raise DataError(f"{path} holds the {extname} cross-section, not {model}")
    if abund is not None and table_abund is not None and table_abund != abund:
        raise DataError(
            f"{path} was made with the {table_abund!r} abundances but abund={abund!r} was "
            f"requested; pass abund={table_abund!r} (or None) or use a matching table"
        )
    if table_abund is None:
        m = _TABLE_NAME.match(path.name)
        from_name = m.group(2).lower() if m and m.group(1).lower() == model else None
        table_abund = abund or from_name or "unknown"

    emin = energies[0] * (1.0 - _TABLE_END_TOL)
    emax = energies[-1] * (1.0 + _TABLE_END_TOL)
    return CrossSection(
        model, table_abund, f"table {path}", energies, sigma, emin=emin, emax=emax, error=DataError
    )


@functools.lru_cache(maxsize=32)
def _read_table(path: str, mtime_ns: int, size: int):
    """Read (energies keV, sigma 1e-22 cm^2, EXTNAME, abundance keyword) from a FITS table.

    ``mtime_ns`` and ``size`` only key the cache, so that a rewritten file is read again.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            chosen = None
            for hdu in hdul[1:]:
                if not isinstance(hdu, fits.BinTableHDU):
                    continue
                names = {n.upper(): n for n in hdu.columns.names}
                if "ENERGY" in names and "SIGMA" in names:
                    chosen = hdu
                    break
            if chosen is None:
                found = [
                    f"{h.name}: {', '.join(h.columns.names)}"
                    for h in hdul[1:]
                    if isinstance(h, fits.BinTableHDU)
                ]
                raise DataError(
                    f"{path}: no binary table with ENERGY and SIGMA columns"
                    + (f" (found {'; '.join(found)})" if found else " (no binary table at all)")
                )
            names = {n.upper(): n for n in chosen.columns.names}
            energies = np.array(chosen.data[names["ENERGY"]], dtype=np.float64).ravel()
            sigma = np.array(chosen.data[names["SIGMA"]], dtype=np.float64).ravel()
            unit = (chosen.columns[names["SIGMA"]].unit or "").replace(" ", "").lower()
            extname = str(chosen.header.get("EXTNAME", "")).strip().lower()
            table_abund = chosen.header.get("TABLE")
    except DataError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, KeyError...
        raise DataError(f"cannot read cross-section table {path}: {exc}") from exc

    if energies.size < 2 or energies.size != sigma.size:
        raise DataError(f"{path}: the cross-section table needs at least two rows")
    if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(sigma))):
        raise DataError(f"{path}: ENERGY or SIGMA contains NaN or infinite values")
    if np.any(energies <= 0.0) or np.any(sigma <= 0.0):
        raise DataError(f"{path}: ENERGY and SIGMA must be positive (log-log interpolation)")
    order = np.argsort(energies, kind="stable")
    energies, sigma = energies[order], sigma[order]

    # XSPEC writes SIGMA in units of 1e-22 cm^2 even where TUNIT says "cm^2" (the shared tables:
    # sigma(1 keV) ~ 1.7 for tbabs/wilm), so the unit keyword cannot be trusted.  Per-H cross-
    # sections in plain cm^2 are < 1e-15 everywhere above 10 eV, values in 1e-22 cm^2 are
    # > 1e-6 below 100 keV: rescale only tables whose values can only be plain cm^2.
    says_scaled = "22" in unit
    if not says_scaled and np.max(sigma) < 1e-12:
        sigma = sigma * 1e22

    abund_kw = str(table_abund).strip().lower() if table_abund not in (None, "") else None
    return energies, sigma, extname, abund_kw


# --------------------------------------------------------------------------------------------
# Computed cross-sections
# --------------------------------------------------------------------------------------------
def _composition(abund: str) -> dict[str, float]:
    if abund == "mm83":
        comp = dict(ABUNDANCES["aneb"])
        comp["He"] = _MM83_HE
        return comp
    return dict(ABUNDANCES[abund])


def _computed(model: str, abund: str) -> tuple[np.ndarray, np.ndarray, str]:
    energies, sigma = _computed_grid(model, abund)
    return energies, sigma, _computed_source(model, abund)


def _computed_source(model: str, abund: str) -> str:
    import xraydb

    ab_text = (
        "Morrison & McCammon 1983 composition (Anders & Ebihara 1982, He/H=0.10)"
        if abund == "mm83"
        else f"{abund} abundances"
    )
    base = f"computed: xraydb {xraydb.__version__} photoabsorption (Elam; Chantler < 0.1 keV)"
    if model == "tbabs":
        return (
            f"{base}, {ab_text}, H Band 1990, He Yan 1998, Wilms 2000 depletion with grain "
            f"shielding, H2 fraction {H2_FRACTION} (Yan 1998)"
        )
    he = "He Verner 1996" if model == "phabs" else "He Yan 1998"
    return f"{base}, {ab_text}, H Band 1990, {he}, cold gas ({model})"


@functools.lru_cache(maxsize=None)
def _computed_grid(model: str, abund: str) -> tuple[np.ndarray, np.ndarray]:
    """(energies keV, sigma 1e-22 cm^2) tabulated for ``model`` -- see the module docstring."""
    comp = _composition(abund)
    energies = _energy_grid()
    e_ev = energies * 1e3
    metals = {el: _sigma_metal(el) for el in ELEMENTS[2:]}
    sig_h = _sigma_h(e_ev)
    sig_he = _sigma_he_verner(e_ev) if model == "phabs" else _sigma_he_yan(e_ev)

    if model == "tbabs":
        total = _tbabs(comp, e_ev, sig_h, sig_he, metals)
    else:
        total = sig_h + comp["He"] * sig_he
        for el, s in metals.items():
            total = total + comp[el] * s

    sigma = total * 1e22
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0.0):  # pragma: no cover - data guard
        raise ModelError(f"computed {model} cross-section is not positive everywhere")
    sigma.flags.writeable = False
    return energies, sigma


@functools.lru_cache(maxsize=1)
def _energy_grid() -> np.ndarray:
    """Log grid (keV) plus points on both sides of every K/L/M edge of the 16 metals."""
    import xraydb

    # All K edges of the 18 elements lie below 8.4 keV; above _GRID_FINE_MAX_KEV the
    # cross-sections are smooth power laws and a sparser grid keeps the Elam evaluation (a
    # Python loop in xraydb, ~5 us a point) cheap.
    n_fine = int(round(np.log10(_GRID_FINE_MAX_KEV / EMIN_KEV) * _GRID_PER_DECADE)) + 1
    n_coarse = int(round(np.log10(EMAX_KEV / _GRID_FINE_MAX_KEV) * _GRID_PER_DECADE / 10)) + 1
    pts = [
        np.geomspace(EMIN_KEV, _GRID_FINE_MAX_KEV, n_fine),
        np.geomspace(_GRID_FINE_MAX_KEV, EMAX_KEV, n_coarse),
    ]
    special = [_ELAM_EMIN_EV, _H2_JOIN_EV, 13.599, 24.58]  # Elam/Chantler join, thresholds
    for el in ELEMENTS[2:]:
        special.extend(edge.energy for edge in xraydb.xray_edges(el).values())
    special_kev = np.asarray(special, dtype=np.float64) / 1e3
    special_kev = special_kev[(special_kev > EMIN_KEV) & (special_kev < EMAX_KEV)]
    pts.append(special_kev * (1.0 - _EDGE_SIDE))
    pts.append(special_kev * (1.0 + _EDGE_SIDE))
    grid = np.unique(np.concatenate(pts))
    grid = grid[(grid >= EMIN_KEV) & (grid <= EMAX_KEV)]
    grid.flags.writeable = False
    return grid


@functools.lru_cache(maxsize=None)
def _sigma_metal(element: str) -> np.ndarray:
    """Photoabsorption cross-section per atom (cm^2) of ``element`` on :func:`_energy_grid`."""
    import xraydb

    e_ev = _energy_grid() * 1e3
    per_atom = xraydb.atomic_mass(element) / _AVOGADRO  # g per atom
    out = np.empty_like(e_ev)

    high = e_ev >= _ELAM_EMIN_EV
    out[high] = xraydb.mu_elam(element, e_ev[high], kind="photo") * per_atom

    low = ~high
    if np.any(low):
        # Elam is undefined below 100 eV; Chantler's shape there, scaled to keep sigma
        # continuous (the two differ by up to a factor 2 at 100 eV near L edges of Si, Ar).
        join = np.array([_ELAM_EMIN_EV, _ELAM_EMIN_EV * 1.001])
        elam = xraydb.mu_elam(element, join, kind="photo")
        scale = (elam / xraydb.mu_chantler(element, join, photo=True))[0]
        chantler = np.atleast_1d(xraydb.mu_chantler(element, e_ev[low], photo=True))
        out[low] = chantler * scale * per_atom
    out.flags.writeable = False
    return out


def _sigma_h(e_ev: np.ndarray) -> np.ndarray:
    """Hydrogen 1s photoionisation (cm^2), Band et al. (1990) approximation as in tbabs."""
    e1s = 13.599
    y = 2.0 * np.maximum(e_ev, e1s) / e1s
    sig_mb = 605.0 / (y**1.5 * (1.0 + np.sqrt(y)) ** 4)
    return np.where(e_ev >= e1s, sig_mb * 1e-18, 0.0)


def _sigma_he_yan(e_ev: np.ndarray) -> np.ndarray:
    """He photoionisation (cm^2), Yan, Sadeghpour & Dalgarno (1998) eq. 14 / Table 4.

    The Fano autoionisation resonances (60-65 eV, widths < 0.05 eV) are omitted.
    """
    eth = 24.58
    e = np.maximum(e_ev, eth)
    x = np.sqrt(eth / e)
    coeff = (1.0, -4.7416, 14.8200, -30.8678, 37.3584, -23.4585, 5.9133)
    poly = np.polynomial.polynomial.polyval(x, coeff)
    sig_barn = 733.0 * (e / 1e3) ** -3.5 * poly
    return np.where(e_ev >= eth, sig_barn * 1e-24, 0.0)


def _sigma_he_verner(e_ev: np.ndarray) -> np.ndarray:
    """He photoionisation (cm^2), analytic fit of Verner et al. (1996, ApJ 465, 487), He I 1s."""
    eth, e0, s0, ya, p, yw, y0, y1 = 24.59, 13.61, 949.2, 1.469, 3.188, 2.039, 0.4434, 2.136
    e = np.maximum(e_ev, eth)
    x = e / e0 - y0
    y = np.sqrt(x * x + y1 * y1)
    f = ((x - 1.0) ** 2 + yw * yw) * y ** (0.5 * p - 5.5) * (1.0 + np.sqrt(y / ya)) ** (-p)
    return np.where(e_ev >= eth, s0 * f * 1e-18, 0.0)


def _sigma_h2(e_ev: np.ndarray, sig_h: np.ndarray) -> np.ndarray:
    """H2 photoabsorption per molecule (cm^2): Yan et al. (1998) above 85 eV.

    This is 2.87-2.96 sigma_H over 0.3-10 keV (the common approximation 2.85 sigma_H is within
    4%).  Below 85 eV, where Yan et al.'s other fits and Wilms et al.'s 30-85 eV fit apply, the
    hydrogenic shape is scaled to join continuously: that region lies below every X-ray band.
    """

    def yan(e):
        x = np.sqrt(15.4 / e)
        coeff = (1.0, -2.003, -4.806, 50.577, -171.044, 231.608, -81.885)
        return 45.57 * (e / 1e3) ** -3.5 * np.polynomial.polynomial.polyval(x, coeff) * 1e-24

    high = e_ev >= _H2_JOIN_EV
    out = np.empty_like(e_ev)
    out[high] = yan(e_ev[high])
    ratio = yan(np.array([_H2_JOIN_EV]))[0] / _sigma_h(np.array([_H2_JOIN_EV]))[0]
    out[~high] = ratio * sig_h[~high]
    return out


def _tbabs(comp, e_ev, sig_h, sig_he, metals) -> np.ndarray:
    """Wilms, Allen & McCray (2000): gas + H2 + (self-shielded) grains, per H atom (cm^2)."""
    import xraydb
    from scipy.special import gamma, gammainc

    per_el = {"H": sig_h, "He": sig_he, **metals}
    gas = np.zeros_like(e_ev)
    dust_sigma = np.zeros_like(e_ev)  # sum over grain atoms of abundance * sigma
    dust_atoms = 0.0  # grain atoms per H
    dust_mass = 0.0  # grain mass per H (g)
    for el in ELEMENTS:
        in_gas = comp[el] * TBABS_DEPLETION[el]
        in_dust = comp[el] - in_gas
        if el == "H":
            in_gas *= 1.0 - H2_FRACTION
        gas += in_gas * per_el[el]
        if in_dust > 0.0:
            dust_sigma += in_dust * per_el[el]
            dust_atoms += in_dust
            dust_mass += in_dust * xraydb.atomic_mass(el) * _AMU_G

    molecules = 0.5 * H2_FRACTION * comp["H"]  # H2 per H nucleus
    total = gas + molecules * _sigma_h2(e_ev, sig_h)
    if dust_atoms == 0.0:
        return total

    # A grain of radius a is a slab of mean column (4/3) a rho / m_atom; it absorbs
    # pi a^2 (1 - exp(-tau)).  Integrated over dn/da ~ a^-p (Wilms et al. 2000, appendix):
    # with c = (4/3) rho sigma_avg / m_atom, int a^(2-p) (1 - e^(-c a)) da has a closed form in
    # the lower incomplete gamma function gamma(4-p, c a).
    rho, amin, amax, p = _GRAIN_RHO, _GRAIN_AMIN, _GRAIN_AMAX, _GRAIN_PL
    sig_avg = dust_sigma / dust_atoms
    mean_mass = dust_mass / dust_atoms
    k = (1.0 - p) / (amax ** (1.0 - p) - amin ** (1.0 - p))  # normalises a^-p on [amin, amax]
    # grains per H: total grain mass / mean grain mass, <a^3> over the size distribution
    mean_a3 = k * (amax ** (4.0 - p) - amin ** (4.0 - p)) / (4.0 - p)
    n_grains = dust_mass / (rho * 4.0 / 3.0 * np.pi * mean_a3)
    c = 4.0 / 3.0 * rho / mean_mass * sig_avg
    cmin, cmax = c * amin, c * amax

    def lower_gamma(s, x):
        return gammainc(s, x) * gamma(s)

    grains = (
        n_grains
        * np.pi
        * k
        / (p - 3.0)
        * (
            amin ** (3.0 - p) * -np.expm1(-cmin)
            - amax ** (3.0 - p) * -np.expm1(-cmax)
            + c ** (p - 3.0) * (lower_gamma(4.0 - p, cmax) - lower_gamma(4.0 - p, cmin))
        )
    )
    return total + grains
