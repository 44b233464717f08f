"""xsbi: X-ray spectral fitting with simulation-based inference.

The pipeline a user follows, module by module::

    data (OGIP PHA/RMF/ARF) -> models (XSPEC expressions) -> simulate (batched fakeit)
    -> priors -> inference -> diagnostics -> report

>>> import xsbi
>>> spec = xsbi.load_spectrum("obs.pha").notice(0.3, 10.0)        # doctest: +SKIP
>>> model = xsbi.Model("tbabs*powerlaw").freeze("tbabs.nH", 0.2)   # doctest: +SKIP
>>> mu = xsbi.Simulator(model, spec).expected_counts(theta)        # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .data import ARF, RMF, Spectrum, load_spectrum
from .errors import DataError, ModelError, PriorError, XsbiError
from .models import Model
from .priors import Frozen, JointPrior, LogUniform, Normal, Uniform
from .config import ConfigError, load_config
from .simulate import Simulator
from .stats import chi2, cstat, wstat

try:
    __version__ = version("xsbi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "load_spectrum", "Spectrum", "RMF", "ARF",
    "Model", "Simulator",
    "Uniform", "LogUniform", "Normal", "Frozen", "JointPrior",
    "cstat", "wstat", "chi2",
    "XsbiError", "DataError", "ModelError", "PriorError", "ConfigError",
    "load_config",
]
