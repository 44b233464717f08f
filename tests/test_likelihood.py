"""Exact-likelihood inference: C-stat/W-stat likelihood, maximum-likelihood fits, emcee sampling.

Spectra are simulated on the built-in NICER-like instrument from tbabs*powerlaw with nH=0.2,
PhoIndex=1.7, norm=1: exposure 1.1116 s gives ~1,800 counts, 11.116 s ~17,600 counts.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

import xsbi
from xsbi.instruments import nicer_like_spectrum
from xsbi.likelihood import PoissonLikelihood, fit_cstat, run_mcmc, summarize

TRUTH = np.array([0.2, 1.7, 1.0])
PRIORS = {
    "tbabs.nH": {"loguniform": [0.1, 0.3]},
    "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
    "powerlaw.norm": {"loguniform": [0.01, 100]},
}
LOW_COUNTS, HIGH_COUNTS = 1.1116, 11.116


@functools.lru_cache(maxsize=None)
def simulated(exposure: float, nh_prior: tuple | None = None, seed: int = 1):
    """(likelihood, spectrum, model, prior) for a tbabs*powerlaw spectrum faked at TRUTH;
    ``nh_prior`` = (kind, low, high) replaces the nH prior."""
    empty = nicer_like_spectrum(exposure=exposure)
    model = xsbi.Model("tbabs*powerlaw")
    priors = dict(PRIORS)
    if nh_prior is not None:
        priors["tbabs.nH"] = {nh_prior[0]: list(nh_prior[1:])}
    prior = xsbi.JointPrior(model, priors)
    counts = xsbi.Simulator(model, empty, dtype=torch.float64).sample(TRUTH[None, :], seed=seed)[0]
    spec = empty.with_counts(counts.astype(np.int64))
    return PoissonLikelihood(spec, model, prior), spec, model, prior


def hand_cstat(counts, mu):
    """XSPEC C-stat written out directly: 2 sum(mu - S + S ln(S / mu))."""
    return 2.0 * np.sum(mu - counts + special.xlogy(counts, counts) - special.xlogy(counts, mu), axis=-1)


# --- the likelihood ---------------------------------------------------------------------------

def test_log_likelihood_is_minus_half_cstat_and_exact_up_to_data_constant():
    lik, spec, model, prior = simulated(LOW_COUNTS)
    assert lik.statistic == "cstat" and 1500 < spec.counts.sum() < 2100
    theta = prior.sample(64, seed=3)
    mu = xsbi.Simulator(model, spec, dtype=torch.float64).expected_counts(theta)
    c_ref = xsbi.stats.cstat(spec.counts, mu)
    np.testing.assert_allclose(lik.cstat(theta), c_ref, rtol=1e-12)
    np.testing.assert_allclose(lik.log_likelihood(theta), -0.5 * c_ref, rtol=1e-12)
    np.testing.assert_allclose(lik.cstat(theta), hand_cstat(spec.counts, mu), rtol=1e-9)
    np.testing.assert_allclose(lik.log_posterior(theta), -0.5 * c_ref + prior.log_prob(theta), rtol=1e-12)
    np.testing.assert_allclose(lik.expected_counts(theta), mu, rtol=1e-12)
    # -C/2 + K is the full Poisson log-likelihood, K depending on the data only
    exact = stats.poisson.logpmf(spec.counts, mu).sum(axis=1)
    np.testing.assert_allclose(lik.log_likelihood(theta) + lik.data_log_constant, exact, rtol=1e-10)
    # a single parameter vector is a batch of one
    assert lik.log_likelihood(theta[0]).shape == (1,)


def test_outside_prior_support_is_minus_inf_without_disturbing_the_batch():
    lik, _, _, prior = simulated(LOW_COUNTS)
    inside = prior.sample(3, seed=4)
    outside = np.array([[0.05, 1.7, 1.0], [0.2, 3.0, 1.0], [0.2, 1.7, 200.0], [np.nan, 1.7, 1.0]])
    batch = np.vstack([inside[:1], outside, inside[1:]])
    ll = lik.log_likelihood(batch)
    assert np.all(ll[1:5] == -np.inf) and np.all(lik.log_posterior(batch)[1:5] == -np.inf)
    assert np.all(lik.cstat(batch)[1:5] == np.inf)
    np.testing.assert_allclose(ll[[0, 5, 6]], lik.log_likelihood(inside), rtol=1e-13)
    np.testing.assert_array_equal(lik.in_support(batch), [True, False, False, False, False, True, True])


def test_unconstrained_density_carries_the_jacobian():
    """In 1-D the posterior mass must be the same whichever coordinate it is integrated in."""
    empty = nicer_like_spectrum(exposure=LOW_COUNTS)
    model = xsbi.Model("powerlaw")
    prior = xsbi.JointPrior(model, {"powerlaw.PhoIndex": {"uniform": [1.0, 2.5]}, "powerlaw.norm": {"frozen": 1.0}})
    counts = xsbi.Simulator(model, empty, dtype=torch.float64).sample([[1.7]], seed=2)[0]
    lik = PoissonLikelihood(empty.with_counts(counts.astype(np.int64)), model, prior)
    assert lik.dim == 1
    theta = np.linspace(1.0, 2.5, 20001)[:, None]
    lp = lik.log_posterior(theta)
    u = np.linspace(-6.0, 6.0, 20001)[:, None]  # theta in [1.004, 2.496]: all the mass
    lpu = lik.log_posterior_unconstrained(u)
    ref = lp.max()
    mass_theta = np.trapezoid(np.exp(lp - ref), theta[:, 0])
    mass_u = np.trapezoid(np.exp(lpu - ref), u[:, 0])
    assert mass_u == pytest.approx(mass_theta, rel=1e-4)


def test_truth_is_more_likely_than_shifted_parameters():
    lik, *_ = simulated(HIGH_COUNTS)
    assert 15_000 < lik.counts.sum() < 21_000
    shifted = []
    for j in range(3):
        for f in (0.9, 1.1):
            t = TRUTH.copy()
            t[j] *= f
            shifted.append(t)
    ll = lik.log_likelihood(np.vstack([TRUTH, shifted]))
    assert np.all(ll[0] > ll[1:]), ll


# --- maximum-likelihood fits ------------------------------------------------------------------

def test_fit_recovers_truth_with_consistent_errors():
    lik, spec, model, prior = simulated(HIGH_COUNTS)
    fit = fit_cstat(lik, n_starts=3, seed=0)
    assert fit.names == lik.names and fit.success and fit.nfev > 0 and len(fit.starts) == 3
    assert np.all(np.abs(fit.theta - TRUTH) < 3 * fit.errors), (fit.theta, fit.errors)
    assert fit.cstat <= lik.cstat(TRUTH)[0]
    assert fit.cstat == pytest.approx(min(s.cstat for s in fit.starts))
    # Gaussian regime: covariance and profile delta-C = 1 errors agree, on both sides
    assert fit.delta_c_method == "profile" and not fit.interval_at_bound.any()
    np.testing.assert_allclose(fit.errors_delta_c, np.column_stack([fit.errors, fit.errors]), rtol=0.2)
    # and the profile really is C_min + 1 at the interval ends
    for j in range(3):
        for k in range(2):
            fixed = fit_cstat(_fixing(lik, model, j, fit.interval[j, k]), starts=np.delete(fit.theta, j)[None, :],
                              delta_c=None)
            assert fixed.cstat - fit.cstat == pytest.approx(1.0, abs=0.01)
    # goodness of fit from Kaastra (2017)
    g = xsbi.stats.cstat_goodness(spec.counts, lik.expected_counts(fit.theta)[0])
    assert (fit.expected, fit.std) == pytest.approx((g.expected, g.std))
    assert abs(fit.z) < 4
    cov = fit.covariance
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def _fixing(lik, model, j, value):
    """The same data with parameter j frozen at value (a fresh model and prior)."""
    m = xsbi.Model("tbabs*powerlaw")
    name = lik.names[j]
    priors = dict(PRIORS)
    priors[name] = {"frozen": float(value)}
    return PoissonLikelihood(lik.spectrum, m, xsbi.JointPrior(m, priors))


def test_conditional_intervals_are_the_hessian_diagonal():
    """Holding the others fixed, delta-C = 1 is reached at 1/sqrt(H_jj), narrower than the
    profile interval for correlated parameters."""
    lik, *_ = simulated(HIGH_COUNTS)
    prof = fit_cstat(lik, seed=0)
    cond = fit_cstat(lik, seed=0, delta_c="conditional")
    hess_diag = np.diag(np.linalg.inv(cond.covariance))
    np.testing.assert_allclose(cond.sigma_delta_c, 1 / np.sqrt(hess_diag), rtol=0.03)
    assert np.all(cond.sigma_delta_c < 0.8 * prof.sigma_delta_c)


def test_fit_is_reproducible_and_records_every_start():
    lik, *_ = simulated(LOW_COUNTS)
    a = fit_cstat(lik, n_starts=3, seed=11, delta_c=None)
    b = fit_cstat(lik, n_starts=3, seed=11, delta_c=None)
    c = fit_cstat(lik, n_starts=3, seed=12, delta_c=None)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal([s.start for s in a.starts], [s.start for s in b.starts])
    assert not np.array_equal([s.start for s in a.starts], [s.start for s in c.starts])
    np.testing.assert_allclose(a.theta, c.theta, rtol=1e-4)
    starts = np.array([[0.15, 1.0, 0.1], [0.25, 2.2, 5.0]])
    d = fit_cstat(lik, starts=starts, delta_c=None, method="Nelder-Mead")
    np.testing.assert_array_equal([s.start for s in d.starts], starts)
    np.testing.assert_allclose(d.theta, a.theta, rtol=1e-4)
    with pytest.raises(ValueError, match="outside the prior"):
        fit_cstat(lik, starts=[[0.05, 1.7, 1.0]])


def test_best_fit_on_prior_bound_is_flagged():
    lik, *_ = simulated(HIGH_COUNTS, ("uniform", 0.25, 0.3))
    fit = fit_cstat(lik, seed=0)
    assert fit.theta[0] == pytest.approx(0.25) and fit.at_bound.tolist() == [True, False, False]
    assert fit.interval_at_bound[0, 0] and fit.interval[0, 0] == pytest.approx(0.25)


def test_start_on_a_bound_and_parameter_on_a_hard_limit():
    """A start exactly on a prior bound must not trap the optimiser (zero gradient in u), and
    a parameter exactly on its hard limit is left out of the covariance instead of failing."""
    from xsbi.likelihood.fit import _covariance

    lik, *_ = simulated(LOW_COUNTS, ("uniform", 0.0, 0.3))
    inner = fit_cstat(lik, starts=[[0.15, 1.5, 0.5]], delta_c=None)
    edge = fit_cstat(lik, starts=[[0.0, 1.5, 0.5]], delta_c=None)
    np.testing.assert_allclose(edge.theta, inner.theta, rtol=1e-4)
    cov = _covariance(lik, np.array([0.0, *inner.theta[1:]]))
    assert np.all(np.isnan(cov[0])) and np.all(np.isnan(cov[:, 0]))
    assert np.all(np.isfinite(cov[1:, 1:])) and np.all(np.diag(cov)[1:] > 0)


@pytest.mark.parametrize("method", ["L-BFGS-B", "Nelder-Mead"])
def test_powerlaw_mle_matches_independent_minimisation(method):
    """For mu = norm * f(Gamma) the C-stat minimum has sum(mu) = sum(counts) (Cash 1979), so the
    norm profiles out analytically and the MLE is a 1-D scalar minimisation."""
    empty = nicer_like_spectrum(exposure=LOW_COUNTS)
    model = xsbi.Model("powerlaw")
    prior = xsbi.JointPrior(model, {"powerlaw.PhoIndex": {"uniform": [0.5, 3.0]},
                                    "powerlaw.norm": {"loguniform": [0.01, 100]}})
    sim = xsbi.Simulator(model, empty, dtype=torch.float64)
    counts = sim.sample([[1.7, 1.0]], seed=5)[0]
    lik = PoissonLikelihood(empty.with_counts(counts.astype(np.int64)), model, prior)
    fit = fit_cstat(lik, n_starts=2, seed=1, method=method)

    def profiled(gamma):
        shape = sim.expected_counts([[gamma, 1.0]])[0]
        return hand_cstat(counts, shape * counts.sum() / shape.sum())

    res = optimize.minimize_scalar(profiled, bounds=(0.5, 3.0), method="bounded", options={"xatol": 1e-9})
    shape = sim.expected_counts([[res.x, 1.0]])[0]
    norm = counts.sum() / shape.sum()
    assert fit.theta[0] == pytest.approx(res.x, abs=1e-4 * fit.errors[0] / 0.03 + 1e-5)
    assert fit.theta[1] == pytest.approx(norm, rel=1e-4)
    assert fit.cstat == pytest.approx(res.fun, abs=1e-6)
    assert lik.expected_counts(fit.theta)[0].sum() == pytest.approx(counts.sum(), rel=1e-6)


# --- MCMC -------------------------------------------------------------------------------------

def needs_emcee():
    """emcee is an optional dependency of xsbi.likelihood.run_mcmc."""
    return pytest.importorskip("emcee", reason="emcee is not installed (pip install emcee)")


def test_mcmc_posterior_agrees_with_fit_and_is_converged():
    needs_emcee()
    lik, *_ = simulated(LOW_COUNTS)
    fit = fit_cstat(lik, n_starts=2, seed=0)
    res = run_mcmc(lik, seed=0, progress=False, fit=fit)
    tau = res.tau
    assert res.converged and res.n_steps > 50 * tau.max()
    assert res.burn == int(np.ceil(5 * tau.max())) and res.thin == max(1, int(tau.min() / 2))
    assert 0.2 < res.acceptance_fraction < 0.8
    n_kept = len(range(res.burn + res.thin - 1, res.n_steps, res.thin)) * res.n_walkers  # emcee get_chain
    assert res.samples.shape == (n_kept, 3) and res.log_prob.shape == (n_kept,)
    np.testing.assert_allclose(res.ess, res.n_walkers * (res.n_steps - res.burn) / tau)
    np.testing.assert_allclose(res.log_prob[:50], lik.log_posterior(res.samples[:50]), rtol=1e-10)
    summary = res.summary()
    for j, name in enumerate(res.names):
        s = summary[name]
        if name != "powerlaw.norm":
            assert abs(s["median"] - fit.theta[j]) < 0.3 * fit.errors[j], (name, s, fit.theta[j], fit.errors[j])
        assert s["std"] == pytest.approx(fit.errors[j], rel=0.25)


def test_mcmc_is_reproducible():
    needs_emcee()
    lik, *_ = simulated(LOW_COUNTS)
    fit = fit_cstat(lik, seed=0, delta_c=None)
    with pytest.warns(RuntimeWarning, match="shorter than"):
        a = run_mcmc(lik, n_walkers=16, n_steps=150, seed=7, progress=False, fit=fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        b = run_mcmc(lik, n_walkers=16, n_steps=150, seed=7, progress=False, fit=fit)
        c = run_mcmc(lik, n_walkers=16, n_steps=150, seed=8, progress=False, fit=fit)
        d = run_mcmc(lik, n_walkers=16, n_steps=150, seed=7, progress=False)
        e = run_mcmc(lik, n_walkers=16, n_steps=150, seed=7, progress=False)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.log_prob, b.log_prob)
    assert not np.array_equal(a.samples, c.samples)
    np.testing.assert_array_equal(d.samples, e.samples)  # including the internal fit's starts
    assert not a.converged


def test_default_stopping_rule_on_a_one_parameter_problem():
    """Stops at the first check where the chain exceeds 50 tau and tau moved < 1%."""
    emcee = needs_emcee()
    empty = nicer_like_spectrum(exposure=LOW_COUNTS)
    model = xsbi.Model("powerlaw")
    prior = xsbi.JointPrior(model, {"powerlaw.PhoIndex": {"uniform": [0.5, 3.0]}, "powerlaw.norm": {"frozen": 1.0}})
    counts = xsbi.Simulator(model, empty, dtype=torch.float64).sample([[1.7]], seed=3)[0]
    lik = PoissonLikelihood(empty.with_counts(counts.astype(np.int64)), model, prior)
    res = run_mcmc(lik, seed=1, progress=False)
    chain = res.sampler.get_chain()
    n = res.n_steps
    assert res.converged and n % 100 == 0 and chain.shape == (n, 32, 1)

    def tau_at(k):
        return emcee.autocorr.integrated_time(chain[:k], tol=0)[0]

    def criterion(k):
        return 50 * tau_at(k) < k and abs(tau_at(k) - tau_at(k - 100)) < 0.01 * tau_at(k)

    assert tau_at(n) == pytest.approx(res.tau[0])
    assert criterion(n)
    assert all(not criterion(k) for k in range(200, n, 100))
    fit = res.fit
    assert res.summary()["powerlaw.PhoIndex"]["std"] == pytest.approx(fit.errors[0], rel=0.15)


# --- background: W-stat -----------------------------------------------------------------------

def test_background_spectrum_uses_wstat(shared_data):
    path = shared_data / "xmm_pn" / "PN_spectrum_grp20.fits"
    if not path.exists():
        pytest.skip(f"{path} not found")
    spec = xsbi.load_spectrum(path).notice(0.3, 10.0)
    assert spec.background_counts is not None
    # the source is described by an absorbed thermal continuum (see the data's README)
    model = xsbi.Model("tbabs*diskbb")
    prior = xsbi.JointPrior(model, {"tbabs.nH": {"loguniform": [0.01, 3]}, "diskbb.Tin": {"loguniform": [0.1, 5]},
                                    "diskbb.norm": {"loguniform": [1e-4, 1e4]}})
    lik = PoissonLikelihood(spec, model, prior)
    assert lik.statistic == "wstat"
    theta = prior.sample(32, seed=0)
    mu = xsbi.Simulator(model, spec, dtype=torch.float64).expected_counts(theta)
    w = xsbi.stats.wstat(spec.counts, spec.background_counts, mu, spec.background_ratio)
    np.testing.assert_allclose(lik.log_likelihood(theta), -0.5 * w, rtol=1e-12)
    # the background matters: the plain C-stat would differ
    assert not np.allclose(w, xsbi.stats.cstat(spec.counts, mu), rtol=1e-3)
    fit = fit_cstat(lik, n_starts=2, seed=0, delta_c=None)
    assert fit.statistic == "wstat" and fit.cstat <= w.min() and np.isnan(fit.expected)
    assert fit.cstat < 1.5 * fit.n_bins and np.all(np.isfinite(fit.errors))


# --- summaries --------------------------------------------------------------------------------

def test_summarize():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0], [0.5, 3.0], size=(20000, 2))
    s = summarize(x, ["a", "b"])
    assert s["a"]["median"] == pytest.approx(np.median(x[:, 0]))
    assert s["b"]["q84"] - s["b"]["q16"] == pytest.approx(2 * 3.0, rel=0.03)
    assert s["a"]["std"] == pytest.approx(0.5, rel=0.02) and s["b"]["mean"] == pytest.approx(-2.0, abs=0.1)
    # integer weights are repetitions
    y = rng.normal(size=(301, 1))
    w = rng.integers(1, 4, size=301)
    sw = summarize(y, ["y"], weights=w)["y"]
    rep = np.repeat(y[:, 0], w)
    assert sw["mean"] == pytest.approx(rep.mean()) and sw["std"] == pytest.approx(rep.std(), rel=1e-12)
    assert sw["median"] == pytest.approx(np.median(rep), abs=0.02)
    with pytest.raises(ValueError):
        summarize(x, ["a"])


def test_a_fit_stalled_on_a_prior_bound_is_polished_inward():
    """In the logit coordinates the gradient vanishes at a bound; the bounded polish moves on."""
    from xsbi.likelihood.fit import _polish_at_bounds

    lik, _, _, _ = simulated(HIGH_COUNTS)
    stalled = np.array([0.2, 0.5, 1.0])  # PhoIndex on its lower bound, far from the 1.7 truth
    c0 = float(lik.cstat(stalled[None])[0])
    theta, c, moved = _polish_at_bounds(lik, stalled, c0, maxiter=500)
    assert moved and c < c0 - 100
    assert abs(theta[1] - 1.7) < 0.3
    # a point already at the minimum inside the prior is left alone
    best = fit_cstat(lik, starts=[TRUTH], delta_c=None)
    same, c_same, moved = _polish_at_bounds(lik, best.theta, best.cstat, maxiter=500)
    assert not moved and np.array_equal(same, best.theta)
    # and a single-start fit from that bound reaches the same minimum as one from the truth
    from_bound = fit_cstat(lik, starts=[stalled], delta_c=None)
    assert from_bound.cstat == pytest.approx(best.cstat, abs=1e-3)
