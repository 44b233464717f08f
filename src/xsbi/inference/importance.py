"""Exact posteriors from NPE by importance sampling on the known likelihood.

NPE's posterior q(theta | x) is an excellent proposal: weighting its samples by
w = L(x | theta) p(theta) / q(theta | x) and resampling gives samples of the exact posterior,
up to Monte-Carlo noise, whatever the network's small errors (neural importance sampling;
Dax et al. 2023, PRL 130, 171403).  The effective sample size (Kish) and the sampling efficiency
ESS/n say how good the network was: a low efficiency means the network missed part of the
posterior and more (or better) training is needed.

A network that is too narrow somewhere gives a few huge weights.  The proposal is therefore a
*defensive* mixture (Hesterberg 1995, Technometrics 37, 185): with probability ``defensive`` a
draw comes from a Gaussian, in the network's parameter space, with the network samples' mean and
twice their standard deviations, which keeps the weights bounded where the network falls short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import XsbiError


@dataclass
class ImportanceResult:
    samples: np.ndarray  # resampled, equally weighted
    weights: np.ndarray  # normalised weights of the proposal samples
    ess: float
    efficiency: float
    log_evidence: float  # log of the mean weight: ln Z estimate (up to the C-stat data constant)

    def record(self) -> dict:
        return {"proposal_samples": int(self.weights.size), "ess": self.ess, "efficiency": self.efficiency,
                "log_evidence_cstat": self.log_evidence}


class _DefensiveGaussian:
    """Gaussian with the samples' mean and ``widen`` times their covariance, full rank.

    Built in standardised coordinates: parameters in phi differ in scale by orders of magnitude
    (a norm in log10 next to kT in keV), and a covariance in raw units looks singular to an
    eigenvalue cut-off, which would silently confine the defensive draws to a hyperplane while
    their density is taken as a full-dimensional one.
    """

    def __init__(self, phi: np.ndarray, widen: float):
        self.mean = phi.mean(0)
        self.scale = phi.std(0) * widen
        self.scale = np.where(self.scale > 0, self.scale, 1e-12)
        corr = np.atleast_2d(np.corrcoef(((phi - self.mean) / self.scale).T))
        dim = phi.shape[1]
        # a small ridge keeps an exact degeneracy (e.g. a parameter pinned to a bound) full rank
        self.chol = np.linalg.cholesky(corr + 1e-6 * np.eye(dim))
        self.log_norm = (-0.5 * dim * np.log(2 * np.pi) - np.sum(np.log(np.diag(self.chol)))
                         - np.sum(np.log(self.scale)))

    def rvs(self, n: int, rng) -> np.ndarray:
        z = rng.standard_normal((int(n), self.mean.size))
        return self.mean + (z @ self.chol.T) * self.scale

    def logpdf(self, phi: np.ndarray) -> np.ndarray:
        u = (np.atleast_2d(phi) - self.mean) / self.scale
        from scipy.linalg import solve_triangular

        z = solve_triangular(self.chol, u.T, lower=True)
        return self.log_norm - 0.5 * np.sum(z**2, axis=0)


#: the proposal's defaults: the share of draws from the defensive Gaussian, and how much wider
#: than the network's draws it is (``xsbi run`` and ``xsbi batch --importance``)
DEFENSIVE, WIDEN = 0.2, 2.0


def mixture_log_density(log_net, gauss: _DefensiveGaussian, space, theta, fraction: float) -> np.ndarray:
    """log of the proposal ``(1 - fraction) q(theta | x) + fraction g(theta)`` in physical
    parameters: ``log_net`` the network's log density, ``g`` the defensive Gaussian (in the
    network's coordinates, times the Jacobian)."""
    log_g = gauss.logpdf(space.to_phi(theta)) + space.log_jacobian(theta)
    return np.logaddexp(np.log1p(-fraction) + log_net, np.log(fraction) + log_g)


def importance_resample(posterior, likelihood, counts, n: int, n_proposal: int | None = None, seed: int = 0,
                        min_efficiency: float = 0.01, defensive: float = DEFENSIVE,
                        widen: float = WIDEN) -> ImportanceResult:
    """Draw ``n_proposal`` samples from NPE, weight them by the exact posterior, resample ``n``.

    ``likelihood`` is an :class:`xsbi.likelihood.PoissonLikelihood` for the same spectrum, model
    and priors (its ``log_posterior`` is the unnormalised target).  ``defensive`` is the fraction
    of proposals drawn from the widened Gaussian (0 for the network alone).
    """
    if not 0.0 <= defensive < 1.0:
        raise XsbiError(f"defensive fraction must be in [0, 1), got {defensive}")
    n_proposal = int(n_proposal or 2 * n)
    rng = np.random.default_rng(seed)
    space = posterior.space
    n_g = int(round(defensive * n_proposal))
    theta_q = posterior.sample(counts, n_proposal - n_g, seed=seed)
    phi_q = space.to_phi(theta_q)
    gauss = _DefensiveGaussian(phi_q, widen)
    phi_g = gauss.rvs(n_g, rng)
    lo, hi = space.bounds_phi()
    phi_g = phi_g[np.all((phi_g >= lo) & (phi_g <= hi), axis=1)]  # outside the prior: zero weight anyway
    theta = np.concatenate([theta_q, space.to_theta(phi_g)])
    log_q = posterior.log_prob(theta, counts)
    if n_g:
        log_q = mixture_log_density(log_q, gauss, space, theta, defensive)
    log_w = likelihood.log_posterior(theta) - log_q
    finite = np.isfinite(log_w)
    if not finite.any():
        raise XsbiError("importance sampling failed: no NPE sample has a finite posterior density")
    log_w = np.where(finite, log_w, -np.inf)
    top = log_w.max()
    w = np.exp(log_w - top)
    total = w.sum()
    weights = w / total
    ess = float(1.0 / np.sum(weights**2))
    m = theta.shape[0]
    idx = rng.choice(m, size=int(n), replace=True, p=weights)
    # the log-evidence estimate uses every proposal drawn, including those rejected outside the prior
    result = ImportanceResult(theta[idx], weights, ess, ess / m, float(top + np.log(total / n_proposal)))
    if result.efficiency < min_efficiency:
        import warnings

        warnings.warn(
            f"importance sampling efficiency {result.efficiency:.3%} (ESS {ess:.0f} of {m}): the network "
            "covers the posterior poorly; train on more simulations or a better restricted prior", stacklevel=2
        )
    return result

