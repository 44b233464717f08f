"""Nested sampling (UltraNest) with the exact likelihood, and the priors' inverse CDFs it uses.

Spectra are faked on the built-in NICER-like instrument: exposure 1.1116 s gives ~1,800 counts
for tbabs*powerlaw with nH = 0.2, PhoIndex = 1.7, norm = 1 (as in test_likelihood.py).
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pytest
import torch
from scipy import special, stats

import xsbi
from xsbi.instruments import nicer_like_spectrum
from xsbi.likelihood import NestedResult, PoissonLikelihood, fit_cstat, run_mcmc, run_nested
from xsbi.priors import Frozen, LogUniform, Normal, Uniform

pytest.importorskip("ultranest")

EXPOSURE = 1.1116
PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.01, 100]}}
NORM_RANGE = (0.1, 10.0)


# --- the priors' inverse CDFs -------------------------------------------------------------------

U = np.array([0.0, 1e-12, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0 - 1e-12, 1.0])


def _truncnorm_ppf(u, mean, sigma, low, high):
    """Inverse CDF of a truncated normal written with ndtr/ndtri (independent of scipy's truncnorm)."""
    a, b = special.ndtr((low - mean) / sigma), special.ndtr((high - mean) / sigma)
    return mean + sigma * special.ndtri(a + u * (b - a))


@pytest.mark.parametrize(
    "prior, expected",
    [
        (Uniform(0.5, 2.5), lambda u: 0.5 + 2.0 * u),
        (LogUniform(0.01, 100.0), lambda u: 0.01 * 1e4**u),
        (Normal(1.0, 0.5, 0.2, 3.0), lambda u: _truncnorm_ppf(u, 1.0, 0.5, 0.2, 3.0)),
        (Normal(0.0, 2.0, 0.0, np.inf), lambda u: _truncnorm_ppf(u, 0.0, 2.0, 0.0, np.inf)),
    ],
    ids=["uniform", "loguniform", "normal-truncated", "normal-half"],
)
def test_ppf_is_the_analytic_inverse_cdf_and_maps_uniforms_to_prior_draws(prior, expected):
    x = prior.ppf(U)
    inner = (U > 0) & (U < 1)
    bulk = (U >= 0.01) & (U <= 0.99)
    np.testing.assert_allclose(x[bulk], expected(U[bulk]), rtol=1e-9)
    # 1e-12 from 0 or 1 both forms lose digits to the rounding of u near 0.5 or 1 (~1e-4 relative)
    np.testing.assert_allclose(x[inner], expected(U[inner]), rtol=1e-3)
    assert x[0] == pytest.approx(prior.low) and np.all(np.isfinite(prior.log_prob(x[inner])))
    if np.isfinite(prior.high):
        assert x[-1] == pytest.approx(prior.high)
    assert np.all(x[:-1] <= x[1:])  # monotone
    # never outside the support, even where rounding could push it there
    finite = np.isfinite(x)
    assert np.all((x[finite] >= prior.low) & (x[finite] <= prior.high))
    assert np.all(np.isnan(prior.ppf(np.array([-0.1, 1.1]))))
    assert prior.ppf(np.full((4, 5), 0.3)).shape == (4, 5)
    # uniform quantiles through ppf are prior draws: same distribution as the prior's own sampler
    rng = np.random.default_rng(11)
    via_ppf = prior.ppf(rng.uniform(size=4000))
    direct = prior.sample(4000, np.random.default_rng(12))
    assert stats.ks_2samp(via_ppf, direct).pvalue > 0.01


def test_joint_prior_ppf_is_columnwise_and_skips_frozen_parameters():
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, {"tbabs.nH": {"normal": [0.2, 0.05]}, "powerlaw.PhoIndex": 1.7,
                                    "powerlaw.norm": {"loguniform": [0.01, 100]}})
    assert prior.names == ["tbabs.nH", "powerlaw.norm"] and isinstance(prior.priors["powerlaw.PhoIndex"], Frozen)
    u = np.random.default_rng(0).uniform(size=(200, 2))
    theta = prior.ppf(u)
    assert theta.shape == (200, 2)
    np.testing.assert_allclose(theta[:, 0], prior.priors["tbabs.nH"].ppf(u[:, 0]))
    np.testing.assert_allclose(theta[:, 1], 0.01 * 1e4 ** u[:, 1])
    assert theta[:, 0].min() >= 0.0  # the normal prior was truncated at nH's hard limit
    assert np.all(np.isfinite(prior.log_prob(theta)))
    assert prior.ppf(np.array([0.5, 0.5])).shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        prior.ppf(np.zeros((3, 3)))


# --- nested sampling ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def one_parameter_problem(seed: int = 2):
    """powerlaw with PhoIndex frozen at 1.7 and norm loguniform in NORM_RANGE, faked at norm = 1."""
    empty = nicer_like_spectrum(exposure=EXPOSURE)
    model = xsbi.Model("powerlaw")
    prior = xsbi.JointPrior(model, {"powerlaw.PhoIndex": {"frozen": 1.7},
                                    "powerlaw.norm": {"loguniform": list(NORM_RANGE)}})
    counts = xsbi.Simulator(model, empty, dtype=torch.float64).sample([[1.0]], seed=seed)[0]
    return PoissonLikelihood(empty.with_counts(counts.astype(np.int64)), model, prior)


@functools.lru_cache(maxsize=None)
def three_parameter_problem(seed: int = 1):
    empty = nicer_like_spectrum(exposure=EXPOSURE)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    counts = xsbi.Simulator(model, empty, dtype=torch.float64).sample([[0.2, 1.7, 1.0]], seed=seed)[0]
    return PoissonLikelihood(empty.with_counts(counts.astype(np.int64)), model, prior)


def quadrature_logz(lik, n: int = 40001) -> float:
    """ln of int L(norm) pi(norm) dnorm by the trapezoidal rule in s = ln(norm), where the
    log-uniform prior is flat (pi(norm) dnorm = ds / ln(high / low)); same normalised likelihood."""
    lo, hi = np.log(NORM_RANGE)
    s = np.linspace(lo, hi, n)
    logl = lik.log_likelihood(np.exp(s)[:, None]) + lik.data_log_constant
    logw = np.full(n, np.log(s[1] - s[0]))
    logw[[0, -1]] -= np.log(2.0)
    return float(special.logsumexp(logl + logw) - np.log(hi - lo))


def analytic_logz(lik) -> float:
    """The same evidence in closed form: mu = norm * m, so int norm^(N-1) exp(-norm M) dnorm is an
    incomplete gamma function (N = total counts, M = sum m)."""
    m = lik.expected_counts(np.array([[1.0]]))[0]
    s = lik.counts
    n_tot, m_tot = s.sum(), m.sum()
    lo, hi = NORM_RANGE
    const = np.sum(special.xlogy(s, m) - special.gammaln(s + 1.0))
    mass = special.gammainc(n_tot, m_tot * hi) - special.gammainc(n_tot, m_tot * lo)
    return float(const + special.gammaln(n_tot) - n_tot * np.log(m_tot) + np.log(mass) - np.log(np.log(hi / lo)))


def test_evidence_agrees_with_quadrature_on_a_one_parameter_problem():
    lik = one_parameter_problem()
    logz_quad = quadrature_logz(lik)
    assert logz_quad == pytest.approx(analytic_logz(lik), abs=1e-6)  # the quadrature itself is exact
    res = run_nested(lik, seed=0, progress=False)
    assert isinstance(res, NestedResult) and res.converged and res.names == ["powerlaw.norm"]
    assert 0 < res.logz_err < 0.5
    assert abs(res.logz - logz_quad) < 3 * res.logz_err + 0.1, (res.logz, res.logz_err, logz_quad)
    # the evidence is the normalised Poisson one, not the C-stat convention
    assert res.record()["logz_cstat"] == pytest.approx(res.logz - lik.data_log_constant)
    assert res.samples.shape[1] == 1 and np.all((res.samples >= 0.1) & (res.samples <= 10.0))
    # the posterior of norm: ~N(1, 1/sqrt(N)) for this problem
    n_tot = lik.counts.sum()
    assert abs(np.median(res.samples) - 1.0) < 4 / np.sqrt(n_tot)
    assert np.std(res.samples) == pytest.approx(1 / np.sqrt(n_tot), rel=0.15)
    assert res.ncall > 0 and res.niter == len(res.weights) == len(res.logl) and res.weights.sum() == pytest.approx(1)


def test_posterior_agrees_with_emcee_on_tbabs_powerlaw():
    lik = three_parameter_problem()
    nested = run_nested(lik, seed=1, progress=False)
    fit = fit_cstat(lik, n_starts=2, seed=0)
    mcmc = run_mcmc(lik, seed=0, progress=False, fit=fit)
    assert nested.converged and mcmc.converged
    a, b = nested.summary(), mcmc.summary()
    for name in lik.names:
        sigma = b[name]["std"]
        assert abs(a[name]["median"] - b[name]["median"]) < 0.2 * sigma, (name, a[name], b[name])
        width_a, width_b = a[name]["q84"] - a[name]["q16"], b[name]["q84"] - b[name]["q16"]
        assert abs(width_a / width_b - 1) < 0.15, (name, width_a, width_b)
    rec = nested.record()
    json.dumps(rec, allow_nan=False)  # standard JSON: no Infinity or NaN
    assert rec["parameters"].keys() == set(lik.names) and rec["ncall"] == nested.ncall


def test_same_seed_same_samples_and_global_random_state_restored():
    lik = one_parameter_problem()
    np.random.seed(123)
    before = np.random.get_state()
    a = run_nested(lik, min_num_live_points=100, seed=5, progress=False)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    b = run_nested(lik, min_num_live_points=100, seed=5, progress=False)
    c = run_nested(lik, min_num_live_points=100, seed=6, progress=False)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.logz == b.logz and a.ncall == b.ncall
    assert not np.array_equal(a.samples, c.samples)


def test_max_ncalls_stops_early_and_warns():
    lik = one_parameter_problem()
    with pytest.warns(RuntimeWarning, match="max_ncalls"):
        res = run_nested(lik, min_num_live_points=100, max_ncalls=300, seed=0, progress=False)
    assert not res.converged and not res.record()["converged"]
    with pytest.raises(ValueError):
        run_nested(lik, min_num_live_points=1)


# --- xsbi run -------------------------------------------------------------------------------------

def test_run_analysis_nested_writes_the_evidence_and_samples(tmp_path):
    from astropy.table import Table

    from xsbi.demo import write_demo_data
    from xsbi.pipeline import run_analysis

    pha = write_demo_data(tmp_path / "demo", seed=0)
    cfg = {"data": {"spectrum": str(pha)}, "model": "tbabs*powerlaw", "priors": PRIORS,
           "inference": {"method": "nested", "nested": {"live_points": 200, "dlogz": 0.5}}, "seed": 3, "plots": False}
    out = tmp_path / "nested"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        summary = run_analysis(cfg, out, progress=False)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["method"] == "nested" and summary["nested"]["logz"] == on_disk["nested"]["logz"]
    rec = on_disk["nested"]
    assert np.isfinite(rec["logz"]) and 0 < rec["logz_err"] < 1 and rec["converged"]
    assert rec["settings"]["min_num_live_points"] == 200 and rec["seed"] == 3
    assert "nested" in on_disk["timings_s"]
    assert on_disk["config"]["inference"]["nested"] == {"live_points": 200, "dlogz": 0.5, "frac_remain": 0.01,
                                                        "max_ncalls": None}
    table = Table.read(out / "posterior_samples.fits")
    assert table.colnames == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"] and len(table) == rec["n_samples"]
    assert "UltraNest" in table.meta["METHOD"]
    ph = on_disk["parameters"]["powerlaw.PhoIndex"]
    assert abs(ph["median"] - 1.7) < 4 * ph["std"]  # the demo spectrum was faked at PhoIndex 1.7
