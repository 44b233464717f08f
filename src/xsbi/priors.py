"""Priors on spectral parameters: uniform, log-uniform, normal, frozen.

``LogUniform`` has the XSPEC/BXA meaning: uniform in log10(x) between its bounds, density
1 / (x ln(high/low)).  Every prior maps its support to the real line (:meth:`Prior.to_unconstrained`)
so optimisers and normalising flows can work without bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import special, stats

from .errors import PriorError


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _log_sigmoid(u):
    return -np.logaddexp(0.0, -u)


def _ppf_inside(prior, u, x):
    # Clipping keeps rounding near u = 0 or 1 from stepping outside the support, where the
    # density is zero; u outside [0, 1] has no quantile.
    return np.where((u >= 0) & (u <= 1), np.clip(x, prior.low, prior.high), np.nan)


def _ppf_scaled(prior, u):
    # Uniform and LogUniform: the CDF is the (log-)scaled position.
    u = np.asarray(u, dtype=float)
    return _ppf_inside(prior, u, prior._unscale(u))


class Prior:
    """A one-dimensional prior."""

    low: float = -math.inf
    high: float = math.inf

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, x) -> np.ndarray:
        raise NotImplementedError

    def ppf(self, u) -> np.ndarray:
        """Inverse CDF (quantile function), vectorised: maps ``u`` in [0, 1] to the support
        (NaN outside [0, 1]); the unit-cube transform of nested sampling."""
        raise NotImplementedError

    def record(self) -> dict:
        raise NotImplementedError

    # Bijection to R: logit of the (log-)scaled position for bounded supports.
    def _scale(self, x):
        return (np.asarray(x, dtype=float) - self.low) / (self.high - self.low)

    def _unscale(self, s):
        return self.low + s * (self.high - self.low)

    def to_unconstrained(self, x) -> np.ndarray:
        return _logit(np.clip(self._scale(x), 1e-300, 1 - 1e-16))

    def from_unconstrained(self, u) -> np.ndarray:
        return self._unscale(special.expit(np.asarray(u, dtype=float)))

    def log_abs_det_jacobian(self, u) -> np.ndarray:
        """log |dx/du| of :meth:`from_unconstrained`."""
        u = np.asarray(u, dtype=float)
        return math.log(self.high - self.low) + _log_sigmoid(u) + _log_sigmoid(-u)

    def __repr__(self) -> str:
        (kind, args), = self.record().items()
        return f"{type(self).__name__}({args})"


class Uniform(Prior):
    def __init__(self, low: float, high: float):
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise PriorError(f"uniform prior needs finite bounds with low < high; got [{low}, {high}]")
        self.low, self.high = float(low), float(high)

    def sample(self, n, rng):
        return rng.uniform(self.low, self.high, n)

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.low) & (x <= self.high)
        return np.where(inside, -math.log(self.high - self.low), -np.inf)

    def ppf(self, u):
        return _ppf_scaled(self, u)

    def record(self):
        return {"uniform": [self.low, self.high]}


class LogUniform(Prior):
    def __init__(self, low: float, high: float):
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
            raise PriorError(f"loguniform prior needs 0 < low < high; got [{low}, {high}]")
        self.low, self.high = float(low), float(high)
        self._span = math.log(self.high / self.low)

    def _scale(self, x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.asarray(x, dtype=float) / self.low) / self._span

    def _unscale(self, s):
        return self.low * np.exp(s * self._span)

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        return np.log(self.from_unconstrained(u)) + math.log(self._span) + _log_sigmoid(u) + _log_sigmoid(-u)

    def sample(self, n, rng):
        return self._unscale(rng.uniform(0.0, 1.0, n))

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.low) & (x <= self.high)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(inside, -np.log(x) - math.log(self._span), -np.inf)

    def ppf(self, u):
        return _ppf_scaled(self, u)  # log-linear: low * (high / low) ** u

    def record(self):
        return {"loguniform": [self.low, self.high]}


class Normal(Prior):
    """Gaussian prior, truncated to [low, high] (by default the parameter's hard limits)."""

    def __init__(self, mean: float, sigma: float, low: float = -math.inf, high: float = math.inf):
        if not (np.isfinite(mean) and np.isfinite(sigma) and sigma > 0):
            raise PriorError(f"normal prior needs a finite mean and sigma > 0; got ({mean}, {sigma})")
        if not low < high:
            raise PriorError(f"normal prior truncation needs low < high; got [{low}, {high}]")
        self.mean, self.sigma = float(mean), float(sigma)
        self.low, self.high = float(low), float(high)
        self._dist = stats.truncnorm((self.low - mean) / sigma, (self.high - mean) / sigma, loc=mean, scale=sigma)

    def truncated(self, low: float, high: float) -> "Normal":
        return Normal(self.mean, self.sigma, max(low, self.low), min(high, self.high))

    def sample(self, n, rng):
        return self._dist.rvs(size=n, random_state=rng)

    def log_prob(self, x):
        return self._dist.logpdf(np.asarray(x, dtype=float))

    def ppf(self, u):
        u = np.asarray(u, dtype=float)
        return _ppf_inside(self, u, self._dist.ppf(u))  # scipy's truncnorm: accurate in the tails

    # Unbounded sides need other bijections than the logit.
    def to_unconstrained(self, x):
        x = np.asarray(x, dtype=float)
        if np.isinf(self.low) and np.isinf(self.high):
            return (x - self.mean) / self.sigma
        if np.isinf(self.high):
            return np.log(x - self.low)
        if np.isinf(self.low):
            return -np.log(self.high - x)
        return super().to_unconstrained(x)

    def from_unconstrained(self, u):
        u = np.asarray(u, dtype=float)
        if np.isinf(self.low) and np.isinf(self.high):
            return self.mean + self.sigma * u
        if np.isinf(self.high):
            return self.low + np.exp(u)
        if np.isinf(self.low):
            return self.high - np.exp(-u)
        return super().from_unconstrained(u)

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        if np.isinf(self.low) and np.isinf(self.high):
            return np.full_like(u, math.log(self.sigma))
        if np.isinf(self.high):
            return u
        if np.isinf(self.low):
            return -u
        return super().log_abs_det_jacobian(u)

    def record(self):
        rec = [self.mean, self.sigma]
        if np.isfinite(self.low) or np.isfinite(self.high):
            rec += [self.low, self.high]
        return {"normal": rec}


class Frozen(Prior):
    """A parameter fixed at a value (a delta prior); it is not part of theta."""

    def __init__(self, value: float):
        if not np.isfinite(value):
            raise PriorError(f"frozen value must be finite; got {value}")
        self.value = self.low = self.high = float(value)

    def record(self):
        return {"frozen": self.value}


_KINDS = {"uniform": Uniform, "loguniform": LogUniform, "normal": Normal, "frozen": Frozen}


def prior_from_spec(spec) -> Prior:
    """Build a prior from ``{"uniform": [a, b]}``, ``{"loguniform": [a, b]}``,
    ``{"normal": [mean, sigma]}``, ``{"frozen": value}``, a bare number (frozen) or a Prior."""
    if isinstance(spec, Prior):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Frozen(spec)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise PriorError(
            f"cannot read prior {spec!r}: write one of {{uniform: [low, high]}}, {{loguniform: [low, high]}}, "
            "{normal: [mean, sigma]}, {frozen: value}"
        )
    (kind, args), = spec.items()
    cls = _KINDS.get(str(kind).lower())
    if cls is None:
        raise PriorError(f"unknown prior type '{kind}'; use one of {', '.join(_KINDS)}")
    try:
        return cls(args) if cls is Frozen else cls(*args)
    except TypeError:
        raise PriorError(f"prior {kind} got arguments {args!r}; see the prior types' documentation") from None


class JointPrior:
    """Independent priors on a model's parameters, in the model's free-parameter order.

    Frozen priors freeze the model parameter.  Every free parameter needs a prior, and every
    prior must lie inside its parameter's hard limits.
    """

    def __init__(self, model, priors: Mapping[str, object]):
        self.model = model
        resolved: dict[str, Prior] = {}
        for name, spec in priors.items():
            key = model._resolve(name)
            prior = prior_from_spec(spec)
            hard = model.spec(key)
            if isinstance(prior, Normal):
                prior = prior.truncated(hard.hard_min, hard.hard_max)
            if prior.low < hard.hard_min or prior.high > hard.hard_max:
                raise PriorError(
                    f"prior {prior.record()} on {key} extends outside its hard limits "
                    f"[{hard.hard_min}, {hard.hard_max}] {hard.unit}; narrow the prior"
                )
            if isinstance(prior, Frozen):
                model.freeze(key, prior.value)
            else:
                model.thaw(key)
            resolved[key] = prior
        missing = [n for n in model.parameter_names if n not in resolved]
        if missing:
            raise PriorError(
                f"no prior for free parameter(s) {', '.join(missing)}; give each a prior or freeze it ({{frozen: value}})"
            )
        self.priors = resolved
        self.names = model.parameter_names
        self._free = [resolved[n] for n in self.names]

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def low(self) -> np.ndarray:
        return np.array([p.low for p in self._free])

    @property
    def high(self) -> np.ndarray:
        return np.array([p.high for p in self._free])

    def sample(self, n: int, seed=None) -> np.ndarray:
        """(n, dim) draws; ``seed`` is an int or a numpy Generator."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return np.stack([p.sample(n, rng) for p in self._free], axis=1)

    def log_prob(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        return sum(p.log_prob(theta[:, i]) for i, p in enumerate(self._free))

    def ppf(self, u) -> np.ndarray:
        """(n, dim) points of the unit cube -> (n, dim) parameters, each column through its
        prior's inverse CDF (the priors are independent, so this maps uniform draws to prior draws)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != self.dim:
            raise ValueError(f"u must have shape (n, {self.dim}) with columns {self.names}; got {u.shape}")
        return np.stack([p.ppf(u[:, i]) for i, p in enumerate(self._free)], axis=1)

    def to_unconstrained(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        return np.stack([p.to_unconstrained(theta[:, i]) for i, p in enumerate(self._free)], axis=1)

    def from_unconstrained(self, u) -> np.ndarray:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        return np.stack([p.from_unconstrained(u[:, i]) for i, p in enumerate(self._free)], axis=1)

    def log_abs_det_jacobian(self, u) -> np.ndarray:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        return sum(p.log_abs_det_jacobian(u[:, i]) for i, p in enumerate(self._free))

    def record(self) -> dict:
        return {name: p.record() for name, p in self.priors.items()}
