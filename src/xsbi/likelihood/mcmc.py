"""Posterior sampling with the exact likelihood: emcee's affine-invariant ensemble sampler.

The reference against which simulation-based posteriors are judged.  The sampler is the
Goodman & Weare (2010) affine-invariant "stretch move" ensemble as implemented in emcee
(Foreman-Mackey et al. 2013), run on the physical parameters with the batched likelihood
evaluating each half-ensemble in one call (``vectorize=True``).

Convergence follows the emcee documentation's recipe ("Saving & monitoring progress" and
"Autocorrelation analysis" tutorials, after Sokal 1997): every ``check_every`` steps the
integrated autocorrelation time ``tau`` of each parameter is estimated, and sampling stops once
the chain is longer than ``target_tau_multiple * tau`` for every parameter and every ``tau``
changed by less than 1% since the previous check.  ``5 tau`` steps are then discarded as
burn-in and the chain is thinned by ``tau / 2``.

References
----------
Goodman, J. & Weare, J. 2010, Comm. Appl. Math. Comput. Sci. 5, 65.
Foreman-Mackey, D., Hogg, D. W., Lang, D. & Goodman, J. 2013, PASP 125, 306.
Sokal, A. 1997, in Functional Integration (Springer), 131 (integrated autocorrelation time).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .fit import FitResult, fit_cstat
from .poisson import summarize

__all__ = ["McmcResult", "run_mcmc"]


@dataclass
class McmcResult:
    """Result of :func:`run_mcmc`.

    Attributes
    ----------
    samples : ndarray (n, d)
        Post-burn-in, thinned samples of the physical parameters, all walkers flattened.
    names : list of str
    log_prob : ndarray (n,)
        Unnormalised log-posterior (``-C/2 + ln prior``) of each sample.
    tau : ndarray (d,)
        Integrated autocorrelation time per parameter, in steps (emcee's estimator with
        ``tol=0``, on the whole chain).
    acceptance_fraction : float
        Mean over walkers.
    n_walkers, n_steps, burn, thin : int
    ess : ndarray (d,)
        Effective sample size per parameter, ``n_walkers * (n_steps - burn) / tau``.
    converged : bool
        The chain is longer than ``target_tau_multiple * tau`` (and, when ``n_steps`` was not
        given, tau had stabilised to 1%).
    target_tau_multiple : float
    wall_time : float
        Seconds, including the initial fit.
    seed : int or None
    fit : FitResult
        The C-stat fit around which the walkers started.
    sampler : emcee.EnsembleSampler
        The sampler, with the full chain (``get_chain()``), for further diagnostics.
    """

    samples: np.ndarray
    names: list
    log_prob: np.ndarray
    tau: np.ndarray
    acceptance_fraction: float
    n_walkers: int
    n_steps: int
    burn: int
    thin: int
    ess: np.ndarray
    converged: bool
    target_tau_multiple: float
    wall_time: float
    seed: object = None
    fit: FitResult | None = field(default=None, repr=False)
    sampler: object = field(default=None, repr=False)

    def summary(self) -> dict:
        """:func:`summarize` of the samples."""
        return summarize(self.samples, self.names)

    def record(self) -> dict:
        """JSON-friendly summary of the run."""
        return {
            "sampler": "emcee EnsembleSampler (Goodman & Weare 2010 stretch move)",
            "parameters": self.summary(),
            "tau": dict(zip(self.names, map(float, self.tau))),
            "ess": dict(zip(self.names, map(float, self.ess))),
            "acceptance_fraction": float(self.acceptance_fraction),
            "n_walkers": int(self.n_walkers),
            "n_steps": int(self.n_steps),
            "burn": int(self.burn),
            "thin": int(self.thin),
            "n_samples": int(self.samples.shape[0]),
            "converged": bool(self.converged),
            "target_tau_multiple": float(self.target_tau_multiple),
            "wall_time_s": float(self.wall_time),
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else str(self.seed),
        }


def _reflect_into(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    # Reflection rather than clipping: walkers clipped onto a bound would share its value,
    # and an ensemble confined to a hyperplane can never leave it under stretch moves.
    x = np.where(x < low, 2 * low - x, x)
    x = np.where(x > high, 2 * high - x, x)
    return np.clip(x, low, high)


def _initial_ball(likelihood, fit: FitResult, n_walkers: int, scale: float, rng) -> np.ndarray:
    lik = likelihood
    theta = fit.theta
    width = lik.high - lik.low
    fallback = 1e-3 * np.maximum(np.abs(theta), np.where(np.isfinite(width), 1e-3 * width, 1.0))
    sigma = np.where(np.isfinite(fit.errors) & (fit.errors > 0), fit.errors, fallback)
    p0 = _reflect_into(theta + scale * sigma * rng.standard_normal((n_walkers, lik.dim)), lik.low, lik.high)
    for _ in range(100):
        bad = ~np.isfinite(lik.log_posterior(p0))
        if not bad.any():
            return p0
        p0[bad] = _reflect_into(theta + scale * sigma * rng.standard_normal((bad.sum(), lik.dim)), lik.low, lik.high)
    raise RuntimeError("could not place the walkers where the posterior is finite around the best fit")


def run_mcmc(likelihood, n_walkers: int = 32, n_steps: int | None = None, burn: int | None = None, seed=0,
             progress: bool = True, max_steps: int = 50000, target_tau_multiple: float = 50,
             check_every: int = 100, thin: int | None = None, fit: FitResult | None = None,
             fit_starts: int = 4, ball_scale: float = 0.1) -> McmcResult:
    """Sample the posterior with emcee (Foreman-Mackey et al. 2013; Goodman & Weare 2010).

    Parameters
    ----------
    likelihood : PoissonLikelihood
        Its :meth:`~PoissonLikelihood.log_posterior` is the target.
    n_walkers : int
        Ensemble size (at least ``2 d``; emcee's stretch move updates half at a time).
    n_steps : int, optional
        Fixed number of steps.  None: run until converged (see the module docstring) or
        ``max_steps``.
    burn : int, optional
        Steps discarded; default ``ceil(5 max(tau))`` (at most half the chain).
    seed : int
        Seeds ``np.random.default_rng`` for the initial ball, the starts of the initial fit and
        emcee's ``RandomState``; the same seed gives identical samples.
    progress : bool
        Show emcee's tqdm progress bar.
    max_steps : int
        Upper limit on the steps when ``n_steps`` is None.
    target_tau_multiple : float
        Required chain length in units of the largest autocorrelation time.
    check_every : int
        Steps between convergence checks.
    thin : int, optional
        Default ``max(1, floor(min(tau) / 2))``.
    fit : FitResult, optional
        A C-stat fit to start from; by default :func:`fit_cstat` with ``fit_starts`` prior
        draws (its covariance sets the ball's shape).
    fit_starts : int
        Starts of that fit.
    ball_scale : float
        Walkers start at ``best fit + ball_scale * sigma * N(0, 1)`` per parameter, reflected
        into the prior: tight enough to begin in the bulk, wide enough that the ensemble spans
        all dimensions.

    Returns
    -------
    McmcResult

    Warns
    -----
    RuntimeWarning
        When ``max_steps`` is reached before convergence, or a fixed chain is shorter than
        ``target_tau_multiple * tau``.
    """
    try:
        import emcee
    except ImportError as exc:  # pragma: no cover - emcee is an optional dependency
        raise ImportError("run_mcmc needs emcee: pip install emcee") from exc
    lik = likelihood
    d = lik.dim
    if n_walkers < 2 * d:
        raise ValueError(f"n_walkers must be at least 2 * d = {2 * d} for the stretch move; got {n_walkers}")
    if n_steps is not None and n_steps < 2:
        raise ValueError("n_steps must be at least 2")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with lik.limit_threads():
        if fit is None:
            fit = fit_cstat(lik, n_starts=fit_starts, seed=rng, delta_c=None)
        p0 = _initial_ball(lik, fit, n_walkers, ball_scale, rng)
        # emcee draws from a legacy RandomState carried by the State; seeding it from our
        # generator makes the whole chain a function of `seed`.
        state = emcee.State(p0, random_state=np.random.RandomState(int(rng.integers(2**32))).get_state())
        sampler = emcee.EnsembleSampler(n_walkers, d, lik.log_posterior, vectorize=True)

        converged = False
        if n_steps is not None:
            sampler.run_mcmc(state, int(n_steps), progress=progress)
            tau = sampler.get_autocorr_time(tol=0)
            converged = bool(np.all(target_tau_multiple * tau < sampler.iteration))
            if not converged:
                warnings.warn(
                    f"the chain ({sampler.iteration} steps) is shorter than {target_tau_multiple} x tau "
                    f"(tau = {np.round(tau, 1).tolist()}); estimates of tau and of the posterior are unreliable",
                    RuntimeWarning, stacklevel=2,
                )
        else:
            old_tau = np.full(d, np.inf)
            tau = old_tau
            for _ in sampler.sample(state, iterations=int(max_steps), progress=progress):
                if sampler.iteration % check_every:
                    continue
                tau = sampler.get_autocorr_time(tol=0)
                converged = bool(np.all(target_tau_multiple * tau < sampler.iteration)
                                 and np.all(np.abs(old_tau - tau) < 0.01 * tau))
                if converged:
                    break
                old_tau = tau
            if sampler.iteration % check_every:
                tau = sampler.get_autocorr_time(tol=0)
            if not converged:
                warnings.warn(
                    f"run_mcmc reached max_steps={max_steps} before converging (tau = {np.round(tau, 1).tolist()}, "
                    f"target {target_tau_multiple} x tau); raise max_steps or n_walkers",
                    RuntimeWarning, stacklevel=2,
                )

    total = int(sampler.iteration)
    if burn is None:
        burn = int(math.ceil(5 * np.max(tau)))
    burn = int(min(burn, total // 2))
    if thin is None:
        thin = max(1, int(0.5 * np.min(tau)))
    samples = sampler.get_chain(discard=burn, thin=thin, flat=True)
    log_prob = sampler.get_log_prob(discard=burn, thin=thin, flat=True)
    ess = n_walkers * (total - burn) / tau
    return McmcResult(
        samples=samples, names=list(lik.names), log_prob=log_prob, tau=np.asarray(tau, float),
        acceptance_fraction=float(np.mean(sampler.acceptance_fraction)), n_walkers=n_walkers, n_steps=total,
        burn=burn, thin=int(thin), ess=np.asarray(ess, float), converged=converged,
        target_tau_multiple=float(target_tau_multiple), wall_time=time.perf_counter() - t0, seed=seed,
        fit=fit, sampler=sampler,
    )
