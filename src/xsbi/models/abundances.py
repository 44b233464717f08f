"""Solar abundance sets used by the X-ray absorption models.

Abundances are numbers of atoms relative to hydrogen, for the 18 elements that XSPEC's
photoelectric absorption models (``tbabs``, ``phabs``, ``wabs`` and their variants) include:
H, He, C, N, O, Ne, Na, Mg, Al, Si, S, Cl, Ar, Ca, Cr, Fe, Co, Ni.

The sets are the published values, entered as the papers give them (``12 + log10(N/N_H)``,
or atoms per 10^6 Si for Anders & Ebihara) and converted here, so that the source of every
number can be checked against the paper.  The names follow XSPEC's ``abund`` command:

``angr``  Anders, E. & Grevesse, N. 1989, Geochim. Cosmochim. Acta 53, 197 (photospheric,
          Table 2; XSPEC's historical default).
``aspl``  Asplund, M., Grevesse, N., Sauval, A. J. & Scott, P. 2009, ARA&A 47, 481
          (photospheric, Table 1).
``wilm``  Wilms, J., Allen, A. & McCray, R. 2000, ApJ 542, 914 (Table 2, total ISM
          abundances; the set the ``tbabs`` model is meant to be used with).
``grsa``  Grevesse, N. & Sauval, A. J. 1998, Space Sci. Rev. 85, 161.
``lodd``  Lodders, K. 2003, ApJ 591, 1220.
``aneb``  Anders, E. & Ebihara, M. 1982, Geochim. Cosmochim. Acta 46, 2363 (solar system).

The test-suite checks every set against XSPEC's own abundance file (to its 3 significant
figures), so a transcription error cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xsbi.errors import ModelError

__all__ = ["ELEMENTS", "ABUNDANCES", "REFERENCES", "abundances", "available"]

#: Elements included in XSPEC's absorption models, in XSPEC's order.
ELEMENTS: tuple[str, ...] = (
    "H", "He", "C", "N", "O", "Ne", "Na", "Mg", "Al", "Si",
    "S", "Cl", "Ar", "Ca", "Cr", "Fe", "Co", "Ni",
)  # fmt: skip

# 12 + log10(N_X / N_H), as printed in the papers (H = 12 implied).
_LOG_EPS: dict[str, dict[str, float]] = {
    "angr": {
        "He": 10.99, "C": 8.56, "N": 8.05, "O": 8.93, "Ne": 8.09, "Na": 6.33,
        "Mg": 7.58, "Al": 6.47, "Si": 7.55, "S": 7.21, "Cl": 5.50, "Ar": 6.56,
        "Ca": 6.36, "Cr": 5.67, "Fe": 7.67, "Co": 4.92, "Ni": 6.25,
    },
    "aspl": {
        "He": 10.93, "C": 8.43, "N": 7.83, "O": 8.69, "Ne": 7.93, "Na": 6.24,
        "Mg": 7.60, "Al": 6.45, "Si": 7.51, "S": 7.12, "Cl": 5.50, "Ar": 6.40,
        "Ca": 6.34, "Cr": 5.64, "Fe": 7.50, "Co": 4.99, "Ni": 6.22,
    },
    "wilm": {
        "He": 10.99, "C": 8.38, "N": 7.88, "O": 8.69, "Ne": 7.94, "Na": 6.16,
        "Mg": 7.40, "Al": 6.33, "Si": 7.27, "S": 7.09, "Cl": 5.12, "Ar": 6.41,
        "Ca": 6.20, "Cr": 5.51, "Fe": 7.43, "Co": 4.92, "Ni": 6.05,
    },
    "grsa": {
        "He": 10.93, "C": 8.52, "N": 7.92, "O": 8.83, "Ne": 8.08, "Na": 6.33,
        "Mg": 7.58, "Al": 6.47, "Si": 7.55, "S": 7.33, "Cl": 5.50, "Ar": 6.40,
        "Ca": 6.36, "Cr": 5.67, "Fe": 7.50, "Co": 4.92, "Ni": 6.25,
    },
    "lodd": {
        "He": 10.90, "C": 8.39, "N": 7.83, "O": 8.69, "Ne": 7.87, "Na": 6.30,
        "Mg": 7.55, "Al": 6.46, "Si": 7.54, "S": 7.19, "Cl": 5.26, "Ar": 6.55,
        "Ca": 6.34, "Cr": 5.65, "Fe": 7.47, "Co": 4.91, "Ni": 6.22,
    },
}  # fmt: skip

# Anders & Ebihara (1982) give solar-system abundances in atoms per 10^6 Si.
_PER_1E6_SI: dict[str, dict[str, float]] = {
    "aneb": {
        "H": 2.72e10, "He": 2.18e9, "C": 1.21e7, "N": 2.48e6, "O": 2.01e7, "Ne": 3.76e6,
        "Na": 5.70e4, "Mg": 1.075e6, "Al": 8.49e4, "Si": 1.00e6, "S": 5.15e5,
        "Cl": 5.24e3, "Ar": 1.04e5, "Ca": 6.11e4, "Cr": 1.34e4, "Fe": 9.00e5,
        "Co": 2.25e3, "Ni": 4.93e4,
    },
}  # fmt: skip

#: Bibliographic reference of each set.
REFERENCES: Mapping[str, str] = MappingProxyType(
    {
        "angr": "Anders & Grevesse 1989, GeCoA 53, 197",
        "aspl": "Asplund, Grevesse, Sauval & Scott 2009, ARA&A 47, 481",
        "wilm": "Wilms, Allen & McCray 2000, ApJ 542, 914",
        "grsa": "Grevesse & Sauval 1998, Space Sci. Rev. 85, 161",
        "lodd": "Lodders 2003, ApJ 591, 1220",
        "aneb": "Anders & Ebihara 1982, GeCoA 46, 2363",
    }
)


def _build() -> dict[str, Mapping[str, float]]:
    sets: dict[str, Mapping[str, float]] = {}
    for name, logs in _LOG_EPS.items():
        values = {"H": 1.0}
        values.update({el: 10.0 ** (v - 12.0) for el, v in logs.items()})
        sets[name] = MappingProxyType({el: values[el] for el in ELEMENTS})
    for name, per_si in _PER_1E6_SI.items():
        n_h = per_si["H"]
        sets[name] = MappingProxyType({el: per_si[el] / n_h for el in ELEMENTS})
    return sets


#: Read-only mapping: set name -> {element symbol: number relative to H}.
ABUNDANCES: Mapping[str, Mapping[str, float]] = MappingProxyType(_build())


def available() -> tuple[str, ...]:
    """Names of the abundance sets known to xsbi."""
    return tuple(ABUNDANCES)


def abundances(name: str) -> dict[str, float]:
    """Return a copy of abundance set ``name`` (case-insensitive) as {element: N/N_H}.

    Raises :class:`~xsbi.errors.ModelError` for an unknown name.
    """
    key = str(name).strip().lower()
    try:
        return dict(ABUNDANCES[key])
    except KeyError:
        raise ModelError(
            f"unknown abundance set {name!r}; known sets: {', '.join(ABUNDANCES)}"
        ) from None
