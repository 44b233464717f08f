"""Maximum-likelihood fits: C-stat (W-stat) minimisation with covariance and delta-C errors.

The minimisation runs in the unconstrained coordinates ``u = prior.to_unconstrained(theta)``
(a logit of the position inside each prior's range), so bounded optimisers never step outside
the prior and unbounded ones (Nelder-Mead) need no penalty; the prior's *density* plays no
part: this is the maximum-likelihood estimate restricted to the prior's support, as an XSPEC
fit with hard/soft limits at the prior bounds.  The logit map flattens near a bound, where a
quasi-Newton step can stall although C still decreases inward; a fit that ends within 0.1% of a
uniform or log-uniform bound is therefore re-minimised with L-BFGS-B's own bounds on the
(log-)scaled position, then finished in the logit coordinates (found with the seed paper's
local-minima test, ``benchmarks/replicate_paper.py``: half of the single-start "outliers" at
a bound were such stalls).

Errors come in two flavours, as in XSPEC:

* ``covariance``: the inverse Hessian of ``-ln L = C/2`` at the best fit, in the physical
  parameters, by central finite differences (the Fisher-matrix / asymptotically Gaussian
  errors; XSPEC's ``covariance`` output);
* ``interval``: the ``delta-C = 1`` bounds of each parameter (Cash 1979; XSPEC's ``error``
  command with its default delta-stat of 1, i.e. 68.3% for one interesting parameter).  By
  default they are *profile* bounds, every other parameter being re-optimised at each trial
  value (Wilks' theorem applies to the profile); ``delta_c="conditional"`` gives the cheaper
  bounds with the others held at their best-fit values, which are narrower whenever
  parameters are correlated.

References
----------
Cash, W. 1979, ApJ 228, 939.
Lampton, M., Margon, B. & Bowyer, S. 1976, ApJ 208, 177 (delta-statistic confidence regions).
Byrd, R. H., Lu, P., Nocedal, J. & Zhu, C. 1995, SIAM J. Sci. Comput. 16, 1190 (L-BFGS-B).
Nelder, J. A. & Mead, R. 1965, Comput. J. 7, 308.
Lagarias, J. C., Reeds, J. A., Wright, M. H. & Wright, P. E. 1998, SIAM J. Optim. 9, 112.
XSPEC manual, "fit", "error" and Appendix B "Statistics in XSPEC".
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ..stats import cstat_goodness

__all__ = ["FitResult", "StartResult", "fit_cstat"]

_METHODS = ("L-BFGS-B", "Nelder-Mead")
# Stand-in for an impossible model (C = +inf): finite, so line searches back off instead of failing.
_BIG = 1e30
# Central-difference step in u; u is O(1) across the prior and C's roundoff is ~1e-12, so
# gradient noise stays ~1e-7, below the optimiser's tolerances.
_GRAD_STEP = 1e-5


@dataclass
class StartResult:
    """One local optimisation: its (physical) start and end, C-stat and cost."""

    start: np.ndarray
    theta: np.ndarray
    cstat: float
    nfev: int
    success: bool
    message: str


@dataclass
class FitResult:
    """Result of :func:`fit_cstat`.

    Attributes
    ----------
    names : list of str
        Parameter names (columns of theta).
    theta : ndarray (d,)
        Best fit, physical parameters.
    cstat : float
        Statistic at the best fit (C-stat, or W-stat with a background: see ``statistic``).
    statistic : {"cstat", "wstat"}
    expected, std, z : float
        Expected C-stat under the best-fit model, its standard deviation, and
        ``(cstat - expected) / std`` (Kaastra 2017, via :func:`xsbi.stats.cstat_goodness`).
        NaN for W-stat, for which no exact expectation is implemented.
    n_bins, dof : int
        Number of bins and ``n_bins - d``.
    covariance : ndarray (d, d)
        Inverse of the finite-difference Hessian of ``C/2`` in physical parameters; NaN when
        that Hessian is not positive definite, and in the rows and columns of parameters
        sitting exactly on a hard limit (those are left out, as XSPEC does for pegged ones).
    errors : ndarray (d,)
        ``sqrt(diag(covariance))``: 68% (1-sigma) Gaussian errors.
    interval : ndarray (d, 2)
        ``delta-C = 1`` lower and upper bounds (NaN when not computed).
    errors_delta_c : ndarray (d, 2)
        ``theta - lower`` and ``upper - theta`` (positive).
    interval_at_bound : ndarray (d, 2) of bool
        True where delta-C stayed below 1 up to the prior bound (the bound is returned).
    delta_c_method : {"profile", "conditional", "none"}
    at_bound : ndarray (d,) of bool
        Best-fit parameters on a prior bound (the Hessian there describes the likelihood's
        continuation beyond the prior and the covariance errors should not be trusted).
    nfev : int
        Parameter vectors evaluated in total (all starts, gradients, Hessian, intervals).
    starts : list of StartResult
        Every start's result, in start order, for local-minimum studies.
    method : str
    success : bool
        The best start's optimiser reported convergence.
    message : str
    wall_time : float
        Seconds for the whole call.
    """

    names: list
    theta: np.ndarray
    cstat: float
    statistic: str
    expected: float
    std: float
    z: float
    n_bins: int
    dof: int
    covariance: np.ndarray
    errors: np.ndarray
    interval: np.ndarray
    errors_delta_c: np.ndarray
    interval_at_bound: np.ndarray
    delta_c_method: str
    at_bound: np.ndarray
    nfev: int
    starts: list = field(repr=False)
    method: str = "L-BFGS-B"
    success: bool = True
    message: str = ""
    wall_time: float = 0.0

    @property
    def sigma_delta_c(self) -> np.ndarray:
        """Half-width of the delta-C = 1 interval, comparable to :attr:`errors`."""
        return 0.5 * (self.interval[:, 1] - self.interval[:, 0])

    def record(self) -> dict:
        """JSON-friendly summary."""
        params = {}
        for j, n in enumerate(self.names):
            params[n] = {
                "value": float(self.theta[j]),
                "error": float(self.errors[j]),
                "interval": [float(self.interval[j, 0]), float(self.interval[j, 1])],
                "at_bound": bool(self.at_bound[j]),
            }
        return {
            "parameters": params,
            "statistic": self.statistic,
            "value": float(self.cstat),
            "expected": float(self.expected),
            "std": float(self.std),
            "z": float(self.z),
            "n_bins": int(self.n_bins),
            "dof": int(self.dof),
            "delta_c_method": self.delta_c_method,
            "method": self.method,
            "n_starts": len(self.starts),
            "nfev": int(self.nfev),
            "success": bool(self.success),
            "wall_time_s": float(self.wall_time),
        }


class _Objective:
    """The statistic as a function of the unconstrained coordinates of the non-fixed parameters."""

    def __init__(self, likelihood, fixed: dict | None = None):
        self.lik = likelihood
        self.prior = likelihood.prior
        self.fixed = dict(fixed or {})
        self.free = [j for j in range(likelihood.dim) if j not in self.fixed]

    def theta(self, v) -> np.ndarray:
        v = np.atleast_2d(v)
        u = np.zeros((v.shape[0], self.lik.dim))
        u[:, self.free] = v
        th = self.prior.from_unconstrained(u)
        # Fixed values are set physically, not through the u round trip, so that they are exact.
        for j, t in self.fixed.items():
            th[:, j] = t
        return th

    def values(self, v) -> np.ndarray:
        c = self.lik.cstat(self.theta(v))
        return np.where(np.isfinite(c), c, _BIG)

    def fun(self, v) -> float:
        return float(self.values(v)[0])

    def fun_grad(self, v):
        # The 2k+1 stencil points go through the simulator in one batch, which costs about
        # the same as a single evaluation.
        k = v.size
        steps = _GRAD_STEP * np.eye(k)
        pts = np.vstack([v[None, :], v + steps, v - steps])
        c = self.values(pts)
        if c[0] >= _BIG:
            return _BIG, np.zeros(k)
        g = (c[1 : k + 1] - c[k + 1 :]) / (2 * _GRAD_STEP)
        return float(c[0]), np.where(np.isfinite(g) & (np.abs(g) < 1e20), g, 0.0)


def _minimize(obj: _Objective, v0: np.ndarray, method: str, maxiter: int):
    if method == "L-BFGS-B":
        res = optimize.minimize(
            obj.fun_grad, v0, jac=True, method="L-BFGS-B",
            options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-6, "maxls": 50},
        )
    else:
        k = v0.size
        # A simplex spanning ~half a unit of u explores a good part of the prior at first,
        # where scipy's default (5% of |u|) collapses for u ~ 0.
        simplex = np.vstack([v0, v0 + 0.5 * np.eye(k)])
        opts = {"maxiter": maxiter * 20, "maxfev": maxiter * 40, "xatol": 1e-7, "fatol": 1e-9, "adaptive": k > 2}
        res = optimize.minimize(obj.fun, v0, method="Nelder-Mead", options={**opts, "initial_simplex": simplex})
        # A simplex can collapse before reaching the minimum (Lagarias et al. 1998); restarting
        # from its best vertex with a fresh simplex is the standard remedy.
        for _ in range(5):
            again = optimize.minimize(obj.fun, res.x, method="Nelder-Mead",
                                      options={**opts, "initial_simplex": np.vstack([res.x, res.x + 0.05 * np.eye(k)])})
            improved = again.fun < res.fun - 1e-8
            if again.fun <= res.fun:
                res = again
            if not improved:
                break
    return np.asarray(res.x, dtype=float), float(res.fun), bool(res.success), str(res.message)


def _polish_at_bounds(lik, theta: np.ndarray, c: float, maxiter: int):
    """Re-minimise a fit that ended at a prior bound with bounds instead of the logit map.

    In the logit coordinates the gradient of C vanishes at a bound even when C decreases
    inward, so L-BFGS-B can stall there.  This restarts from ``theta`` with L-BFGS-B on the
    (log-)scaled positions ``s = _scale(theta)`` in [0, 1], whose gradient does not vanish,
    and keeps the result if it lowers C.  Only two-sided uniform / log-uniform parameters are
    moved this way; returns (theta, C, nfev-free flag).
    """
    free = lik.prior._free
    movable = [j for j, p in enumerate(free) if np.isfinite(p.low) and np.isfinite(p.high)
               and hasattr(p, "_unscale") and type(p).__name__ in ("Uniform", "LogUniform")]
    if not movable:
        return theta, c, False
    s0 = np.array([float(free[j]._scale(theta[j])) for j in movable])
    if not np.any((s0 < 1e-3) | (s0 > 1 - 1e-3)):
        return theta, c, False

    def th(sv):
        sv = np.atleast_2d(sv)
        out = np.repeat(theta[None, :], sv.shape[0], axis=0)
        for i, j in enumerate(movable):
            out[:, j] = np.clip(free[j]._unscale(np.clip(sv[:, i], 0.0, 1.0)), free[j].low, free[j].high)
        return out

    h = 1e-7

    def fun_grad(sv):
        k = sv.size
        up = np.minimum(sv + h, 1.0)
        dn = np.maximum(sv - h, 0.0)
        pts = np.vstack([sv[None, :]] + [np.where(np.arange(k) == i, up, sv) for i in range(k)]
                        + [np.where(np.arange(k) == i, dn, sv) for i in range(k)])
        vals = lik.cstat(th(pts))
        vals = np.where(np.isfinite(vals), vals, _BIG)
        g = (vals[1:k + 1] - vals[k + 1:]) / np.maximum(up - dn, 1e-300)
        return float(vals[0]), np.where(np.isfinite(g), g, 0.0)

    res = optimize.minimize(fun_grad, s0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(movable),
                            options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-8, "maxls": 50})
    cand = th(res.x)[0]
    c_new = float(lik.cstat(cand)[0])
    if c_new < c - 1e-9:
        return cand, c_new, True
    return theta, c, False


def _hard_limits(likelihood):
    specs = [likelihood.model.spec(n) for n in likelihood.names]
    return np.array([s.hard_min for s in specs], float), np.array([s.hard_max for s in specs], float)


def _hessian(likelihood, theta: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of C/2 in physical parameters (one batched evaluation).

    A parameter sitting exactly on a hard limit has no two-sided stencil; its row and column
    are NaN (as XSPEC leaves pegged parameters out of the covariance).
    """
    d = theta.size
    lo, hi = _hard_limits(likelihood)
    # Stay inside the hard limits (the prior bounds may be crossed: see FitResult.at_bound).
    h = np.minimum(steps, 0.5 * np.minimum(theta - lo, hi - theta))
    usable = h > 0
    h = np.where(usable, h, 0.0)
    pts = [theta]
    for i in range(d):
        for s in (1, -1):
            p = theta.copy()
            p[i] += s * h[i]
            pts.append(p)
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    for i, j in pairs:
        for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            p = theta.copy()
            p[i] += si * h[i]
            p[j] += sj * h[j]
            pts.append(p)
    f = 0.5 * likelihood.cstat_unbounded(np.array(pts))
    H = np.full((d, d), np.nan)
    f0 = f[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(d):
            H[i, i] = (f[1 + 2 * i] - 2 * f0 + f[2 + 2 * i]) / h[i] ** 2
        base = 1 + 2 * d
        for k, (i, j) in enumerate(pairs):
            fpp, fpm, fmp, fmm = f[base + 4 * k : base + 4 * k + 4]
            H[i, j] = H[j, i] = (fpp - fpm - fmp + fmm) / (4 * h[i] * h[j])
    H[~usable, :] = np.nan
    H[:, ~usable] = np.nan
    return H


def _invert(H: np.ndarray) -> np.ndarray | None:
    """Inverse of the finite block of H (parameters with NaN rows get NaN); None if not PD."""
    keep = np.isfinite(np.diag(H))
    block = H[np.ix_(keep, keep)]
    if not keep.any() or not np.all(np.isfinite(block)):
        return None
    try:
        L = np.linalg.cholesky(block)
    except np.linalg.LinAlgError:
        return None
    Linv = np.linalg.inv(L)
    cov = np.full(H.shape, np.nan)
    cov[np.ix_(keep, keep)] = Linv.T @ Linv
    return cov


def _covariance(likelihood, theta: np.ndarray) -> np.ndarray:
    """Inverse Hessian of C/2 (= -ln L + const) at ``theta``.

    Two passes: steps of 1e-3 of each parameter's scale locate the curvature, then the
    Hessian is recomputed with steps of 0.2 sigma, where C is quadratic to high accuracy and
    the C differences (~0.02) dwarf its roundoff.
    """
    width = np.where(np.isfinite(likelihood.high - likelihood.low), likelihood.high - likelihood.low, 1.0)
    scale = np.maximum(np.abs(theta), 1e-3 * width)
    cov = _invert(_hessian(likelihood, theta, 1e-3 * scale))
    if cov is None:
        return np.full((theta.size, theta.size), np.nan)
    sigma = np.sqrt(np.diag(cov))
    steps = np.where(np.isfinite(sigma), np.maximum(0.2 * sigma, 1e-10 * scale), 1e-3 * scale)
    cov2 = _invert(_hessian(likelihood, theta, steps))
    return cov if cov2 is None else cov2


class _DeltaC:
    """delta-C = 1 bounds, profile or conditional, for one best fit."""

    def __init__(self, likelihood, theta, c_min, cov, profile: bool, maxiter: int):
        self.lik = likelihood
        self.theta = theta
        self.c_min = c_min
        self.cov = cov
        self.profile = profile and likelihood.dim > 1
        self.maxiter = maxiter
        self.lowest = c_min
        self.lowest_theta = theta

    def _delta(self, j: int, t: float) -> float:
        lik, th = self.lik, self.theta
        if not self.profile:
            p = th.copy()
            p[j] = t
            c, best = float(lik.cstat(p)[0]), p
        else:
            obj = _Objective(lik, {j: t})
            start = th.copy()
            col = self.cov[:, j]
            if np.all(np.isfinite(col)):
                # The Gaussian conditional mean of the others given theta_j = t: an excellent
                # warm start near the best fit, a reasonable one further out.
                start = th + col / col[j] * (t - th[j])
            start[j] = t
            width = lik.high - lik.low
            pad = np.where(np.isfinite(width), 1e-9 * width, 0.0)
            start = np.clip(start, lik.low + pad, lik.high - pad)
            if not np.isfinite(lik.cstat(start)[0]):
                start = th.copy()
                start[j] = t
            v0 = lik.prior.to_unconstrained(start)[0, obj.free]
            v, c, _, _ = _minimize(obj, v0, "L-BFGS-B", self.maxiter)
            best = obj.theta(v)[0]
        if c < self.lowest:
            self.lowest, self.lowest_theta = c, best
        return c - self.c_min

    def bound(self, j: int, side: int, sigma: float) -> tuple[float, bool]:
        lik, th = self.lik, self.theta
        edge = lik.low[j] if side < 0 else lik.high[j]
        if side * (edge - th[j]) <= 0:
            return float(th[j]), True
        if not (np.isfinite(sigma) and sigma > 0):
            sigma = 1e-3 * max(abs(th[j]), 1e-3 * (abs(edge - th[j]) if np.isfinite(edge) else 1.0))
        inner = th[j]
        step = sigma
        for _ in range(60):
            t = th[j] + side * step
            hit_edge = side * (t - edge) >= 0
            if hit_edge:
                t = edge
            g = self._delta(j, t) - 1.0
            if g >= 0:
                break
            if hit_edge:
                return float(edge), True
            inner, step = t, 2 * step
        else:
            return float(t), True
        if g == 0:
            return float(t), False
        root = optimize.brentq(lambda x: self._delta(j, x) - 1.0, min(inner, t), max(inner, t),
                               xtol=1e-4 * sigma, rtol=1e-12)
        return float(root), False


# Starts are moved at most this far into the unconstrained line: at |u| >> 1 the logit map
# flattens (d theta / d u ~ e^-|u|) and a start on a prior bound would have zero gradient.
_U_START_MAX = 7.0


def _check_starts(likelihood, starts) -> np.ndarray:
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if starts.shape[1] != likelihood.dim:
        raise ValueError(f"starts must have shape (k, {likelihood.dim}) with columns {likelihood.names}")
    bad = ~likelihood.in_support(starts)
    if bad.any():
        raise ValueError(f"start(s) {np.flatnonzero(bad).tolist()} lie outside the prior's support")
    return starts


def fit_cstat(likelihood, starts=None, n_starts: int = 1, seed=0, method: str = "L-BFGS-B",
              delta_c: str | None = "profile", maxiter: int = 1000) -> FitResult:
    """Minimise the C-stat (W-stat with a background) and estimate 68% errors.

    Parameters
    ----------
    likelihood : PoissonLikelihood
    starts : array_like (k, d), optional
        Physical starting points (inside the prior's support).  Overrides ``n_starts``.
        On a two-sided prior, a start within ~1e-3 of the range from a bound is moved to that
        distance (``|u| <= 7`` in the logit coordinate), where the optimiser still has a
        gradient; ``StartResult.start`` records the start as given.
    n_starts : int
        Without ``starts``: number of starts drawn from the prior with ``seed``.
    seed : int or numpy.random.Generator
        Seeds the prior draws; each start then runs a deterministic optimiser, so the whole
        fit is reproducible.
    method : {"L-BFGS-B", "Nelder-Mead"}
        Local optimiser, run in the unconstrained coordinates.  L-BFGS-B (Byrd et al. 1995)
        uses central-difference gradients evaluated as one batch per iterate.  The inner fits
        of profile intervals always use L-BFGS-B.
    delta_c : {"profile", "conditional", None}
        How to compute the delta-C = 1 intervals (see the module docstring); None skips them
        (as run_mcmc does, which needs only the covariance).
    maxiter : int
        Iteration limit per local optimisation.

    Returns
    -------
    FitResult

    Notes
    -----
    The covariance is ``H^{-1}`` with ``H`` the Hessian of ``C/2 = -ln L + const`` in the
    physical parameters, from central differences with steps of 0.2 sigma (after a first pass
    locating sigma).  It equals the delta-C = 1 half-widths when the likelihood is Gaussian in
    the parameters; their disagreement measures non-Gaussianity.  If a lower statistic turns
    up while computing intervals, the fit was not at the global minimum: a warning is issued
    and the lower point is reported in the warning (refit from it).
    """
    with likelihood.limit_threads():
        return _fit_cstat(likelihood, starts, n_starts, seed, method, delta_c, maxiter)


def _fit_cstat(likelihood, starts, n_starts, seed, method, delta_c, maxiter) -> FitResult:
    t0 = time.perf_counter()
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    if delta_c not in ("profile", "conditional", None):
        raise ValueError(f"delta_c must be 'profile', 'conditional' or None; got {delta_c!r}")
    lik = likelihood
    n0 = lik.n_evaluations
    if starts is None:
        if n_starts < 1:
            raise ValueError("n_starts must be >= 1")
        starts = lik.prior.sample(int(n_starts), seed=seed)
    starts = _check_starts(lik, starts)

    obj = _Objective(lik)
    # only the logit map of a two-sided prior flattens; other maps are left alone
    bounded = np.isfinite(lik.low) & np.isfinite(lik.high)
    results: list[StartResult] = []
    for s in starts:
        n_before = lik.n_evaluations
        u0 = lik.prior.to_unconstrained(s)[0]
        u0 = np.where(bounded, np.clip(u0, -_U_START_MAX, _U_START_MAX), u0)
        v, c, ok, msg = _minimize(obj, u0, method, maxiter)
        theta = obj.theta(v)[0]
        c = float(lik.cstat(theta)[0])
        theta, c, moved = _polish_at_bounds(lik, theta, c, maxiter)
        if moved:  # it left the bound: finish in the logit coordinates from there
            v2, _, ok, msg = _minimize(obj, lik.prior.to_unconstrained(theta)[0], method, maxiter)
            t2 = obj.theta(v2)[0]
            c2 = float(lik.cstat(t2)[0])
            if c2 < c:
                theta, c = t2, c2
        results.append(StartResult(start=s.copy(), theta=theta, cstat=c, nfev=lik.n_evaluations - n_before,
                                   success=ok, message=msg))
    best = min(range(len(results)), key=lambda i: results[i].cstat)
    bres = results[best]
    theta, c_min = bres.theta.copy(), bres.cstat
    d = lik.dim

    width = lik.high - lik.low
    tol = np.where(np.isfinite(width), 1e-6 * width, 0.0)
    at_bound = (theta - lik.low <= tol) | (lik.high - theta <= tol)

    cov = _covariance(lik, theta)
    errors = np.sqrt(np.diag(cov))

    interval = np.full((d, 2), np.nan)
    interval_at_bound = np.zeros((d, 2), dtype=bool)
    if delta_c is not None:
        dc = _DeltaC(lik, theta, c_min, cov, delta_c == "profile", maxiter)
        for j in range(d):
            for k, side in enumerate((-1, 1)):
                interval[j, k], interval_at_bound[j, k] = dc.bound(j, side, errors[j])
        if dc.lowest < c_min - 1e-3:
            warnings.warn(
                f"the delta-C search found a statistic {dc.lowest:.4f} below the best fit's {c_min:.4f} "
                f"at {dict(zip(lik.names, np.round(dc.lowest_theta, 6).tolist()))}: the fit missed the "
                "minimum; refit from there (starts=...) or use more starts",
                RuntimeWarning, stacklevel=2,
            )
    errors_delta_c = np.column_stack([theta - interval[:, 0], interval[:, 1] - theta])

    if lik.statistic == "cstat":
        g = cstat_goodness(lik.counts, lik.expected_counts(theta)[0])
        expected, std, z = g.expected, g.std, g.z
    else:
        expected = std = z = float("nan")

    return FitResult(
        names=list(lik.names), theta=theta, cstat=c_min, statistic=lik.statistic,
        expected=float(expected), std=float(std), z=float(z), n_bins=lik.n_bins, dof=lik.n_bins - d,
        covariance=cov, errors=errors, interval=interval, errors_delta_c=errors_delta_c,
        interval_at_bound=interval_at_bound, delta_c_method=delta_c or "none", at_bound=at_bound,
        nfev=lik.n_evaluations - n0, starts=results, method=method, success=bres.success,
        message=bres.message, wall_time=time.perf_counter() - t0,
    )
