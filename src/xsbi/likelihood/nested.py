"""Nested sampling with the exact likelihood: UltraNest's reactive nested sampler, as BXA uses.

Nested sampling (Skilling 2004, 2006) integrates the evidence ``Z = int L(theta) pi(theta)
dtheta`` by shrinking a population of "live points" drawn from the prior towards higher
likelihood; the discarded points, weighted by the prior volume they stand for, are also
posterior samples.  UltraNest (Buchner 2021) draws new points with MLFriends (Buchner 2016,
2019), a region built from bootstrapped ellipsoids around the live points, and its reactive
variant adds live points where the evidence, the posterior or the effective sample size need
them, until:

* the bootstrapped uncertainty of ``ln Z`` is below ``dlogz``,
* the fraction of the integral left in the live points is below ``frac_remain``,
* the posterior is known to ``dKL = 0.5`` nat and has an effective sample size of 400
  (UltraNest's defaults, kept here), or ``max_ncalls`` likelihood evaluations are spent.

Sampling works in the unit cube: column ``j`` of ``u`` maps to the free parameter ``j``
through its prior's inverse CDF (:meth:`xsbi.JointPrior.ppf`: linear for ``uniform``,
log-linear for ``loguniform``, the truncated normal's quantile function for ``normal``), so
the prior density is built into the transform and the sampler sees only the likelihood.
Frozen parameters are not part of theta.

The likelihood is the *normalised* Poisson likelihood,
``ln L = -C/2 + K`` with ``K`` = :attr:`PoissonLikelihood.data_log_constant`, so that ``ln Z``
is the properly normalised Poisson evidence ``ln p(counts | model)``, comparable across data
sets and with BXA/XSPEC's values of the same likelihood.  With a background spectrum it is
``-W/2 + K(S) + K(B)``: the W-statistic's *profile* likelihood (one background level per bin
maximised out), so ``ln Z`` is then an evidence of that profile likelihood, not a marginal
over the background.  :meth:`NestedResult.record` also gives ``logz_cstat = ln Z - K``, the
C-stat convention of the importance-sampling evidence in ``summary.json``.

Seeding: UltraNest draws from numpy's *global* random state (``np.random``).  :func:`run_nested`
seeds it with ``np.random.seed(seed)`` for the duration of the run and restores the previous
global state afterwards, so the same seed gives identical samples and the caller's global
random stream is left as it was.

References
----------
Skilling, J. 2004, AIP Conf. Proc. 735, 395 (nested sampling).
Skilling, J. 2006, Bayesian Analysis 1, 833.
Buchner, J. 2016, Statistics and Computing 26, 383 (MLFriends).
Buchner, J. 2019, PASP 131, 108005 (collaborative nested sampling; MLFriends with bootstrapping).
Buchner, J. 2021, JOSS 6, 3001 (UltraNest).
Buchner, J. et al. 2014, A&A 564, A125 (BXA: nested sampling for X-ray spectra).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .poisson import limit_threads, summarize

__all__ = ["NestedResult", "run_nested"]

# UltraNest's own choice for a likelihood it cannot use (its ``make_safe`` wrapper): a very low
# but finite value, so that such points are simply the first to be discarded.
_LOW_LOGL = -1e100


@dataclass
class NestedResult:
    """Result of :func:`run_nested`.

    Attributes
    ----------
    samples : ndarray (n, d)
        Equally weighted posterior samples of the physical parameters (UltraNest's
        ``resample_equal`` of the weighted samples).
    names : list of str
    logz, logz_err : float
        Natural log of the normalised Poisson evidence and its 1-sigma uncertainty
        (UltraNest's ``logz`` and ``logzerr``: bootstrap and tail errors in quadrature).
    data_log_constant : float
        ``K`` added to ``-C/2``; ``logz - K`` is the evidence in the C-stat convention.
    ncall : int
        Likelihood evaluations.
    n_live : int
        Minimum number of live points asked for (UltraNest raises it to ``sqrt(1000) / dlogz``
        when smaller, and adds points where its strategies need them).
    niter : int
        Nested-sampling iterations (dead points).
    ess : float
        Effective sample size of the weighted samples.
    information : float
        Information gain ``H`` (nat) from prior to posterior.
    converged : bool
        The run ended by its own termination criteria (``dlogz``, ``frac_remain``, dKL, ESS),
        not by ``max_ncalls``.
    insertion_test : dict
        UltraNest's insertion-order (Mann-Whitney U) test of the live-point proposals:
        ``independent_iterations`` and ``converged`` (False hints at a biased region).
    wall_time : float
        Seconds.
    seed : int
    settings : dict
        ``min_num_live_points``, ``dlogz``, ``frac_remain``, ``max_ncalls``.
    weighted_samples, weights, logl : ndarray
        The dead points (physical parameters), their normalised posterior weights and their
        normalised log-likelihoods.
    """

    samples: np.ndarray
    names: list
    logz: float
    logz_err: float
    data_log_constant: float
    ncall: int
    n_live: int
    niter: int
    ess: float
    information: float
    converged: bool
    insertion_test: dict
    wall_time: float
    seed: object = None
    settings: dict = field(default_factory=dict)
    weighted_samples: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    logl: np.ndarray | None = field(default=None, repr=False)

    @property
    def info(self) -> dict:
        """The termination and proposal diagnostics as one dict."""
        return {"converged": self.converged, "insertion_test": dict(self.insertion_test), "ess": self.ess,
                "niter": self.niter, "ncall": self.ncall}

    def summary(self) -> dict:
        """:func:`summarize` of the equally weighted samples."""
        return summarize(self.samples, self.names)

    def record(self) -> dict:
        """JSON-friendly summary of the run."""
        iters = float(self.insertion_test.get("independent_iterations", math.nan))
        return {
            "sampler": "UltraNest ReactiveNestedSampler (Buchner 2021; MLFriends, Buchner 2016, 2019)",
            "parameters": self.summary(),
            "logz": float(self.logz),
            "logz_err": float(self.logz_err),
            "logz_convention": "normalised Poisson likelihood: -C/2 + data_log_constant (W-stat: profile likelihood)",
            "logz_cstat": float(self.logz - self.data_log_constant),
            "data_log_constant": float(self.data_log_constant),
            "ncall": int(self.ncall),
            "niter": int(self.niter),
            "n_live": int(self.n_live),
            "ess": float(self.ess),
            "information_nat": float(self.information),
            "n_samples": int(self.samples.shape[0]),
            "converged": bool(self.converged),
            "insertion_test": {
                # infinite when the test never failed: null keeps summary.json standard JSON
                "independent_iterations": iters if math.isfinite(iters) else None,
                "converged": bool(self.insertion_test.get("converged", False)),
            },
            "settings": dict(self.settings),
            "wall_time_s": float(self.wall_time),
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else str(self.seed),
        }


def run_nested(likelihood, *, min_num_live_points: int = 400, dlogz: float = 0.5, frac_remain: float = 0.01,
               max_ncalls: int | None = None, seed: int = 0, progress: bool = True) -> NestedResult:
    """Sample the posterior and integrate the evidence with UltraNest (Buchner 2021).

    Parameters
    ----------
    likelihood : PoissonLikelihood
        Its prior (``likelihood.prior``, a :class:`xsbi.JointPrior`) gives the unit-cube
        transform; its :meth:`~PoissonLikelihood.log_likelihood` plus ``data_log_constant`` is
        the log-likelihood, evaluated in batches (UltraNest's ``vectorized=True``).
    min_num_live_points : int
        Minimum number of live points (UltraNest's ``min_num_live_points``).
    dlogz : float
        Target uncertainty of ``ln Z``.
    frac_remain : float
        Integrate until this fraction of the evidence is left in the live points.
    max_ncalls : int, optional
        Stop after this many likelihood evaluations (the result is then marked not converged).
    seed : int
        Seeds numpy's global random state, which UltraNest uses, for the run; the previous
        global state is restored afterwards.  The same seed gives identical samples.
    progress : bool
        Show UltraNest's status line and its log messages; False keeps it quiet (warnings
        still show).  UltraNest's live-point visualisation (``viz_callback``, several hundred
        lines per run) is always off.

    Returns
    -------
    NestedResult

    Warns
    -----
    RuntimeWarning
        When ``max_ncalls`` stopped the run before its termination criteria held.

    Notes
    -----
    Nothing is written to disk (``log_dir=None``).  Torch and BLAS threads are capped to
    ``likelihood.num_threads`` (1 by default) during sampling, as for :func:`run_mcmc`.
    """
    try:
        import ultranest
    except ImportError as exc:  # pragma: no cover - ultranest is a dependency
        raise ImportError("run_nested needs UltraNest: pip install ultranest") from exc
    lik = likelihood
    prior = lik.prior
    if min_num_live_points < 2:
        raise ValueError(f"min_num_live_points must be at least 2; got {min_num_live_points}")
    if not dlogz > 0 or not 0 < frac_remain < 1:
        raise ValueError(f"dlogz must be > 0 and frac_remain in (0, 1); got {dlogz}, {frac_remain}")
    const = float(lik.data_log_constant)

    def transform(u):
        return prior.ppf(u)

    def loglike(theta):
        ll = lik.log_likelihood(theta) + const
        return np.where(np.isfinite(ll), ll, _LOW_LOGL)

    t0 = time.perf_counter()
    logger = logging.getLogger("ultranest")
    old_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with limit_threads(lik.num_threads):
            sampler = ultranest.ReactiveNestedSampler(list(lik.names), loglike, transform=transform,
                                                      vectorized=True, log_dir=None)
            old_level = logger.level
            if not progress:  # the sampler's constructor set up the logger; quieten it for the run
                logger.setLevel(logging.WARNING)
            try:
                res = sampler.run(min_num_live_points=int(min_num_live_points), dlogz=float(dlogz),
                                  frac_remain=float(frac_remain),
                                  max_ncalls=None if max_ncalls is None else int(max_ncalls),
                                  show_status=bool(progress), viz_callback=False)
            finally:
                logger.setLevel(old_level)
    finally:
        np.random.set_state(old_state)
    wall = time.perf_counter() - t0

    ncall = int(res["ncall"])
    converged = max_ncalls is None or ncall < int(max_ncalls)
    if not converged:
        warnings.warn(
            f"run_nested stopped at max_ncalls={max_ncalls} before its termination criteria held "
            f"(ln Z = {res['logz']:.2f} +- {res['logzerr']:.2f}); raise max_ncalls",
            RuntimeWarning, stacklevel=2,
        )
    ws = res["weighted_samples"]
    return NestedResult(
        samples=np.asarray(res["samples"], dtype=np.float64), names=list(lik.names),
        logz=float(res["logz"]), logz_err=float(res["logzerr"]), data_log_constant=const, ncall=ncall,
        n_live=int(min_num_live_points), niter=int(res["niter"]), ess=float(res["ess"]),
        information=float(res["H"]), converged=bool(converged),
        insertion_test=dict(res.get("insertion_order_MWW_test", {})), wall_time=wall, seed=seed,
        settings={"min_num_live_points": int(min_num_live_points), "dlogz": float(dlogz),
                  "frac_remain": float(frac_remain), "max_ncalls": None if max_ncalls is None else int(max_ncalls)},
        weighted_samples=np.asarray(ws["points"], dtype=np.float64),
        weights=np.asarray(ws["weights"], dtype=np.float64), logl=np.asarray(ws["logl"], dtype=np.float64),
    )
