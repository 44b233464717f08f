"""The exact Poisson likelihood of an observed spectrum, in XSPEC's C-stat / W-stat form.

For observed counts ``S_i`` and expected counts ``mu_i(theta)`` the Poisson log-likelihood is
``ln L = sum_i [S_i ln mu_i - mu_i - ln S_i!]``, and XSPEC's C-statistic (Cash 1979, in the
Stirling form of the XSPEC manual, Appendix B) is

.. math::

    C = 2 \\sum_i [\\mu_i - S_i + S_i \\ln(S_i / \\mu_i)] = -2 \\ln L + 2 K,
    \\qquad K = \\sum_i [S_i \\ln S_i - S_i - \\ln S_i!].

``K`` depends on the data only, so ``-C/2`` is the exact log-likelihood up to a constant:
maxima, likelihood ratios, posterior shapes and MCMC samples are those of the exact
likelihood.  :attr:`PoissonLikelihood.data_log_constant` holds ``K`` for the rare uses
(evidences, comparisons across data sets) that need the normalised value.

With a background spectrum the statistic is XSPEC's W-statistic (Wachter, Leach & Kellogg
1979): the joint Poisson likelihood of source and background counts with one background
level per bin *profiled out* (maximised), so ``-W/2`` is the profile log-likelihood, up to the
constant ``K(S) + K(B)``, not a marginal likelihood over the background.

References
----------
Cash, W. 1979, ApJ 228, 939.
Wachter, K., Leach, R. & Kellogg, E. 1979, ApJ 230, 274.
XSPEC manual, Appendix B "Statistics in XSPEC".
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from scipy import special

from ..simulate import Simulator
from ..stats import cstat as _cstat
from ..stats import wstat as _wstat

__all__ = ["PoissonLikelihood", "limit_threads", "summarize", "weighted_quantiles"]


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Temporarily cap torch's intra-op threads (process-wide; restored on exit)."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def limit_threads(n: int | None = 1):
    """Cap torch's and the BLAS libraries' threads to ``n`` inside the block (None: no cap).

    Optimisers and samplers make thousands of sub-millisecond calls (torch model
    evaluations, and BLAS calls inside scipy's L-BFGS-B) that cannot gain from threads, and
    on a CPU shared with other processes the threads' synchronisation made each call 30-150
    times slower (measured on a 2-core machine: a 0.3 ms likelihood call took 30-50 ms, and
    a 3-parameter L-BFGS-B minimisation of a quadratic 47 ms instead of 0.3 ms).  BLAS
    threads are capped with ``threadpoolctl`` when it is installed.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_torch_threads(n))
        if n is not None:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - optional dependency
                pass
            else:
                stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        yield


def _data_constant(counts: np.ndarray) -> float:
    return float(np.sum(special.xlogy(counts, counts) - counts - special.gammaln(counts + 1.0)))


class PoissonLikelihood:
    """Exact (C-stat or W-stat) likelihood and posterior of one spectrum, batched over theta.

    Parameters
    ----------
    spectrum : xsbi.data.Spectrum
        The observed spectrum (grouped and noticed as it should be fitted).  When it has a
        background (``spectrum.background_counts`` is not None) the W-statistic is used, with
        ``spectrum.background_ratio`` scaling background-region counts to the source region.
    model : xsbi.Model
        The model; its free parameters, in ``model.parameter_names`` order, are the columns
        of theta.
    prior : xsbi.JointPrior
        Prior on the free parameters; its support bounds the likelihood (``-inf`` outside).
    dtype : torch.dtype
        Precision of the forward model.  float64 (the default) keeps C-stat differences of
        ~1e-6 meaningful, which optimisers and finite-difference Hessians rely on.
    device : str or torch.device
        Where the forward model runs.
    num_threads : int or None
        Torch CPU threads used while evaluating the model (restored afterwards); None keeps
        torch's setting.  The default, 1, suits the small batches (one to a few tens of
        parameter vectors) of optimisers and samplers: their operations are too short to gain
        from threads, and when the CPU is shared with other processes torch's thread
        synchronisation made each call ~100 times slower (30-50 ms instead of 0.3 ms, measured
        on a 2-core machine).  :func:`fit_cstat` and :func:`run_mcmc` also cap the BLAS
        threads to this number for their duration (see :func:`limit_threads`).

    Attributes
    ----------
    names : list of str
        Free-parameter names (theta columns).
    statistic : {"cstat", "wstat"}
    counts, background_counts, background_ratio : numpy.ndarray or None
    data_log_constant : float
        ``K`` such that the normalised Poisson (profile) log-likelihood is
        ``log_likelihood(theta) + data_log_constant``.
    n_evaluations : int
        Parameter vectors at which the model has been evaluated so far (for counting
        function evaluations of optimisers and samplers).

    Notes
    -----
    All methods take theta of shape (N, d) (a single (d,) vector is promoted to (1, d)) and
    return arrays of shape (N,); the model is evaluated for all in-support rows in one
    batched :meth:`xsbi.Simulator.expected_counts` call.
    """

    def __init__(self, spectrum, model, prior, dtype=torch.float64, device="cpu", num_threads: int | None = 1):
        self.spectrum = spectrum
        self.model = model
        self.prior = prior
        if list(prior.names) != list(model.parameter_names):
            raise ValueError(
                f"the prior's parameters {list(prior.names)} differ from the model's free parameters "
                f"{list(model.parameter_names)}; build the JointPrior on this model"
            )
        self.names = list(prior.names)
        self.simulator = Simulator(model, spectrum, device=device, dtype=dtype)
        self.num_threads = num_threads if self.simulator.device.type == "cpu" else None
        self.counts = np.asarray(spectrum.counts, dtype=np.float64)
        bkg = getattr(spectrum, "background_counts", None)
        self.background_counts = None if bkg is None else np.asarray(bkg, dtype=np.float64)
        self.background_ratio = None
        ones = np.ones_like(self.counts)
        if self.background_counts is None:
            self.statistic = "cstat"
            _cstat(self.counts, ones)  # validates the counts once, so the hot path can skip it
            self.data_log_constant = _data_constant(self.counts)
        else:
            self.statistic = "wstat"
            self.background_ratio = np.broadcast_to(
                np.asarray(spectrum.background_ratio, dtype=np.float64), self.counts.shape
            ).copy()
            _wstat(self.counts, self.background_counts, ones, self.background_ratio)
            self.data_log_constant = _data_constant(self.counts) + _data_constant(self.background_counts)
        self.n_evaluations = 0

    # --- basic properties -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def n_bins(self) -> int:
        return self.counts.size

    @property
    def low(self) -> np.ndarray:
        return self.prior.low

    @property
    def high(self) -> np.ndarray:
        return self.prior.high

    def limit_threads(self):
        """Context manager capping torch and BLAS threads to :attr:`num_threads`."""
        return limit_threads(self.num_threads)

    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim == 1:
            theta = theta[None, :]
        if theta.ndim != 2 or theta.shape[1] != self.dim:
            raise ValueError(f"theta must have shape (N, {self.dim}) with columns {self.names}; got {theta.shape}")
        return theta

    def in_support(self, theta) -> np.ndarray:
        """Boolean (N,): finite rows inside the prior's support."""
        theta = self._theta(theta)
        ok = np.all(np.isfinite(theta), axis=1)
        lp = np.full(theta.shape[0], -np.inf)
        if ok.any():
            lp[ok] = self.prior.log_prob(theta[ok])
        return ok & np.isfinite(lp)

    # --- model and statistic ------------------------------------------------------------------
    def expected_counts(self, theta) -> np.ndarray:
        """Expected source counts per bin, (N, n_bins); theta must lie within the hard limits."""
        theta = self._theta(theta)
        self.n_evaluations += theta.shape[0]
        with _torch_threads(self.num_threads):
            return self.simulator.expected_counts(theta)

    def _statistic(self, mu: np.ndarray) -> np.ndarray:
        if self.statistic == "cstat":
            c = _cstat(self.counts, mu, validate=False)
        else:
            c = _wstat(self.counts, self.background_counts, mu, self.background_ratio, validate=False)
        # A NaN model is as impossible as a negative one; +inf keeps samplers and optimisers sane.
        return np.where(np.isnan(c), np.inf, c)

    def cstat_unbounded(self, theta) -> np.ndarray:
        """The statistic without the prior-support check (only the parameters' hard limits).

        Finite-difference stencils around a best fit on a prior bound need the likelihood just
        outside the prior; everything else should use :meth:`cstat`.
        """
        return self._statistic(self.expected_counts(theta))

    def cstat(self, theta) -> np.ndarray:
        """XSPEC's C-stat (W-stat with a background), (N,); ``+inf`` outside the prior support."""
        theta = self._theta(theta)
        inside = self.in_support(theta)
        out = np.full(theta.shape[0], np.inf)
        if inside.all():
            out[:] = self.cstat_unbounded(theta)
        elif inside.any():
            out[inside] = self.cstat_unbounded(theta[inside])
        return out

    def log_likelihood(self, theta) -> np.ndarray:
        """``-C/2`` (``-W/2`` with a background), (N,); ``-inf`` outside the prior support.

        Equal to the Poisson log-likelihood minus :attr:`data_log_constant`.
        """
        return -0.5 * self.cstat(theta)

    def log_posterior(self, theta) -> np.ndarray:
        """Unnormalised log-posterior ``log_likelihood + prior.log_prob``, (N,)."""
        theta = self._theta(theta)
        inside = self.in_support(theta)
        out = np.full(theta.shape[0], -np.inf)
        if inside.any():
            t = theta[inside]
            out[inside] = -0.5 * self.cstat_unbounded(t) + self.prior.log_prob(t)
        return out

    __call__ = log_posterior

    def log_posterior_unconstrained(self, u) -> np.ndarray:
        """Log-density of ``u = prior.to_unconstrained(theta)`` on R^d, (N,).

        ``log_posterior(prior.from_unconstrained(u)) + log|d theta / d u|``, the density a
        sampler working on the real line must target.
        """
        u = self._theta(u)
        return self.log_posterior(self.prior.from_unconstrained(u)) + self.prior.log_abs_det_jacobian(u)

    def record(self) -> dict:
        return {
            "statistic": self.statistic,
            "n_bins": self.n_bins,
            "parameters": self.names,
            "prior": self.prior.record(),
            "simulator": self.simulator.record(),
        }

    def __repr__(self) -> str:
        return f"PoissonLikelihood({self.statistic}, {self.n_bins} bins, parameters={self.names})"


def weighted_quantiles(x, weights, q) -> np.ndarray:
    """Quantiles ``q`` (k,) of weighted samples ``x`` (m, d): (k, d).

    The weighted empirical distribution function, interpolated between the midpoints of the
    samples' weights (for equal weights, numpy's ``'hazen'`` quantiles).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if x.ndim != 2 or w.shape != (x.shape[0],):
        raise ValueError(f"weighted_quantiles: samples (m, d) and weights (m,), got {x.shape} and {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weighted_quantiles: weights must be finite, non-negative and not all zero")
    out = np.empty((q.size, x.shape[1]))
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        xs, ws = x[order, j], w[order]
        keep = ws > 0
        xs, ws = xs[keep], ws[keep]
        cdf = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
        out[:, j] = np.interp(q, cdf, xs)
    return out


def summarize(samples, names, weights=None) -> dict[str, dict[str, float]]:
    """Per-parameter median, 16% and 84% quantiles, mean and standard deviation.

    Parameters
    ----------
    samples : array_like, shape (n, d)
    names : sequence of str, length d
    weights : array_like, shape (n,), optional
        Non-negative sample weights (importance or nested-sampling weights); quantiles are
        then those of the weighted empirical distribution (inverse of its midpoint CDF,
        :func:`weighted_quantiles`).

    Returns
    -------
    dict
        ``{name: {"median", "q16", "q84", "mean", "std"}}`` of floats.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[1] != len(names):
        raise ValueError(f"samples have {x.shape[1]} columns but {len(names)} names were given")
    w = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    out = {}
    for j, name in enumerate(names):
        col = x[:, j]
        if w is None:
            q16, med, q84 = np.quantile(col, [0.16, 0.5, 0.84])
            mean, std = col.mean(), col.std(ddof=1) if col.size > 1 else 0.0
        else:
            q16, med, q84 = weighted_quantiles(col[:, None], w, [0.16, 0.5, 0.84])[:, 0]
            mean = np.sum(w * col)
            std = np.sqrt(np.sum(w * (col - mean) ** 2))
        out[name] = {"median": float(med), "q16": float(q16), "q84": float(q84), "mean": float(mean), "std": float(std)}
    return out
