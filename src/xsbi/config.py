"""Run configuration: load and validate the YAML file behind ``xsbi run CONFIG --out DIR``.

>>> cfg = load_config("analysis.yaml", overrides={"inference.method": "mcmc"})   # doctest: +SKIP
>>> cfg.inference.simulations, cfg.data.spectrum, cfg.priors["powerlaw.PhoIndex"]  # doctest: +SKIP
(20000, PosixPath('/abs/path/obs.pha'), {'uniform': [0.5, 2.5]})
>>> prior = cfg.build_prior()          # JointPrior on a fresh xsbi.Model     # doctest: +SKIP
>>> record = cfg.to_dict()             # plain, YAML-safe; load_config(record) == cfg

Only ``data``, ``model`` and ``priors`` are required; every other key has the default of the
dataclass field of the same name below (``docs/config.md`` documents them all).  Validation
collects *every* problem before raising one :class:`ConfigError` that lists each with its
location (``inference.simulations: must be a positive integer, got -5``) and, for a file, its
line.  Files are only checked for existence here; nothing is read from them.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import XsbiError

__all__ = [
    "ConfigError", "load_config", "RunConfig", "DataConfig", "GroupConfig", "ModelConfig",
    "RestrictionConfig", "InferenceConfig", "MCMCConfig", "NestedConfig", "FitConfig",
    "RESTRICTION_METHODS", "INFERENCE_METHODS", "DENSITY_ESTIMATORS", "PREPROCESSING",
    "GROUP_METHODS", "PRIOR_KINDS",
]

RESTRICTION_METHODS = ("counts", "cstat", "coarse", "none")
INFERENCE_METHODS = ("npe", "snpe", "cstat", "mcmc", "nested")
DENSITY_ESTIMATORS = ("maf", "nsf", "mdn")
PREPROCESSING = ("anscombe", "log1p", "none")
GROUP_METHODS = ("constant", "min_counts")
PRIOR_KINDS = ("uniform", "loguniform", "normal", "frozen")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


# ================================================================================== the error
class ConfigError(XsbiError, ValueError):
    """A run configuration is unreadable or invalid.

    Attributes
    ----------
    problems : list of (location, message)
        Every mistake found; ``location`` is a dotted key such as ``inference.simulations``
        (empty for a problem with the file as a whole).
    errors : list of str
        The same as ``"location: message"`` strings.
    source : Path or None
        The YAML file, when the configuration came from one.
    lines : dict
        Line of each key in the file (used to point at the mistakes).
    """

    def __init__(self, problems, source=None, lines=None):
        self.problems = [(str(loc), str(msg)) for loc, msg in problems]
        self.source = None if source is None else Path(source)
        self.lines = dict(lines or {})
        super().__init__(self._format())

    @property
    def errors(self) -> list[str]:
        return [f"{loc}: {msg}" if loc else msg for loc, msg in self.problems]

    def _line(self, loc: str) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            cut = max(loc.rfind("."), loc.rfind("["))
            loc = loc[:cut] if cut > 0 else ""
        return None

    def _format(self) -> str:
        where = f" {self.source}" if self.source is not None else ""
        items = []
        for (loc, _), text in zip(self.problems, self.errors):
            line = self._line(loc) if loc else None
            show = line is not None and "(lines " not in text
            items.append(text + (f" (line {line})" if show else ""))
        if len(items) == 1:
            return f"invalid configuration{where}: {items[0]}"
        return f"invalid configuration{where}, {len(items)} problems:" + "".join(f"\n  - {t}" for t in items)

    def __reduce__(self):
        return (type(self), (self.problems, self.source, self.lines))


# ================================================================================== the tree
@dataclass(frozen=True)
class GroupConfig:
    """Regrouping of the spectrum: ``method`` ``"constant"`` (``n`` channels per bin),
    ``"min_counts"`` (at least ``n`` counts per bin) or ``"none"`` (every channel its own bin)."""

    method: str
    n: int | None = None

    def to_dict(self):
        return False if self.method == "none" else {self.method: self.n}


@dataclass(frozen=True)
class DataConfig:
    """The observation.  Paths are absolute; ``energy`` is always a tuple of (low, high) keV pairs.
    ``arf``/``background`` ``False`` means "use none" (ignore ANCRFILE/BACKFILE); ``None`` means
    "as the PHA header says".  ``group`` ``None`` keeps the file's GROUPING."""

    spectrum: Path
    energy: tuple[tuple[float, float], ...] = ((0.3, 10.0),)
    rmf: Path | None = None
    arf: Path | Literal[False] | None = None
    background: Path | Literal[False] | None = None
    group: GroupConfig | None = None

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class ModelConfig:
    """An XSPEC expression and per-component options (``{"tbabs": {"table": path}}``)."""

    expression: str
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def build(self):
        """A fresh :class:`xsbi.Model` (all parameters free)."""
        from .models import Model

        return Model(self.expression, self.options)

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class RestrictionConfig:
    """Prior truncation before inference (see docs/config.md)."""

    method: str = "counts"
    counts: tuple[float, float] | None = None
    fraction: float = 0.25
    rounds: int = 10
    simulations: int = 2000
    stop_fraction: float = 0.5
    coarse_simulations: int = 5000
    coarse_quantile: float = 1.0e-4

    def counts_range(self, n_observed: float) -> tuple[float, float]:
        """[cmin, cmax] of total counts kept by the ``counts`` method.

        ``counts`` when given, else ``[max(0, min(N/3, N - 5 sqrt N)), max(3N, N + 5 sqrt N, 10)]``
        for ``N`` observed counts: a factor 3 either way, widened to 5 Poisson sigma for faint
        spectra.
        """
        if self.counts is not None:
            return tuple(self.counts)
        n = float(n_observed)
        if not (math.isfinite(n) and n >= 0):
            raise ConfigError([("restriction.counts", f"observed counts must be >= 0, got {n_observed}")])
        s = 5.0 * math.sqrt(n)
        return max(0.0, min(n / 3.0, n - s)), max(3.0 * n, n + s, 10.0)

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class MCMCConfig:
    """Ensemble MCMC on the C-statistic (``inference.method: mcmc``)."""

    walkers: int = 32
    steps: int | None = None  # None: run until the chains are many autocorrelation times long


@dataclass(frozen=True)
class NestedConfig:
    """Nested sampling with UltraNest (``inference.method: nested``)."""

    live_points: int = 400  # minimum number of live points
    dlogz: float = 0.5  # target uncertainty of ln Z
    frac_remain: float = 0.01  # stop once this fraction of the evidence is left in the live points
    max_ncalls: int | None = None  # cap on likelihood evaluations; None: none


@dataclass(frozen=True)
class FitConfig:
    """C-statistic maximum-likelihood fit (``inference.method: cstat``)."""

    starts: int = 5  # optimiser starts drawn from the prior; the best is kept


@dataclass(frozen=True)
class InferenceConfig:
    """How the posterior is obtained (see docs/config.md)."""

    method: str = "npe"
    simulations: int = 20000
    rounds: int = 3
    simulations_per_round: int = 1000
    posterior_samples: int = 20000
    density_estimator: str = "maf"
    hidden_features: int = 50
    num_transforms: int = 5
    ensemble: int = 1
    importance_sampling: bool = True
    preprocessing: str = "anscombe"
    pca: float | None = None
    training_batch_size: int = 200
    learning_rate: float = 5.0e-4
    validation_fraction: float = 0.1
    stop_after_epochs: int = 20
    max_epochs: int | None = None
    test_spectra: int = 500
    device: str = "cpu"
    exposure: tuple[float, float] | None = None  # npe: [tmin, tmax] s, condition the network on exposure
    # npe with a background: [lmin, lmax] factors on the observed background, condition the network on its level
    background_level: tuple[float, float] | None = None
    mcmc: MCMCConfig = field(default_factory=MCMCConfig)
    nested: NestedConfig = field(default_factory=NestedConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class RunConfig:
    """A validated run configuration.

    ``priors`` maps canonical parameter names (``"powerlaw.PhoIndex"``, as
    :attr:`xsbi.Model.parameter_names` spells them) to normalised prior specs:
    ``{"uniform": [lo, hi]}``, ``{"loguniform": [lo, hi]}``, ``{"normal": [mean, sigma]}``
    (or ``[mean, sigma, lo, hi]``), ``{"frozen": value}``; every parameter of the model has one.
    """

    data: DataConfig
    model: ModelConfig
    priors: dict[str, dict[str, Any]]
    restriction: RestrictionConfig = field(default_factory=RestrictionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    seed: int = 0
    plots: bool = True

    def build_model(self):
        """A fresh :class:`xsbi.Model` of ``model`` (all parameters free, no priors applied)."""
        return self.model.build()

    def build_prior(self):
        """:class:`xsbi.JointPrior` of ``priors`` on a fresh model (frozen priors freeze it);
        the model is ``prior.model``."""
        from .priors import JointPrior

        return JointPrior(self.build_model(), self.priors)

    def to_dict(self) -> dict:
        """Plain dict of lists, strings and numbers (``yaml.safe_dump``/JSON-able) from which
        :func:`load_config` rebuilds an equal RunConfig."""
        return _plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(obj):
    if isinstance(obj, GroupConfig):
        return obj.to_dict()
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ================================================================================== helpers
_BAD = object()  # a value that failed its check (already reported)


class _Problems:
    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, loc: str, msg: str) -> None:
        self.items.append((loc, msg))

    def __len__(self):
        return len(self.items)


def _show(v, limit=80) -> str:
    """A value as the user wrote it in YAML (for messages)."""
    if v is None:
        text = "null"
    elif isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_show(x, limit) for x in v) + "]"
    elif isinstance(v, Mapping):
        text = "{" + ", ".join(f"{k}: {_show(x, limit)}" for k, x in v.items()) + "}"
    elif isinstance(v, Path):
        text = repr(str(v))
    else:
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(v) -> float | None:
    """A finite or infinite float from a number or a numeric string (PyYAML reads ``1e-4``, with
    no dot, as a string), else None.  Booleans are not numbers."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _unknown_keys(raw: Mapping, known, loc: str, p: _Problems) -> None:
    known = list(known)
    for key in raw:
        if str(key) in known:
            continue
        sub = f"{loc}.{key}" if loc else str(key)
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        if close:
            p.add(sub, f"unknown key (did you mean '{close[0]}'?)")
        else:
            p.add(sub, f"unknown key; known keys here: {', '.join(known)}")


def _interval(lo, hi, lo_open, hi_open) -> str:
    if hi is None and lo == 0:
        return "a positive number" if lo_open else "a number >= 0"
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"a number in {left}{lo:g}, {'inf' if hi is None else format(hi, 'g')}{right}"


def _int(minimum=1, allow_none=False):
    what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
    if allow_none:
        what += " or null"

    def check(v, loc, p):
        if v is None and allow_none:
            return None
        x = _num(v)
        if x is None or not math.isfinite(x) or x != int(x) or x < minimum:
            p.add(loc, f"must be {what}, got {_show(v)}")
            return _BAD
        return int(x)

    return check


def _real(lo=0.0, hi=None, lo_open=True, hi_open=False, allow_none=False):
    what = _interval(lo, hi, lo_open, hi_open) + (" or null" if allow_none else "")

    def check(v, loc, p):
        if v is None and allow_none:
            return None
        x = _num(v)
        ok = x is not None and math.isfinite(x)
        ok = ok and (x > lo if lo_open else x >= lo)
        ok = ok and (hi is None or (x < hi if hi_open else x <= hi))
        if not ok:
            p.add(loc, f"must be {what}, got {_show(v)}")
            return _BAD
        return x

    return check


def _choice(options):
    def check(v, loc, p):
        if isinstance(v, str) and v.strip().lower() in options:
            return v.strip().lower()
        if isinstance(v, str):
            p.add(loc, f"unknown '{v}'; choose one of {', '.join(options)}")
        else:
            p.add(loc, f"must be one of {', '.join(options)}, got {_show(v)}")
        return _BAD

    return check


def _bool(v, loc, p):
    if isinstance(v, bool):
        return v
    p.add(loc, f"must be true or false, got {_show(v)}")
    return _BAD


def _device(v, loc, p):
    if isinstance(v, str) and _DEVICE.match(v.strip().lower()):
        return v.strip().lower()
    p.add(loc, f"must be cpu, cuda, cuda:N or mps, got {_show(v)}")
    return _BAD


def _section(raw, loc, cls, checks, p):
    """Check a mapping against ``checks`` (key -> check); missing keys take ``cls``'s defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        p.add(loc, f"must be a mapping of settings, got {_show(raw)}")
        raw = {}
    _unknown_keys(raw, checks, loc, p)
    values = {}
    for key, check in checks.items():
        if key in raw:
            v = check(raw[key], f"{loc}.{key}", p)
            if v is not _BAD:
                values[key] = v
    return cls(**values)


def _sub(cls, checks):
    return lambda v, loc, p: _section(v, loc, cls, checks, p)


# ================================================================================== sections
def _path_check(base_for, allow_false):
    def check(v, loc, p):
        if v is None:
            return None
        if v is False and allow_false:
            return False
        if isinstance(v, bool) or not isinstance(v, (str, os.PathLike)) or not str(v).strip():
            p.add(loc, f"must be a file path{' or false' if allow_false else ''}, got {_show(v)}")
            return _BAD
        path = Path(os.path.abspath(base_for(loc) / Path(str(v).strip()).expanduser()))
        if not path.is_file():
            what = "not a file" if path.exists() else "file not found"
            p.add(loc, f"{what}: {path}" + (f" (given {_show(str(v))})" if str(v) != str(path) else ""))
            return _BAD
        return path

    return check


def _energy(v, loc, p):
    form = "[low, high] in keV or a list of such pairs"
    if not isinstance(v, (list, tuple)) or not v:
        p.add(loc, f"must be {form}, got {_show(v)}")
        return _BAD
    single = not any(isinstance(x, (list, tuple)) for x in v)
    pairs = [v] if single else list(v)
    out, bad = [], False
    for i, pair in enumerate(pairs):
        sub = loc if single else f"{loc}[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            p.add(sub, f"must be {form}, got {_show(pair)}")
            bad = True
            continue
        lo, hi = _num(pair[0]), _num(pair[1])
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            p.add(sub, f"needs two numbers [low, high] in keV, got {_show(pair)}")
            bad = True
        elif not 0 <= lo < hi:
            p.add(sub, f"needs 0 <= low < high (keV), got {_show(pair)}")
            bad = True
        else:
            out.append((lo, hi))
    return _BAD if bad else tuple(out)


def _group(v, loc, p):
    if v is None:
        return None
    if v is False:
        return GroupConfig("none")
    form = "null (the file's grouping), false (no grouping), {constant: N} or {min_counts: N}"
    if not isinstance(v, Mapping) or len(v) != 1:
        p.add(loc, f"must be {form}, got {_show(v)}")
        return _BAD
    (kind, n), = v.items()
    if str(kind) not in GROUP_METHODS:
        _unknown_keys(v, GROUP_METHODS, loc, p)
        return _BAD
    n = _int(1)(n, f"{loc}.{kind}", p)
    return _BAD if n is _BAD else GroupConfig(str(kind), n)


def _counts(v, loc, p):
    if v is None:
        return None
    vals = [_num(x) for x in v] if isinstance(v, (list, tuple)) and len(v) == 2 else None
    if vals is None or None in vals or not all(math.isfinite(x) for x in vals) or not 0 <= vals[0] < vals[1]:
        p.add(loc, f"must be null or [cmin, cmax] total counts with 0 <= cmin < cmax, got {_show(v)}")
        return _BAD
    return tuple(vals)


def _exposure(v, loc, p):
    if v is None:
        return None
    vals = [_num(x) for x in v] if isinstance(v, (list, tuple)) and len(v) == 2 else None
    if vals is None or None in vals or not all(math.isfinite(x) for x in vals) or not 0 < vals[0] <= vals[1]:
        p.add(loc, f"must be null or [tmin, tmax] exposures in seconds with 0 < tmin <= tmax, got {_show(v)}")
        return _BAD
    return tuple(vals)


def _background_level(v, loc, p):
    if v is None:
        return None
    vals = [_num(x) for x in v] if isinstance(v, (list, tuple)) and len(v) == 2 else None
    if vals is None or None in vals or not all(math.isfinite(x) for x in vals) or not 0 < vals[0] <= vals[1]:
        p.add(loc, f"must be null or [lmin, lmax] factors on the observed background with 0 < lmin <= lmax, "
                   f"got {_show(v)}")
        return _BAD
    return tuple(vals)


def _data(raw, p, base_for):
    if raw is None:
        p.add("data", "required section missing: give at least data.spectrum (the PHA file)")
        return None
    checks = {
        "spectrum": _path_check(base_for, allow_false=False),
        "energy": _energy,
        "rmf": _path_check(base_for, allow_false=False),
        "arf": _path_check(base_for, allow_false=True),
        "background": _path_check(base_for, allow_false=True),
        "group": _group,
    }
    if not isinstance(raw, Mapping):
        p.add("data", f"must be a mapping with at least 'spectrum', got {_show(raw)}")
        return None
    _unknown_keys(raw, checks, "data", p)
    values = {}
    for key, check in checks.items():
        if raw.get(key) is None and key == "spectrum":
            p.add("data.spectrum", "required: the path of the PHA spectrum file")
            continue
        if key in raw:
            v = check(raw[key], f"data.{key}", p)
            if v is not _BAD:
                values[key] = v
    return DataConfig(**values) if "spectrum" in values else None


def _model(raw, p, base_for):
    """-> (ModelConfig or None, xsbi.Model or None)."""
    from .models import Model

    if raw is None:
        p.add("model", "required: an XSPEC expression such as 'tbabs*powerlaw'")
        return None, None
    if isinstance(raw, str):
        expression, options, loc = raw, {}, "model"
    elif isinstance(raw, Mapping):
        _unknown_keys(raw, ("expression", "options"), "model", p)
        expression, options, loc = raw.get("expression"), raw.get("options"), "model.expression"
        if options is None:
            options = {}
    else:
        p.add("model", f"must be an expression string or {{expression: ..., options: ...}}, got {_show(raw)}")
        return None, None
    if not isinstance(expression, str) or not expression.strip():
        p.add(loc, f"must be a non-empty XSPEC expression such as 'tbabs*powerlaw', got {_show(expression)}")
        expression = None

    clean, ok = {}, True
    if not isinstance(options, Mapping):
        p.add("model.options", f"must map component labels to option mappings, got {_show(options)}")
        ok = False
    else:
        for label, opts in options.items():
            oloc = f"model.options.{label}"
            if not isinstance(opts, Mapping):
                p.add(oloc, f"must be a mapping of options such as {{table: path}}, got {_show(opts)}")
                ok = False
                continue
            clean[str(label).lower()] = {str(k): _option_value(k, v, f"{oloc}.{k}", base_for) for k, v in opts.items()}
    if expression is None:
        return None, None
    try:
        model = Model(expression, clean)
    except XsbiError as exc:
        p.add(loc, str(exc))
        return None, None
    for label in clean:
        if label not in model.components:
            p.add(f"model.options.{label}",
                  f"no component labelled '{label}' in '{model.expression}'"
                  + _did_you_mean(label, list(model.components))
                  + f"; its components are: {', '.join(model.components)}")
            ok = False
    return (ModelConfig(model.expression, clean) if ok else None), model


def _option_value(key, v, loc, base_for):
    # A table given as a relative path that exists next to the configuration is made absolute;
    # anything else is passed through (xsect also looks tables up in $XSBI_DATA_DIR).
    if str(key) == "table" and isinstance(v, (str, os.PathLike)) and str(v).strip():
        path = Path(os.path.abspath(base_for(loc) / Path(str(v)).expanduser()))
        if path.exists():
            return str(path)
    return v


def _did_you_mean(name, options) -> str:
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def _parameter_hint(name, names) -> str:
    """Did-you-mean for a parameter: a close full name, else a close parameter of the same component."""
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.85)
    if not close and "." in name:
        comp, par = name.lower().split(".", 1)
        same = {n.split(".", 1)[1].lower(): n for n in names if n.split(".", 1)[0].lower() == comp}
        hit = difflib.get_close_matches(par, list(same), n=1, cutoff=0.6)
        close = [same[hit[0]].lower()] if hit else []
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def _prior_spec(spec, loc, p):
    """Structural check of one prior -> normalised {kind: args} or _BAD."""
    from .priors import Prior

    if isinstance(spec, Prior):
        spec = spec.record()
    x = _num(spec)
    if x is not None:
        if not math.isfinite(x):
            p.add(loc, f"a frozen value must be finite, got {_show(spec)}")
            return _BAD
        return {"frozen": x}
    form = "{uniform: [low, high]}, {loguniform: [low, high]}, {normal: [mean, sigma]}, {frozen: value} or a number"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        p.add(loc, f"a prior is one of {form}; got {_show(spec)}")
        return _BAD
    (kind, args), = spec.items()
    kind = str(kind).strip().lower()
    if kind not in PRIOR_KINDS:
        p.add(loc, f"unknown prior type '{kind}'{_did_you_mean(kind, PRIOR_KINDS)}; choose one of {', '.join(PRIOR_KINDS)}")
        return _BAD
    if kind == "frozen":
        x = _num(args)
        if x is None or not math.isfinite(x):
            p.add(loc, f"frozen needs a finite number, got {_show(args)}")
            return _BAD
        return {"frozen": x}
    vals = [_num(a) for a in args] if isinstance(args, (list, tuple)) else None
    finite = vals is not None and None not in vals and all(math.isfinite(a) for a in vals)
    if kind == "uniform":
        if not (finite and len(vals) == 2 and vals[0] < vals[1]):
            p.add(loc, f"uniform needs [low, high] with low < high, got {_show(args)}")
            return _BAD
    elif kind == "loguniform":
        if not (finite and len(vals) == 2 and 0 < vals[0] < vals[1]):
            p.add(loc, f"loguniform needs [low, high] with 0 < low < high, got {_show(args)}")
            return _BAD
    else:  # normal; truncation bounds may be infinite
        ok = (vals is not None and None not in vals and len(vals) in (2, 4)
              and all(math.isfinite(a) for a in vals[:2]) and vals[1] > 0
              and not any(math.isnan(a) for a in vals) and (len(vals) == 2 or vals[2] < vals[3]))
        if not ok:
            p.add(loc, "normal needs [mean, sigma] with sigma > 0, or [mean, sigma, low, high] "
                       f"with low < high to truncate it, got {_show(args)}")
            return _BAD
    return {kind: vals}


def _priors(raw, model, p):
    from .priors import Frozen, JointPrior, Normal, prior_from_spec

    if raw is None:
        p.add("priors", "required: one prior per parameter, e.g. powerlaw.PhoIndex: {uniform: [0.5, 2.5]}"
              + (f"; the model's parameters are: {', '.join(model.all_parameter_names)}" if model else ""))
        return None
    if not isinstance(raw, Mapping):
        p.add("priors", f"must map parameter names to priors, got {_show(raw)}")
        return None
    start = len(p)
    out, seen = {}, {}
    for name, spec in raw.items():
        loc = f"priors.{name}"
        norm = _prior_spec(spec, loc, p)
        key = str(name)
        if model is not None:
            try:
                key = model._resolve(key)
            except XsbiError as exc:
                hint = _parameter_hint(key, model.all_parameter_names)
                msg = str(exc)
                p.add(loc, msg.replace("; its parameters", hint + "; its parameters", 1) if hint else msg)
                continue
            if key in seen:
                p.add(loc, f"is {key} again, which priors.{seen[key]} already sets; keep one")
                continue
            seen[key] = name
        if norm is _BAD:
            continue
        if model is not None:
            try:
                prior, hard = prior_from_spec(norm), model.spec(key)
                if isinstance(prior, Normal):
                    prior = prior.truncated(hard.hard_min, hard.hard_max)
                if prior.low < hard.hard_min or prior.high > hard.hard_max:
                    what = "value" if isinstance(prior, Frozen) else "prior"
                    p.add(loc, f"{what} {_show(norm)} extends outside the hard limits of {key}, "
                               f"[{hard.hard_min:g}, {hard.hard_max:g}] {hard.unit}".rstrip())
                    continue
            except XsbiError as exc:
                p.add(loc, str(exc))
                continue
        out[key] = norm
    if model is None:
        return None
    missing = [n for n in model.all_parameter_names if n not in seen]
    if missing:
        p.add("priors", f"no prior for parameter(s) {', '.join(missing)} of '{model.expression}'; "
                        "give each a prior, or freeze it with a number ({frozen: value})")
    elif len(p) == start and all("frozen" in s for s in out.values()):
        p.add("priors", "every parameter is frozen; give at least one a prior to infer")
    if len(p) > start:
        return None
    try:  # the authority: whatever JointPrior refuses, the run would refuse
        JointPrior(type(model)(model.expression, model.options), out)
    except XsbiError as exc:
        p.add("priors", str(exc))
        return None
    return out


_RESTRICTION = {
    "method": _choice(RESTRICTION_METHODS),
    "counts": _counts,
    "fraction": _real(0, 1),
    "rounds": _int(1),
    "simulations": _int(1),
    "stop_fraction": _real(0, 1),
    "coarse_simulations": _int(1),
    "coarse_quantile": _real(0, 1, hi_open=True),
}

_INFERENCE = {
    "method": _choice(INFERENCE_METHODS),
    "simulations": _int(1),
    "rounds": _int(1),
    "simulations_per_round": _int(1),
    "posterior_samples": _int(1),
    "density_estimator": _choice(DENSITY_ESTIMATORS),
    "hidden_features": _int(1),
    "num_transforms": _int(1),
    "ensemble": _int(1),
    "preprocessing": _choice(PREPROCESSING),
    "pca": _real(0, 1, allow_none=True),
    "training_batch_size": _int(1),
    "learning_rate": _real(0),
    "validation_fraction": _real(0, 1, hi_open=True),
    "stop_after_epochs": _int(1),
    "max_epochs": _int(1, allow_none=True),
    "test_spectra": _int(0),
    "importance_sampling": _bool,
    "device": _device,
    "exposure": _exposure,
    "background_level": _background_level,
    "mcmc": _sub(MCMCConfig, {"walkers": _int(2), "steps": _int(1, allow_none=True)}),
    "nested": _sub(NestedConfig, {"live_points": _int(2), "dlogz": _real(0), "frac_remain": _real(0, 1, hi_open=True),
                                  "max_ncalls": _int(1, allow_none=True)}),
    "fit": _sub(FitConfig, {"starts": _int(1)}),
}

_TOP = ("data", "model", "priors", "restriction", "inference", "seed", "plots")


# ================================================================================== overrides
def _override_value(v):
    """Command-line values are strings: read them as YAML (``5000`` -> int, ``null`` -> None,
    ``[0.3, 10]`` -> list); a string YAML cannot read stays a string."""
    if not isinstance(v, str):
        return v
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _same_parameter(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or ("." not in a and b.split(".", 1)[-1] == a) or ("." not in b and a.split(".", 1)[-1] == b)


def _apply_overrides(raw: dict, overrides: Mapping, p: _Problems) -> list[str]:
    """Set dotted keys in ``raw`` (in place); returns the dotted keys set."""
    done = []
    for dotted, value in overrides.items():
        value = _override_value(value)
        parts = str(dotted).strip().split(".")
        loc = f"override '{dotted}'"
        if not all(parts):
            p.add(loc, "not a dotted key such as inference.method")
            continue
        node, path = raw, []
        while True:
            if path == ["priors"]:
                rest = parts[len(path):]
                # parameter names contain a dot: priors.powerlaw.PhoIndex[.uniform]
                take = 2 if len(rest) >= 2 and rest[1].lower() not in PRIOR_KINDS else 1
                name, tail = ".".join(rest[:take]), rest[take:]
                if len(tail) > 1 or (tail and tail[0].lower() not in PRIOR_KINDS):
                    p.add(loc, "a prior override is priors.<component.parameter> or "
                               "priors.<component.parameter>.<uniform|loguniform|normal|frozen>")
                    break
                same = [k for k in node if _same_parameter(str(k), name)]
                for k in same[1:]:
                    del node[k]
                if value is None and not tail:  # priors.X=null removes the prior
                    node.pop(same[0], None) if same else None
                else:
                    node[same[0] if same else name] = {tail[0]: value} if tail else value
                done.append(".".join(parts))
                break
            key = parts[len(path)]
            path.append(key)
            if len(path) == len(parts):
                node[key] = value
                done.append(".".join(parts))
                break
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif path == ["model"] and isinstance(child, str):
                child = node[key] = {"expression": child}
            if not isinstance(child, dict):
                p.add(loc, f"cannot set it: '{'.'.join(path)}' is not a section (its value is {_show(child)})")
                break
            node = child
    return done


# ================================================================================== yaml
def _scan_lines(node, prefix, lines, dups):
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                continue
            loc = f"{prefix}.{k.value}" if prefix else k.value
            line = k.start_mark.line + 1
            if k.value in seen:
                dups.append((loc, seen[k.value], line))
            else:
                seen[k.value] = line
            lines.setdefault(loc, line)
            _scan_lines(v, loc, lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _scan_lines(item, f"{prefix}[{i}]", lines, dups)


def _read_yaml(path: Path):
    """-> (raw, lines, duplicate keys); raises ConfigError for unreadable files or bad YAML."""
    shown = Path(os.path.abspath(path))
    if not path.is_file():
        raise ConfigError([("", f"configuration file not found: {shown}")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"cannot read {shown}: {exc}")], source=path) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        msg = f"YAML syntax error at {where}{problem}" + (f" ({context})" if context else "")
        raise ConfigError([("", msg)], source=path) from None
    lines, dups = {}, []
    try:
        _scan_lines(yaml.compose(text, Loader=yaml.SafeLoader), "", lines, dups)
    except yaml.YAMLError:  # pragma: no cover - safe_load already parsed it
        pass
    return raw, lines, dups


# ================================================================================== entry point
def load_config(path_or_dict, base_dir=None, overrides=None) -> RunConfig:
    """Load and validate a run configuration.

    Parameters
    ----------
    path_or_dict : str, Path or mapping
        A YAML file (read with ``yaml.safe_load``), or the already-parsed mapping (for example
        a previous run's ``RunConfig.to_dict()``).
    base_dir : str or Path, optional
        Directory that relative data paths are resolved against.  Default: the YAML file's
        directory, or the current directory for a mapping.
    overrides : mapping, optional
        Dotted keys to values, applied before validation, e.g. ``{"inference.method": "mcmc",
        "inference.simulations": "5000"}``.  String values are read as YAML; relative paths
        given here resolve against the current directory.

    Raises
    ------
    ConfigError
        Listing every problem found, each with its location.
    """
    source, lines, dups = None, {}, []
    if isinstance(path_or_dict, Mapping):
        raw = copy.deepcopy(dict(path_or_dict))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    elif isinstance(path_or_dict, (str, os.PathLike)):
        source = Path(path_or_dict)
        raw, lines, dups = _read_yaml(source)
        base = Path(base_dir) if base_dir is not None else Path(os.path.abspath(source)).parent
    else:
        raise ConfigError([("", f"expected a YAML file path or a mapping, got {type(path_or_dict).__name__}")])
    base = Path(os.path.abspath(base.expanduser()))

    p = _Problems()
    for loc, first, again in dups:
        p.add(loc, f"given twice (lines {first} and {again}); keep one")
    if raw is None:
        raw = {}
        if not overrides:
            raise ConfigError([("", "the configuration is empty; it needs at least data, model and priors")],
                              source, lines)
    if not isinstance(raw, Mapping):
        raise ConfigError([("", f"the configuration must be a mapping of sections (data, model, priors, ...), "
                                f"got {_show(raw)}")], source, lines)
    raw = {str(k): v for k, v in raw.items()}

    overridden = _apply_overrides(raw, overrides, p) if overrides else []
    cwd = Path.cwd()

    def base_for(loc: str) -> Path:
        if any(loc == k or loc.startswith(k + ".") for k in overridden):
            return cwd
        return base

    _unknown_keys(raw, _TOP, "", p)
    data = _data(raw.get("data"), p, base_for)
    model_cfg, model = _model(raw.get("model"), p, base_for)
    priors = _priors(raw.get("priors"), model, p)  # without a model: structural checks only
    restriction = _section(raw.get("restriction"), "restriction", RestrictionConfig, _RESTRICTION, p)
    inference = _section(raw.get("inference"), "inference", InferenceConfig, _INFERENCE, p)
    seed = _int(0)(raw["seed"], "seed", p) if "seed" in raw else 0
    plots = _bool(raw["plots"], "plots", p) if "plots" in raw else True

    if inference.method == "mcmc" and priors is not None:
        n_free = sum("frozen" not in s for s in priors.values())
        if inference.mcmc.walkers < 2 * n_free:
            p.add("inference.mcmc.walkers",
                  f"needs at least 2 x {n_free} free parameters = {2 * n_free} walkers, got {inference.mcmc.walkers}")

    if inference.exposure is not None and inference.method == "snpe":
        p.add("inference.exposure", "applies to inference.method npe only (multi-round NPE is trained for one "
                                    "observation); remove it or use method npe")

    if inference.background_level is not None:
        if inference.method != "npe":
            p.add("inference.background_level", f"applies to inference.method npe only, not {inference.method}; "
                                                "remove it or use method npe")
        elif not inference.background_level[0] <= 1.0 <= inference.background_level[1]:
            # levels are factors on the observation's background, which the run's posterior reads
            p.add("inference.background_level", f"[{inference.background_level[0]:g}, "
                  f"{inference.background_level[1]:g}] must contain 1, the observation's own background")
        if data is not None and getattr(data, "background", None) is False:
            p.add("inference.background_level", "needs a background spectrum, and data.background is false")

    if len(p):
        raise ConfigError(p.items, source, lines)
    return RunConfig(data=data, model=model_cfg, priors=priors, restriction=restriction,
                     inference=inference, seed=seed, plots=plots)
