"""Tests of xsbi.stats: C-stat, W-stat, chi^2 and the expected C-stat.

References are computed independently of the implementation wherever possible: Poisson
log-likelihood ratios via gammaln, brute-force profile likelihoods via scipy optimisation,
Poisson sums via plain Python loops, Monte Carlo draws, and high-precision Decimal arithmetic.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
import torch
from scipy import optimize, special

from xsbi.errors import DataError
from xsbi.stats import (
    ASYMPTOTIC_THRESHOLD,
    CstatGoodness,
    chi2,
    cstat,
    cstat_goodness,
    cstat_variance,
    expected_cstat,
    kaastra_cstat_variance,
    kaastra_expected_cstat,
    wstat,
)
from xsbi.stats.expected import _asymptotic_moments, _exact_moments


def poisson_logpmf(k, lam):
    """log Poisson(k | lam), with log P(0 | 0) = 0."""
    return special.xlogy(k, lam) - lam - special.gammaln(np.asarray(k, float) + 1.0)


# ----------------------------------------------------------------------------- C-stat


def test_cstat_hand_example():
    s = [0, 1, 2, 5]
    m = [0.5, 1.0, 3.0, 4.2]
    by_hand = 2 * (
        0.5  # S = 0: 2 m
        + 0.0  # S = m
        + (3.0 - 2 + 2 * math.log(2 / 3.0))
        + (4.2 - 5 + 5 * math.log(5 / 4.2))
    )
    assert cstat(s, m) == pytest.approx(by_hand, rel=1e-14)
    assert by_hand == pytest.approx(1.5216734390151, rel=1e-12)


def test_cstat_is_poisson_likelihood_ratio():
    rng = np.random.default_rng(1)
    m = rng.uniform(0.01, 40, size=200)
    s = rng.poisson(m).astype(float)
    ref = -2 * np.sum(poisson_logpmf(s, m) - poisson_logpmf(s, s))
    assert cstat(s, m) == pytest.approx(ref, rel=1e-12)


def test_cstat_zero_count_bins_and_impossible_models():
    assert cstat([0, 0], [0.3, 2.0]) == pytest.approx(2 * 2.3)
    assert cstat([0, 3], [0.0, 3.0]) == 0.0  # m = 0 with S = 0 is allowed
    assert cstat([1, 3], [0.0, 3.0]) == np.inf  # model cannot produce the count
    assert cstat([0, 3], [-0.1, 3.0]) == np.inf  # negative model


def test_cstat_precise_for_large_nearly_equal_counts():
    # C ~ (S - m)^2 / m is O(1) while S ln S ~ 1e7: the naive formula cancels.
    getcontext().prec = 50
    s, m = 1_000_000, 1_000_400.5
    S, M = Decimal(s), Decimal(m)
    exact = float(2 * (M - S + S * (S / M).ln()))
    assert cstat([s], [m]) == pytest.approx(exact, rel=1e-12)
    c32 = cstat(torch.tensor([float(s)]), torch.tensor([m], dtype=torch.float32))
    assert c32.dtype == torch.float32
    # float32 cannot represent m exactly; compare with the value for the rounded m.
    M32 = Decimal(float(np.float32(m)))
    exact32 = float(2 * (M32 - S + S * (S / M32).ln()))
    assert float(c32) == pytest.approx(exact32, rel=1e-5)


@pytest.mark.parametrize(
    "s_shape, m_shape, out_shape",
    [((7,), (7,), ()), ((7,), (5, 7), (5,)), ((5, 7), (7,), (5,)), ((3, 1, 7), (4, 7), (3, 4))],
)
def test_cstat_broadcasting(s_shape, m_shape, out_shape):
    rng = np.random.default_rng(2)
    s = rng.poisson(3.0, size=s_shape)
    m = rng.uniform(0.5, 6.0, size=m_shape)
    out = cstat(s, m)
    assert np.shape(out) == out_shape
    sb, mb = np.broadcast_arrays(s, m)
    flat_s, flat_m = sb.reshape(-1, 7), mb.reshape(-1, 7)
    loop = [cstat(a, b) for a, b in zip(flat_s, flat_m)]
    np.testing.assert_allclose(np.reshape(out, -1), loop, rtol=1e-14)
    tout = cstat(torch.as_tensor(s), torch.as_tensor(m))
    assert tuple(tout.shape) == out_shape


def test_cstat_torch_matches_numpy_and_has_right_gradient():
    rng = np.random.default_rng(3)
    m = rng.uniform(0.05, 30, size=(4, 60))
    s = rng.poisson(m[0])
    ref = cstat(s, m)
    mt = torch.tensor(m, requires_grad=True)
    out = cstat(torch.as_tensor(s), mt)  # int64 counts, float64 model
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-13)
    out.sum().backward()
    np.testing.assert_allclose(mt.grad.numpy(), 2 * (1 - s / m), rtol=1e-10, atol=1e-12)
    # numpy counts with a float32 torch model: torch result in float32
    out32 = cstat(s, torch.tensor(m, dtype=torch.float32))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=1e-5)


def test_cstat_torch_gradient_finite_with_zero_model_bins():
    m = torch.tensor([0.0, 1.0, 2.0, 1e-3], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.0, 2.0, 0.0, 1.0])
    out = cstat(s, m)
    out.backward()
    assert torch.isfinite(out)
    assert torch.all(torch.isfinite(m.grad[1:]))
    mm = torch.tensor([0.7, 1.3, 2.2, 9.0], dtype=torch.float64, requires_grad=True)
    ss = torch.tensor([0.0, 2.0, 2.0, 9.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: cstat(ss, x), (mm,))


@pytest.mark.parametrize(
    "counts, match",
    [
        ([1, -1, 2], "negative"),
        ([1, np.nan, 2], "NaN"),
        ([1, np.inf, 2], "NaN or infinite"),
        ([1, 2.5, 2], "non-integer.*chi2"),
    ],
)
def test_cstat_rejects_bad_counts(counts, match):
    with pytest.raises(DataError, match=match):
        cstat(counts, [1.0, 1.0, 1.0])
    with pytest.raises(DataError, match=match):
        cstat(torch.tensor(counts, dtype=torch.float64), torch.ones(3, dtype=torch.float64))


def test_cstat_error_message_names_the_bin():
    with pytest.raises(DataError, match=r"index \(2,\)"):
        cstat([1, 2, -3], [1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- W-stat


def brute_force_wstat_bin(s, b, mu, r):
    """-2 ln of the profile likelihood ratio against the saturated model, by optimisation.

    Source region: S ~ Poisson(mu + beta); background region: B ~ Poisson(beta / r).
    """

    def negloglike(beta):
        return -(poisson_logpmf(s, mu + beta) + poisson_logpmf(b, beta / r))

    hi = 10.0 * (s + b + mu + 1.0) * max(1.0, r)
    res = optimize.minimize_scalar(negloglike, bounds=(0.0, hi), method="bounded",
                                   options={"xatol": 1e-12})
    best = res.fun
    with np.errstate(divide="ignore"):
        best = min(best, negloglike(0.0))  # the optimum can sit on the boundary (B = 0)
    saturated = poisson_logpmf(s, s) + poisson_logpmf(b, b)
    return 2.0 * (best + saturated)


WSTAT_CASES = [
    # (S, B, mu, ratio)
    (5, 3, 2.5, 0.5),  # general
    (20, 40, 12.0, 0.2),
    (1, 7, 0.1, 2.0),
    (3, 1, 0.0, 1.0),  # zero source model, background explains the counts
    (0, 4, 1.7, 0.3),  # S = 0
    (0, 0, 2.2, 0.7),  # S = B = 0
    (6, 0, 1.0, 0.5),  # B = 0, mu < S r/(1+r) = 2: background fills in
    (6, 0, 3.0, 0.5),  # B = 0, mu >= S r/(1+r): beta = 0, plain C-stat
    (6, 0, 0.0, 0.5),  # B = 0 and mu = 0
    (50, 200, 30.0, 0.1),
    (2, 9, 8.0, 3.0),
]


@pytest.mark.parametrize("s, b, mu, r", WSTAT_CASES)
def test_wstat_equals_brute_force_profile_likelihood(s, b, mu, r):
    assert wstat([s], [b], [mu], r) == pytest.approx(brute_force_wstat_bin(s, b, mu, r),
                                                     rel=1e-7, abs=1e-8)


def test_wstat_random_bins_vs_brute_force():
    rng = np.random.default_rng(4)
    n = 40
    mu = rng.uniform(0, 10, n)
    r = rng.uniform(0.05, 3.0, n)
    s = rng.poisson(mu + 2.0)
    b = rng.poisson(2.0 / r)
    s[:5] = 0
    b[5:10] = 0
    ref = sum(brute_force_wstat_bin(*args) for args in zip(s, b, mu, r))
    assert wstat(s, b, mu, r) == pytest.approx(ref, rel=1e-8)


def xspec_wstat_literal(S, B, model_rate, t_s, t_b):
    """The XSPEC manual's formulas, transcribed in its own notation (rates, exposures)."""
    W = 0.0
    for Si, Bi, mi in zip(S, B, model_rate):
        if Si == 0:
            W += t_s * mi - Bi * math.log(t_b / (t_s + t_b))
        elif Bi == 0:
            if mi < Si / (t_s + t_b):
                W += -t_b * mi - Si * math.log(t_s / (t_s + t_b))
            else:
                W += t_s * mi + Si * (math.log(Si) - math.log(t_s * mi) - 1)
        else:
            d = math.sqrt(((t_s + t_b) * mi - Si - Bi) ** 2 + 4 * (t_s + t_b) * Bi * mi)
            f = (Si + Bi - (t_s + t_b) * mi + d) / (2 * (t_s + t_b))
            W += (t_s * mi + (t_s + t_b) * f - Si * math.log(t_s * mi + t_s * f)
                  - Bi * math.log(t_b * f) - Si * (1 - math.log(Si)) - Bi * (1 - math.log(Bi)))
    return 2 * W


def test_wstat_matches_xspec_formula_hand_example():
    # 1000 s source with BACKSCAL 1; 4000 s background with BACKSCAL 2 -> the background
    # spectrum is worth t_b = 8000 s of source-region background, ratio = 1000/8000.
    t_s, t_b_eff = 1000.0, 4000.0 * 2.0 / 1.0
    ratio = (1000.0 * 1.0) / (4000.0 * 2.0)
    S = [4, 0, 7, 7, 12]
    B = [10, 5, 0, 0, 30]
    rate = np.array([2e-3, 1e-3, 5e-4, 9e-3, 5e-3])
    ref = xspec_wstat_literal(S, B, rate, t_s, t_b_eff)
    assert wstat(S, B, t_s * rate, ratio) == pytest.approx(ref, rel=1e-12)
    # the example exercises both B = 0 sub-cases: mu vs S r/(1+r)
    low = t_s * rate[2:4] < np.array(S[2:4]) * ratio / (1 + ratio)
    assert low.tolist() == [True, False]


def test_wstat_tends_to_cstat_for_vanishing_ratio():
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.1, 20, 30)
    s = rng.poisson(mu)
    c = cstat(s, mu)
    # no background counts: identical once mu >= S r/(1+r)
    assert wstat(s, np.zeros(30), mu, 1e-9) == pytest.approx(c, rel=1e-12)
    # background counts that scale to nothing in the source region
    b = rng.poisson(5.0, 30)
    assert wstat(s, b, mu, 1e-9) == pytest.approx(c, rel=1e-6)
    assert abs(wstat(s, b, mu, 1e-2) - c) > 1e-3  # ...and a real background does matter


def test_wstat_torch_matches_numpy_batched_and_gradients_finite():
    rng = np.random.default_rng(6)
    n = 25
    s = rng.poisson(4.0, n)
    b = rng.poisson(3.0, n)
    s[:3] = 0
    b[3:8] = 0
    mu = rng.uniform(0.0, 8.0, size=(3, n))
    r = rng.uniform(0.1, 2.0, n)
    ref = wstat(s, b, mu, r)
    assert ref.shape == (3,)
    mt = torch.tensor(mu, requires_grad=True)
    out = wstat(torch.as_tensor(s), torch.as_tensor(b), mt, torch.as_tensor(r))
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12)
    out.sum().backward()
    assert torch.all(torch.isfinite(mt.grad))
    x = torch.tensor(mu[0] + 0.1, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m: wstat(torch.as_tensor(s, dtype=torch.float64),
                        torch.as_tensor(b, dtype=torch.float64), m, torch.as_tensor(r)), (x,))


def test_wstat_invalid_inputs():
    assert wstat([3], [2], [-1.0], 0.5) == np.inf
    with pytest.raises(DataError, match="bkg_counts contain negative"):
        wstat([3], [-2], [1.0], 0.5)
    with pytest.raises(DataError, match="bkg_counts contain non-integer"):
        wstat([3], [2.5], [1.0], 0.5)
    with pytest.raises(DataError, match="counts contain NaN"):
        wstat([np.nan], [2], [1.0], 0.5)
    with pytest.raises(DataError, match="ratio"):
        wstat([3], [2], [1.0], 0.0)
    with pytest.raises(DataError, match="ratio"):
        wstat([3], [2], [1.0], np.nan)


# ----------------------------------------------------------------------------- chi^2


def test_chi2_data_weighting_with_zero_count_bins():
    s = np.array([0.0, 4.0, 9.0])
    m = np.array([0.5, 5.0, 6.0])
    assert chi2(s, m) == pytest.approx(0.25 / 1 + 1 / 4 + 9 / 9)


def test_chi2_model_weighting_and_errors():
    s = np.array([0.0, 4.0, 9.0])
    m = np.array([0.5, 5.0, 6.0])
    assert chi2(s, m, weight="model") == pytest.approx(0.25 / 0.5 + 1 / 5 + 9 / 6)
    assert chi2([0.0, 1.0], [0.0, 1.0], weight="model") == 0.0
    assert chi2([1.0, 1.0], [0.0, 1.0], weight="model") == np.inf
    # rates with errors, including negative background-subtracted values
    rates = np.array([-0.2, 0.5, 1.5])
    err = np.array([0.1, 0.2, 0.5])
    model = np.array([0.0, 0.4, 1.0])
    assert chi2(rates, model, err) == pytest.approx(4.0 + 0.25 + 1.0)


def test_chi2_torch_and_broadcasting():
    rng = np.random.default_rng(7)
    s = rng.poisson(5.0, 40).astype(float)
    m = rng.uniform(1, 9, size=(6, 40))
    for weight in ("data", "model"):
        ref = chi2(s, m, weight=weight)
        assert ref.shape == (6,)
        out = chi2(torch.as_tensor(s), torch.as_tensor(m), weight=weight)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-13)


def test_chi2_rejects_bad_input():
    with pytest.raises(DataError, match="NaN"):
        chi2([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(DataError, match="negative.*errors="):
        chi2([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(DataError, match="errors must be"):
        chi2([1.0, 1.0], [1.0, 1.0], [1.0, 0.0])
    with pytest.raises(DataError, match="weight"):
        chi2([1.0], [1.0], weight="churazov")
    assert chi2([1.5, 2.5], [1.0, 2.0]) > 0  # non-integer data are fine for chi^2


# ----------------------------------------------------------------------------- expected C-stat


def brute_force_moments(m):
    """Mean and variance of 2[m - k + k ln(k/m)] for k ~ Poisson(m), by a plain loop."""
    kmax = int(m + 12 * math.sqrt(m) + 30)
    e1 = e2 = 0.0
    for k in range(kmax + 1):
        p = math.exp(k * math.log(m) - m - math.lgamma(k + 1))
        c = 2 * (m - k + (k * math.log(k / m) if k else 0.0))
        e1 += p * c
        e2 += p * c * c
    return e1, e2 - e1 * e1


@pytest.mark.parametrize("m", [1e-3, 0.1, 0.5, 1.0, 2.7, 10.0, 55.0])
def test_expected_matches_brute_force_loop(m):
    e, v = brute_force_moments(m)
    assert expected_cstat([m]) == pytest.approx(e, rel=1e-11)
    assert cstat_variance([m]) == pytest.approx(v, rel=1e-9)


def test_expected_limits():
    # m -> 0: only k = 0 (c = 2m, P ~ 1) and k = 1 (c = 2(m - 1 - ln m), P ~ m) matter,
    # so E ~ 2m + 2m(-1 - ln m) = -2 m ln m, the leading term of Kaastra's fit
    m = 1e-8
    assert expected_cstat([m]) == pytest.approx(-2 * m * math.log(m), rel=1e-6)
    assert expected_cstat([0.0]) == 0.0 and cstat_variance([0.0]) == 0.0
    # m -> inf: chi^2 with one degree of freedom, E -> 1 + 1/(6m), Var -> 2 + 2/(3m)
    # (next terms 1/(6m^2) and 4/(3m^2), hence the tolerance)
    for m in (3e3, 1e5, 1e8):
        assert expected_cstat([m]) == pytest.approx(1 + 1 / (6 * m), abs=0.5 / m**2)
        assert cstat_variance([m]) == pytest.approx(2 + 2 / (3 * m), abs=2 / m**2)
    assert expected_cstat([1e12]) == pytest.approx(1.0, rel=1e-12)
    assert cstat_variance([1e12]) == pytest.approx(2.0, rel=1e-12)


def test_asymptotic_series_continuous_with_exact_sum():
    m = np.array([ASYMPTOTIC_THRESHOLD * 0.999, ASYMPTOTIC_THRESHOLD, 600.0])
    e_exact, v_exact = _exact_moments(m)
    e_asym, v_asym = _asymptotic_moments(m)
    np.testing.assert_allclose(e_asym, e_exact, rtol=1e-10)
    np.testing.assert_allclose(v_asym, v_exact, rtol=1e-10)
    # and the public functions are continuous across the switch
    left = expected_cstat([ASYMPTOTIC_THRESHOLD])
    right = expected_cstat([np.nextafter(ASYMPTOTIC_THRESHOLD, np.inf)])
    assert right == pytest.approx(left, rel=1e-6)
    assert cstat_variance([np.nextafter(ASYMPTOTIC_THRESHOLD, np.inf)]) == pytest.approx(
        cstat_variance([ASYMPTOTIC_THRESHOLD]), rel=1e-6)


def test_expected_per_bin_and_batched_shapes():
    m = np.array([[0.2, 3.0, 2000.0], [0.0, 1.0, 40.0]])
    per = expected_cstat(m, per_bin=True)
    assert per.shape == (2, 3)
    np.testing.assert_allclose(expected_cstat(m), per.sum(-1), rtol=1e-15)
    assert cstat_variance(m).shape == (2,)
    np.testing.assert_allclose(expected_cstat(torch.tensor(m)), expected_cstat(m), rtol=0)
    with pytest.raises(DataError, match=">= 0"):
        expected_cstat([1.0, -0.5])
    with pytest.raises(DataError, match="finite"):
        cstat_variance([1.0, np.nan])


def test_monte_carlo_mean_and_variance_of_cstat():
    rng = np.random.default_rng(20170718)
    model = np.geomspace(0.03, 60.0, 50)
    draws = rng.poisson(model, size=(200_000, 50))
    c = cstat(draws, model)
    n = c.size
    mc_mean, mc_var = c.mean(), c.var(ddof=1)
    se_mean = math.sqrt(mc_var / n)
    se_var = math.sqrt((np.mean((c - mc_mean) ** 4) - mc_var**2) / n)
    e, v = expected_cstat(model), cstat_variance(model)
    assert abs(mc_mean - e) < 4 * se_mean
    assert abs(mc_var - v) < 4 * se_var
    # discriminating: the naive "C ~ number of bins, variance 2 N" rule is rejected
    assert abs(mc_mean - 50) > 20 * se_mean
    assert abs(mc_var - 100) > 10 * se_var


def test_kaastra_approximations_against_exact():
    m = np.geomspace(1e-4, 1e4, 3001)
    e, v = expected_cstat(m, per_bin=True), cstat_variance(m, per_bin=True)
    ke, kv = kaastra_expected_cstat(m, per_bin=True), kaastra_cstat_variance(m, per_bin=True)
    # measured maxima: 2.3e-4 (mean, near m = 0.5) and 1.6e-4 (variance, near m = 3)
    assert np.max(np.abs(ke / e - 1)) < 5e-4
    assert np.max(np.abs(kv / v - 1)) < 5e-4
    # on spectra: a sparse one and a bright one
    for spec in (np.geomspace(0.01, 5, 300), np.geomspace(5, 5000, 300)):
        assert kaastra_expected_cstat(spec) == pytest.approx(expected_cstat(spec), rel=1e-3)
        assert kaastra_cstat_variance(spec) == pytest.approx(cstat_variance(spec), rel=1e-3)
    assert kaastra_expected_cstat([0.0]) == 0.0


def test_cstat_goodness():
    rng = np.random.default_rng(9)
    model = rng.uniform(0.1, 5.0, 400)
    counts = rng.poisson(model)
    g = cstat_goodness(counts, model)
    assert isinstance(g, CstatGoodness)
    assert g.cstat == pytest.approx(cstat(counts, model))
    assert g.expected == pytest.approx(expected_cstat(model))
    assert g.std == pytest.approx(math.sqrt(cstat_variance(model)))
    assert g.z == pytest.approx((g.cstat - g.expected) / g.std)
    assert abs(g.z) < 4
    # a model 50% too bright is flagged
    assert cstat_goodness(counts, 1.5 * model).z > 5
    # batched: several spectra against one model
    gb = cstat_goodness(rng.poisson(model, size=(8, 400)), model)
    assert gb.z.shape == gb.expected.shape == (8,)


@pytest.mark.parametrize("s, b, mu, r", WSTAT_CASES)
def test_profile_background_maximises_the_joint_likelihood(s, b, mu, r):
    from xsbi.stats import profile_background

    beta = float(profile_background([s], [b], [mu], r)[0])

    def negloglike(x):
        return -(poisson_logpmf(s, mu + x) + poisson_logpmf(b, x / r))

    assert beta >= 0
    # no other level does better (checked on a grid around it and at the boundary)
    grid = np.concatenate([[0.0], beta * np.linspace(0.5, 1.5, 41), [beta + 1e-3]])
    with np.errstate(divide="ignore"):
        assert all(negloglike(beta) <= negloglike(g) + 1e-9 for g in grid if g >= 0)


def test_wstat_goodness_matches_a_monte_carlo_of_the_statistic():
    from xsbi.stats import wstat_goodness

    rng = np.random.default_rng(2)
    mu = rng.uniform(1, 30, 60)
    r = np.full(60, 0.2)
    beta_true = np.full(60, 2.0)
    s, b = rng.poisson(mu + beta_true), rng.poisson(beta_true / r)
    g = wstat_goodness(s, b, mu, r, n_sims=4000, seed=1)
    assert g.cstat == pytest.approx(float(wstat(s, b, mu, r)))
    # an independent Monte Carlo at the true background: the same distribution to sampling error
    w = np.asarray(wstat(rng.poisson(mu + beta_true, (4000, 60)), rng.poisson(beta_true / r, (4000, 60)), mu, r))
    assert abs(g.expected - w.mean()) < 0.05 * w.mean() and abs(g.std / w.std() - 1) < 0.15
    assert abs(g.z) < 4  # the observation was drawn from the model
    # a wrong model is flagged
    assert wstat_goodness(s, b, mu * 1.5, r, seed=1).z > 5
