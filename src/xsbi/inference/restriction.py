"""Restricted priors (seed paper, section 3): train on spectra that resemble the observation.

Two methods:

* **classifier** (Deistler et al. 2022, sbi's ``RestrictionEstimator``): rounds of simulations
  from the current prior, each labelled good or bad by a criterion; a classifier learns the good
  region and the prior is restricted to it.  Rounds stop when a round's fraction of good
  simulations reaches ``stop_fraction``.  Built-in criteria: :class:`CountsWindow` (total counts
  in a range) and :class:`CstatFraction` (the parameters giving the lowest C-stat against the
  observation); any ``criterion(theta, x, mu) -> bool array`` works.
* **coarse**: a small, quick NPE on the full prior; its posterior at the observation(s),
  truncated to the highest-density region holding all but ``quantile`` of the mass, becomes the
  prior (for several observations, the union of their regions).
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats as sstats
from tqdm.auto import tqdm

from ..errors import XsbiError
from ..stats import cstat
from .space import ParameterSpace


class CountsWindow:
    """Good when the simulated spectrum's total counts lie in [cmin, cmax]."""

    def __init__(self, cmin: float, cmax: float):
        if not 0 <= cmin < cmax:
            raise XsbiError(f"counts window needs 0 <= cmin < cmax, got [{cmin}, {cmax}]")
        self.cmin, self.cmax = float(cmin), float(cmax)

    @classmethod
    def around(cls, observed_counts: float, factor: float = 2.0) -> "CountsWindow":
        """[N/factor, N*factor] around the observed total N (default: a factor 2 either way)."""
        n = max(float(observed_counts), 1.0)
        return cls(n / factor, n * factor)

    def __call__(self, theta, x, mu) -> np.ndarray:
        total = np.asarray(x).sum(axis=1)
        return (total >= self.cmin) & (total <= self.cmax)

    def describe(self) -> str:
        return f"total counts in [{self.cmin:g}, {self.cmax:g}]"


class CstatFraction:
    """Good when C-stat(observation | mu(theta)) is among the lowest ``fraction`` seen so far.

    The threshold never drops below C_min + chi2_d(1 - 1e-6), C_min the lowest C-stat seen:
    later rounds concentrate near the best fit, and a pure quantile would then cut into the
    posterior itself.  Earlier rounds are relabelled with the current threshold
    (:meth:`relabel`) so that the classifier learns one consistent region.
    """

    def __init__(self, observed_counts, fraction: float = 0.25, n_params: int = 1):
        if not 0 < fraction < 1:
            raise XsbiError(f"cstat fraction must be in (0, 1), got {fraction}")
        self.obs = np.asarray(observed_counts, dtype=np.float64)
        self.fraction = float(fraction)
        self.margin = float(sstats.chi2.ppf(1 - 1e-6, n_params))
        self.seen: list[np.ndarray] = []
        self.threshold = np.inf

    def __call__(self, theta, x, mu) -> np.ndarray:
        c = np.asarray(cstat(self.obs[None, :], np.asarray(mu, dtype=np.float64), validate=False))
        self.seen.append(c)
        best = min(float(np.min(v)) for v in self.seen)
        self.threshold = max(float(np.quantile(c, self.fraction)), best + self.margin)
        return c <= self.threshold

    def relabel(self) -> np.ndarray:
        """Labels of every simulation seen so far under the current threshold."""
        return np.concatenate(self.seen) <= self.threshold

    def describe(self) -> str:
        return f"lowest {self.fraction:.0%} C-stat against the observation (floor C_min + {self.margin:.1f})"


@dataclass
class RestrictedPrior:
    """A prior restricted to a region of the full prior; samples physical parameters."""

    space: ParameterSpace
    distribution: object  # phi-space torch distribution with .sample((n,))
    method: str
    history: list = field(default_factory=list)
    seconds: float = 0.0

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            torch.manual_seed(seed)
        # sbi's restricted priors print their rejection rate on every call
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            phi = self.distribution.sample((int(n),))
        return self.space.to_theta(phi.cpu().numpy())

    def record(self) -> dict:
        return {"method": self.method, "rounds": self.history, "seconds": self.seconds}


def restrict_with_classifier(simulator, space: ParameterSpace, criterion, rounds: int = 10, simulations: int = 2000,
                             stop_fraction: float = 0.5, seed: int = 0, progress: bool = True) -> RestrictedPrior:
    """Classifier restriction (sbi's RestrictionEstimator) driven by ``criterion(theta, x, mu)``."""
    from sbi.utils import RestrictionEstimator

    t0 = time.perf_counter()
    prior = space.torch_prior()
    proposal = prior
    history, all_phi, all_good = [], [], []
    bar = tqdm(range(rounds), desc="restricting prior", unit="round", disable=not progress)
    for r in bar:
        torch.manual_seed(seed + r)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            phi = proposal.sample((simulations,)).float()
        theta = space.to_theta(phi.cpu().numpy())
        mu, x = simulator.simulate(theta, seed=seed + 10_000 + r)
        good = np.asarray(criterion(theta, x, mu), dtype=bool)
        history.append({"round": r + 1, "simulations": simulations, "good_fraction": float(good.mean())})
        bar.set_postfix(good=f"{good.mean():.2f}")
        if good.mean() >= stop_fraction:
            break
        if not good.any():
            raise XsbiError(
                f"no simulation of round {r + 1} satisfies the restriction ({getattr(criterion, 'describe', lambda: '')()}); "
                "widen the prior or the criterion"
            )
        all_phi.append(phi)
        all_good.append(good)
        labels = criterion.relabel() if hasattr(criterion, "relabel") else np.concatenate(all_good)
        # a fresh classifier on all simulations so far, labelled consistently
        estimator = RestrictionEstimator(prior=prior, decision_criterion=lambda label: label[:, 0] > 0.5)
        estimator.append_simulations(torch.cat(all_phi), torch.as_tensor(labels, dtype=torch.float32)[:, None])
        # sbi prints every epoch to stdout; the bar above is the progress report
        with contextlib.redirect_stdout(io.StringIO()):
            estimator.train(stop_after_epochs=10, max_num_epochs=200)
        proposal = estimator.restrict_prior()
    method = "classifier: " + getattr(criterion, "describe", lambda: "user criterion")()
    return RestrictedPrior(space, proposal, method, history, time.perf_counter() - t0)


def restrict_with_coarse_npe(npe_factory, simulator, space: ParameterSpace, observations, simulations: int = 5000,
                             quantile: float = 1e-4, seed: int = 0, progress: bool = True) -> RestrictedPrior:
    """Coarse-inference restriction: the truncated posterior of a quick NPE (union over observations).

    ``npe_factory()`` returns an untrained :class:`~xsbi.inference.npe.NPE` (a small one).
    """
    from sbi.utils import RestrictedPrior as SbiRestrictedPrior

    t0 = time.perf_counter()
    prior = space.torch_prior()
    theta = space.prior.sample(simulations, seed=seed)
    x = simulator.sample(theta, seed=seed + 1)
    posterior = npe_factory().append_simulations(theta, x).train(stop_after_epochs=10, seed=seed, progress=progress)
    observations = [np.asarray(o) for o in (observations if np.ndim(observations[0]) else [observations])]
    accept = posterior.hpd_acceptor(observations, quantile, seed=seed + 2)
    restricted = SbiRestrictedPrior(prior, accept, sample_with="rejection")
    history = [{"coarse_simulations": simulations, "quantile": quantile, "observations": len(observations),
                "epochs": posterior.meta["training"]["epochs"]}]
    return RestrictedPrior(space, restricted, "coarse NPE posterior (HPD truncation, union over observations)",
                           history, time.perf_counter() - t0)


def unrestricted(space: ParameterSpace) -> RestrictedPrior:
    return RestrictedPrior(space, space.torch_prior(), "none (full prior)")
