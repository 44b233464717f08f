"""Posterior summaries shared by every method: quantiles, best fit, folded model, goodness of fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..likelihood.poisson import summarize
from ..stats import cstat, cstat_goodness, wstat, wstat_goodness

__all__ = ["PosteriorResult", "summarize", "fit_statistic"]


def fit_statistic(spectrum, mu) -> np.ndarray:
    """C-stat, or W-stat when the spectrum has a background, of the observation for models mu."""
    if spectrum.background_counts is not None:
        return np.asarray(wstat(spectrum.counts, spectrum.background_counts, mu, spectrum.background_ratio, validate=False))
    return np.asarray(cstat(spectrum.counts, mu, validate=False))


@dataclass
class PosteriorResult:
    """Samples of one observation's posterior with what an astronomer reads off them."""

    names: list[str]
    samples: np.ndarray
    method: str
    summary: dict = field(default_factory=dict)
    best_fit: dict = field(default_factory=dict)
    best_counts: np.ndarray | None = None
    statistic: str = "cstat"
    fit: dict = field(default_factory=dict)

    @classmethod
    def from_samples(cls, samples, names, spectrum, model, method: str, max_fit_samples: int = 20_000,
                     likelihood=None):
        """Summaries plus the best fit.

        The best fit starts as the sample with the lowest C-stat (W-stat with a background), the
        paper's definition.  Given ``likelihood`` (a :class:`xsbi.likelihood.PoissonLikelihood` of
        the same spectrum, model and priors), a local minimisation from that sample then finds the
        minimum of the basin it lies in, as XSPEC's ``fit`` from a good start would: posterior
        samples scatter around the minimum by the parameter errors, so the best one sits ~d/2
        above it.  Both are recorded (``fit["best_sample_statistic"]``).
        """
        from ..simulate import Simulator

        samples = np.asarray(samples, dtype=np.float64)
        sim = Simulator(model, spectrum, dtype=torch.float64)
        subset = samples[: max_fit_samples]
        mu = sim.expected_counts(subset)
        stat = fit_statistic(spectrum, mu)
        i = int(np.argmin(stat))
        best, best_mu, best_stat = subset[i], mu[i], float(stat[i])
        polished = False
        if likelihood is not None:
            import warnings

            from ..likelihood.fit import fit_cstat

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a failed polish keeps the sample; nothing to report
                r = fit_cstat(likelihood, starts=[best], delta_c=None)
            mu_r = sim.expected_counts(r.theta[None])[0]
            stat_r = float(fit_statistic(spectrum, mu_r[None]).reshape(-1)[0])
            if stat_r < best_stat:
                best, best_mu, best_stat, polished = r.theta, mu_r, stat_r, True
        if spectrum.background_counts is not None:
            # W-stat: no exact moments (Kaastra's are for C-stat); a parametric bootstrap
            good = wstat_goodness(spectrum.counts, spectrum.background_counts, best_mu, spectrum.background_ratio)
        else:
            good = cstat_goodness(spectrum.counts, best_mu)
        return cls(
            names=list(names), samples=samples, method=method, summary=summarize(samples, names),
            best_fit={n: float(v) for n, v in zip(names, best)}, best_counts=best_mu,
            statistic="wstat" if spectrum.background_counts is not None else "cstat",
            fit={"statistic": best_stat, "best_sample_statistic": float(stat[i]), "polished": polished,
                 "statistic_name": "W-stat" if spectrum.background_counts is not None
                 else "C-stat", "cstat": float(good.cstat), "expected_cstat": float(good.expected),
                 "cstat_std": float(good.std), "cstat_z": float(good.z), "n_bins": int(spectrum.n_bins)},
        )
