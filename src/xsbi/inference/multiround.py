"""Multi-round (sequential) NPE focused on one observation, with truncated proposals.

Each round draws parameters from the prior truncated to the current posterior's
highest-density region at the observation (TSNPE, Deistler, Goncalves & Macke 2022), and the
network is retrained on all rounds with the plain maximum-likelihood loss.  Because proposals are
truncated priors rather than arbitrary posteriors, the estimate stays a posterior under the
original prior and avoids the leakage of APT/SNPE-C's atomic loss (Greenberg et al. 2019).
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import XsbiError
from .npe import NPE
from .posterior import AmortizedPosterior


class TruncatedProposal:
    """The prior truncated to a network's HPD region at one observation (and to ``base``'s region).

    TSNPE's proposal is the prior restricted to ``{phi : log q(phi | x_obs) >= t}``.  Drawing it by
    rejection from the prior costs the prior volume over the region's: millions of draws per
    accepted one for a bright spectrum under wide priors, worse behind a restricted prior that is
    itself sampled by rejection.  Instead, as sbi does for TSNPE (``sample_with="sir"``; Deistler,
    Goncalves & Macke 2022), each draw is picked among ``oversampling`` candidates by sampling-
    importance-resampling (Rubin 1988) with weights p(phi) 1_region(phi) / g(phi).  The candidates
    come from a mixture g of the network's own posterior and a Gaussian with twice its spread
    (in standardised coordinates), so that the region's edges, where the truncated prior has as
    much mass as its core but the network little, are covered too.  Inside the region the network's
    density is at least exp(t), which bounds the weights.
    """

    def __init__(self, posterior: AmortizedPosterior, base, x_obs, quantile: float = 1e-4, seed: int = 0,
                 n_draws: int = 20_000, oversampling: int = 64, defensive: float = 0.5):
        from .importance import _DefensiveGaussian

        self.posterior = posterior
        self.space = posterior.space
        self.x = posterior._x(x_obs)[0]  # the network's input for the observation
        # one set of network draws gives both the HPD threshold and the Gaussian's moments
        torch.manual_seed(seed)
        self.threshold, phi = posterior._hpd_threshold(self.x, quantile, n_draws)
        self.gauss = _DefensiveGaussian(phi.double().numpy(), 2.0)
        # base: the full prior, or an sbi RestrictedPrior (classifier or coarse-NPE restriction)
        self.base_accept = getattr(base, "_accept_reject_fn", None)
        self.prior = getattr(base, "_prior", base)
        self.oversampling, self.defensive = int(oversampling), float(defensive)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.lo, self.hi = self.space.bounds_phi()
        self.acceptance = None  # fraction of candidates inside the region, last call

    @torch.no_grad()
    def accept_hpd(self, phi: torch.Tensor) -> torch.Tensor:
        """Membership of the network's HPD region at the observation (as ``hpd_acceptor``)."""
        return self.posterior._log_prob_phi(phi, self.x) >= self.threshold

    def _candidates(self, m: int) -> np.ndarray:
        n_g = int(self.rng.binomial(m, self.defensive))
        self.seed += 1
        torch.manual_seed(self.seed)
        with torch.no_grad():
            phi_q = self.posterior._sample_phi(m - n_g, self.x).double().numpy() if m > n_g else np.zeros((0, self.lo.size))
        phi = np.concatenate([phi_q, self.gauss.rvs(n_g, self.rng)])
        return phi[self.rng.permutation(m)]

    def _log_weights(self, phi: np.ndarray) -> np.ndarray:
        ok = np.all((phi >= self.lo) & (phi <= self.hi), axis=1)
        logw = np.full(len(phi), -np.inf)
        if not ok.any():
            return logw
        idx = np.flatnonzero(ok)
        t = torch.as_tensor(phi[idx], dtype=torch.float32)
        with torch.no_grad():
            # the network's density serves both the HPD test and the proposal mixture's density
            log_q = self.posterior._log_prob_phi(t, self.x).double().numpy()
            keep = log_q >= self.threshold
            if self.base_accept is not None and keep.any():
                keep[keep] = self.base_accept(t[torch.as_tensor(keep)]).cpu().numpy().astype(bool)
            if not keep.any():
                return logw
            log_prior = self.prior.log_prob(t[torch.as_tensor(keep)]).reshape(-1).double().numpy()
        idx, log_q = idx[keep], log_q[keep]
        log_g = self.gauss.logpdf(phi[idx])
        log_mix = np.logaddexp(np.log1p(-self.defensive) + log_q, np.log(self.defensive) + log_g)
        logw[idx] = log_prior - log_mix
        return logw

    def sample(self, sample_shape=(1,)) -> torch.Tensor:
        n = int(np.prod(sample_shape))
        k = self.oversampling
        out, inside, tried = [], 0, 0
        remaining = n
        while remaining > 0:
            if tried > 1000 * k * n:
                raise XsbiError("the truncated proposal finds almost no candidate inside its region: the "
                                "network's high-density region lies outside the (restricted) prior; use more "
                                "simulations per round")
            m = min(remaining, 4096)
            phi = self._candidates(m * k)
            logw = self._log_weights(phi).reshape(m, k)
            tried += m * k
            inside += int(np.isfinite(logw).sum())
            rows = np.isfinite(logw).any(axis=1)
            if not rows.any():
                continue
            w = np.exp(logw[rows] - logw[rows].max(axis=1, keepdims=True))
            cdf = np.cumsum(w, axis=1)
            pick = (cdf < self.rng.random((int(rows.sum()), 1)) * cdf[:, -1:]).sum(axis=1)
            chosen = phi.reshape(m, k, -1)[rows][np.arange(int(rows.sum())), pick]
            out.append(chosen[:remaining])
            remaining -= len(out[-1])
        self.acceptance = inside / tried
        return torch.as_tensor(np.concatenate(out), dtype=torch.float32)


def train_multiround(model, prior, spectrum, simulator, x_obs, rounds: int = 3, simulations_per_round: int = 1000,
                     proposal=None, quantile: float = 1e-4, seed: int = 0, progress: bool = True,
                     npe_kwargs: dict | None = None, train_kwargs: dict | None = None) -> AmortizedPosterior:
    """Train ``rounds`` rounds of NPE on ``simulations_per_round`` spectra each.

    ``proposal`` is the first round's phi-space distribution (a restricted prior's
    ``distribution``; default the full prior).  Returns a posterior meant for ``x_obs`` only.
    """
    t0 = time.perf_counter()
    npe = NPE(model, prior, spectrum, **(npe_kwargs or {}))
    base = proposal if proposal is not None else npe.space.torch_prior()
    current = base
    posterior = None
    for r in tqdm(range(rounds), desc="multi-round NPE", unit="round", disable=not progress):
        torch.manual_seed(seed + 100 + r)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # sbi prints rejection rates
            phi = current.sample((int(simulations_per_round),))
        theta = npe.space.to_theta(phi.cpu().numpy())
        x = simulator.sample(theta, seed=seed + 200 + r)
        npe.append_simulations(theta, x)
        posterior = npe.train(seed=seed + r, progress=False, **(train_kwargs or {}))
        if r < rounds - 1:
            current = TruncatedProposal(posterior, base, x_obs, quantile, seed + 300 + r)
    posterior.meta["training"].update(
        {"method": f"snpe (multi-round, truncated proposals; {rounds} rounds of {simulations_per_round})",
         "rounds": rounds, "simulations_per_round": simulations_per_round, "quantile": quantile,
         "train_seconds": time.perf_counter() - t0, "observation_specific": True}
    )
    return posterior
