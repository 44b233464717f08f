"""NPE against an MCMC reference on the exact likelihood (slow).

Set-up of the inference issue: NICER ARF and (Gaussian-approximation) RMF from ../shared/data,
grouped by 5 channels, 0.3-10 keV; spectra faked with xsbi; reference posterior from emcee on the
exact Poisson likelihood with the same priors.

* Importance-sampled NPE (the default of ``xsbi run``) is held to the issue's floors: median
  within 0.15 sigma and width within 15% (3 parameters), 0.25 sigma and 25% (5 parameters).
* The raw single network is held to regression guards at what it reaches today (|shift| <= 0.75
  sigma, width ratio in [0.7, 1.3]): single networks are off by 0.1-0.6 sigma depending on the
  training seed (benchmarks/README.md), short of the floors.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import xsbi
from xsbi.inference import (NPE, CountsWindow, ParameterSpace, importance_resample, restrict_with_classifier,
                            train_multiround)
from xsbi.likelihood import PoissonLikelihood, run_mcmc

pytestmark = pytest.mark.slow

NICER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer"
PRIORS_PL = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
             "powerlaw.norm": {"loguniform": [0.01, 100]}}
PRIORS_5 = {"tbabs.nH": {"uniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [1.0, 3.0]},
            "powerlaw.norm": {"uniform": [0.01, 10.0]}, "bbodyrad.kT": {"uniform": [0.3, 3.0]},
            "bbodyrad.norm": {"uniform": [1.0, 1e5]}}


def observation(counts_label, model, truth, seed=42):
    name = f"Reference_pha_tbabs_powerlaw_{counts_label}counts_groupconstant_5.pha"
    if not (NICER / name).is_file():
        pytest.skip(f"shared NICER data not found at {NICER}")
    setup = xsbi.load_spectrum(NICER / name).notice(0.3, 10.0)
    sim = xsbi.Simulator(model, setup)
    return setup.with_counts(sim.sample([truth], seed=seed)[0].astype(np.int64)), sim


def compare(samples, ref, names, shift_max, ratio_range):
    lines, ok = [], True
    for i, n in enumerate(names):
        sd = ref[:, i].std()
        shift = (np.median(samples[:, i]) - np.median(ref[:, i])) / sd
        ratio = samples[:, i].std() / sd
        good = abs(shift) <= shift_max and ratio_range[0] <= ratio <= ratio_range[1]
        ok &= good
        lines.append(f"{n}: shift {shift:+.3f} sigma, width ratio {ratio:.3f} {'ok' if good else 'FAIL'}")
    print("\n".join(lines))
    return ok, "\n".join(lines)


class Case:
    """One faked observation with its MCMC reference, restricted prior and trained NPE."""

    def __init__(self, expression, priors, label, truth, seed=1):
        torch.manual_seed(0)
        self.model = xsbi.Model(expression)
        self.prior = xsbi.JointPrior(self.model, priors)
        self.obs, self.sim = observation(label, self.model, truth)
        self.lik = PoissonLikelihood(self.obs, self.model, self.prior)
        self.ref = run_mcmc(self.lik, seed=0, progress=False).samples
        space = ParameterSpace(self.prior)
        self.restricted = restrict_with_classifier(self.sim, space, CountsWindow.around(self.obs.counts.sum()),
                                                   seed=0, progress=False)
        self.seed = seed
        self._post = None

    @property
    def post(self):
        if self._post is None:
            theta = self.restricted.sample(20000, seed=self.seed)
            x = self.sim.sample(theta, seed=self.seed + 1)
            self._post = NPE(self.model, self.prior, self.obs).append_simulations(theta, x).train(
                seed=self.seed, progress=False)
        return self._post


_CASES = {}


def case(key):
    if key not in _CASES:
        if key == "five":
            _CASES[key] = Case("tbabs*(powerlaw+bbodyrad)", PRIORS_5, "20000", [0.2, 1.7, 1.0, 1.0, 100.0])
        else:
            _CASES[key] = Case("tbabs*powerlaw", PRIORS_PL, key, [0.2, 1.7, 1.0])
    return _CASES[key]


@pytest.mark.parametrize("label", ["2000", "20000"])
def test_single_network_stays_close_to_mcmc(label):
    c = case(label)
    ok, report = compare(c.post.sample(c.obs.counts, 20000, seed=0), c.ref, c.prior.names, 0.75, (0.7, 1.3))
    assert ok, report


@pytest.mark.parametrize("label", ["2000", "20000"])
def test_importance_sampled_npe_meets_the_issue_floors(label):
    c = case(label)
    res = importance_resample(c.post, c.lik, c.obs.counts, 20000, seed=0)
    assert res.efficiency > 0.05
    ok, report = compare(res.samples, c.ref, c.prior.names, 0.15, (0.85, 1.15))
    assert ok, report


def test_importance_sampled_multi_round_meets_the_issue_floors():
    c = case("2000")
    post = train_multiround(c.model, c.prior, c.obs, c.sim, c.obs.counts, rounds=3, simulations_per_round=1000,
                            proposal=c.restricted.distribution, seed=0, progress=False)
    res = importance_resample(post, c.lik, c.obs.counts, 20000, seed=0)
    assert res.efficiency > 0.03  # measured 6.7%; without the defensive component 0.9%
    ok, report = compare(res.samples, c.ref, c.prior.names, 0.15, (0.85, 1.15))
    assert ok, report


def test_importance_sampled_five_parameters_meet_the_issue_floors():
    c = case("five")
    # the raw 5-parameter network is 1.2-3.7x too wide, so few proposals land in the posterior
    # (efficiency ~0.2%): draw many to keep a few hundred effective samples
    res = importance_resample(c.post, c.lik, c.obs.counts, 20000, n_proposal=200000, seed=0)
    assert res.ess > 200
    ok, report = compare(res.samples, c.ref, c.prior.names, 0.25, (0.75, 1.25))
    assert ok, report
