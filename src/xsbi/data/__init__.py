"""Reading OGIP spectra and responses (OGIP/92-007, CAL/GEN/92-002) into xsbi objects."""

from xsbi.data.ogip import PHAData, read_pha
from xsbi.data.response import ARF, RMF, check_grids, read_arf, read_rmf
from xsbi.data.spectrum import Spectrum, load_spectrum
from xsbi.data.writer import write_arf, write_pha, write_rmf

__all__ = [
    "ARF",
    "PHAData",
    "RMF",
    "Spectrum",
    "check_grids",
    "load_spectrum",
    "read_arf",
    "read_pha",
    "read_rmf",
    "write_arf",
    "write_pha",
    "write_rmf",
]
