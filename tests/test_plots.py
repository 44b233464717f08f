"""Report figures: each writes a PNG and returns numbers checked here against direct computations."""

import struct
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from xsbi import Model, Simulator, Spectrum
from xsbi.instruments import nicer_like_spectrum
from xsbi.instruments.nicer_like import N_CHANNELS, nicer_like_response
from xsbi.report import (CoverageWarning, ReportError, plot_corner, plot_folded_spectrum,
                         plot_prior_predictive, plot_prior_vs_restricted, plot_regression,
                         poisson_errors, prior_predictive_coverage, regression_summary)

NAMES = ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]
THETA = np.array([0.2, 1.7, 1.0])


def assert_png(path, min_px=300):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < len(data) < 5_000_000
    width, height = struct.unpack(">II", data[16:24])  # IHDR follows the signature
    assert min_px <= width <= 5000 and min_px <= height <= 5000


@pytest.fixture(scope="module")
def simulated():
    """NICER-like tbabs*powerlaw, ~2,000 counts: 2,000 simulations at THETA and 21 more draws."""
    spec = nicer_like_spectrum(exposure=1.25)
    sim = Simulator(Model("tbabs*powerlaw"), spec)
    mu, sims = sim.simulate(np.repeat(THETA[None], 2000, axis=0), seed=0)
    _, draws = sim.simulate(np.repeat(THETA[None], 21, axis=0), seed=1)
    _, bright = sim.simulate(THETA * [1.0, 1.0, 10.0], seed=2)
    return spec, mu[0], sims, draws.astype(np.int64), bright[0].astype(np.int64)


# ------------------------------------------------------------------------------ corner
def test_plot_corner_overlays_sets_with_log_axes(tmp_path):
    rng = np.random.default_rng(0)
    npe = np.column_stack([rng.normal(0.2, 0.03, 4000), rng.normal(1.7, 0.1, 4000),
                           10 ** rng.normal(0.0, 0.05, 4000)])
    mcmc = np.column_stack([rng.normal(0.21, 0.03, 2500), rng.normal(1.72, 0.1, 2500),
                            10 ** rng.normal(0.01, 0.05, 2500)])
    out = plot_corner([npe, mcmc], NAMES, tmp_path / "corner.png", labels=["NPE", "MCMC"],
                      truths=THETA, log_params=["powerlaw.norm"])
    assert_png(tmp_path / "corner.png")
    assert out["axis_labels"] == ["tbabs.nH", "powerlaw.PhoIndex", "log10 powerlaw.norm"]
    assert out["quantiles"].shape == (2, 3, 3)
    shown = npe.copy()
    shown[:, 2] = np.log10(shown[:, 2])
    np.testing.assert_allclose(out["quantiles"][0], np.quantile(shown, [0.16, 0.5, 0.84], 0).T)
    assert out["quantiles"][0, 2, 1] == pytest.approx(0.0, abs=0.01)

    single = plot_corner(npe[:, :2], NAMES[:2], tmp_path / "one.png")
    assert_png(tmp_path / "one.png")
    assert single["quantiles"].shape == (1, 2, 3)
    with pytest.raises(ReportError, match="log10"):
        plot_corner(npe - 1.0, NAMES, tmp_path / "bad.png", log_params=["powerlaw.norm"])
    with pytest.raises(ReportError, match="shape"):
        plot_corner(npe, NAMES[:2], tmp_path / "bad.png")
    assert plt.get_fignums() == []  # nothing left open in pyplot


# ------------------------------------------------------------------------------ folded spectrum
def test_poisson_errors_match_gehrels_tables():
    lower, upper = poisson_errors([0, 1, 10])
    # Gehrels (1986) Tables 1 and 3, S = 1: upper limits 1.841, 3.300, 14.270; lower 0.173, 6.891
    np.testing.assert_allclose(upper, [1.841, 2.300, 4.270], atol=5e-3)
    np.testing.assert_allclose(lower, [0.0, 0.827, 3.109], atol=5e-3)


def test_plot_folded_spectrum_residuals(tmp_path, simulated):
    spec, mu, sims, draws, _ = simulated
    obs = spec.with_counts(draws[0])
    band = np.quantile(sims, [0.16, 0.84], axis=0)
    resid = plot_folded_spectrum(obs, mu, tmp_path / "fold.png", model_band=band, title="test")
    assert_png(tmp_path / "fold.png")
    data = draws[0].astype(float)
    mu = mu.astype(float)
    np.testing.assert_allclose(resid, (data - mu) / np.sqrt(mu))
    assert abs(resid.mean()) < 0.3 and 0.7 < resid.std() < 1.3

    resid = plot_folded_spectrum(obs, mu, tmp_path / "fold_data.png", residuals="data")
    up = 0.5 * stats.chi2.ppf(stats.norm.cdf(1), 2 * data + 2) - data
    low = data - 0.5 * stats.chi2.ppf(stats.norm.sf(1), np.maximum(2 * data, 1e-300))
    np.testing.assert_allclose(resid, (data - mu) / np.where(data > mu, low, up))
    with pytest.raises(ReportError, match="shape"):
        plot_folded_spectrum(obs, mu[:-1], tmp_path / "bad.png")


def test_plot_folded_spectrum_adds_scaled_background(tmp_path):
    rmf, arf = nicer_like_response()
    rng = np.random.default_rng(3)
    bkg = Spectrum(np.arange(N_CHANNELS), rng.poisson(0.3, N_CHANNELS), 12.5, rmf=rmf)
    spec = Spectrum(np.arange(N_CHANNELS), np.zeros(N_CHANNELS, np.int64), 1.25, rmf=rmf,
                    arf=arf, background=bkg).group_constant(5).notice(0.3, 10.0)
    mu = Simulator(Model("tbabs*powerlaw"), spec).expected_counts(THETA * [1, 1, 0.3])[0]
    scaled = spec.background_counts * spec.background_ratio
    counts = rng.poisson(mu + scaled)
    obs = spec.with_counts(counts)
    resid = plot_folded_spectrum(obs, mu, tmp_path / "fold_bkg.png")
    assert_png(tmp_path / "fold_bkg.png")
    total = mu.astype(float) + scaled
    np.testing.assert_allclose(resid, (counts - total) / np.sqrt(total))
    resid = plot_folded_spectrum(obs, total, tmp_path / "fold_bkg2.png", add_background=False)
    np.testing.assert_allclose(resid, (counts - total) / np.sqrt(total))


# ------------------------------------------------------------------------------ prior checks
def test_plot_prior_vs_restricted(tmp_path):
    rng = np.random.default_rng(1)
    prior = np.column_stack([rng.uniform(0, 1, 20000), rng.uniform(0.5, 3, 20000),
                             10 ** rng.uniform(-3, 2, 20000)])
    restricted = prior[(prior[:, 2] > 0.3) & (prior[:, 2] < 3.0)]
    out = plot_prior_vs_restricted(prior, restricted, NAMES, tmp_path / "prior.png",
                                   log_params=["powerlaw.norm"])
    assert_png(tmp_path / "prior.png")
    assert out["powerlaw.norm"]["restricted_range"][0] > 0.3
    assert out["powerlaw.norm"]["restricted_range"][1] < 3.0
    assert out["powerlaw.norm"]["width_ratio"] == pytest.approx(1.0 / 5.0, abs=0.01)  # dex
    assert out["tbabs.nH"]["width_ratio"] == pytest.approx(1.0, abs=0.01)


def test_coverage_is_calibrated_for_a_draw_of_the_simulations(simulated):
    spec, _, sims, draws, _ = simulated
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)
        result = prior_predictive_coverage(spec.with_counts(draws[0]), sims)
    assert result["covered"] and result["n_simulations"] == 2000
    assert set(result["levels"]) == {0.68, 0.95, 0.99}
    # one spectrum has 194 bins; averaging 20 more draws pins the expected fractions down
    fractions = {lv: [] for lv in (0.68, 0.95, 0.99)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        for counts in draws[1:]:
            res = prior_predictive_coverage(spec.with_counts(counts), sims)
            for lv in fractions:
                fractions[lv].append(res["levels"][lv]["bins_inside"])
    for lv, tol in ((0.68, 0.03), (0.95, 0.015), (0.99, 0.008)):
        assert np.mean(fractions[lv]) == pytest.approx(lv, abs=tol)
    lo, hi = result["levels"][0.95]["total_interval"]
    np.testing.assert_allclose([lo, hi], np.quantile(sims.sum(1), [0.025, 0.975]))


def test_coverage_warns_when_observation_is_ten_times_brighter(simulated):
    spec, _, sims, _, bright = simulated
    with pytest.warns(CoverageWarning, match="Widen the prior restriction"):
        result = prior_predictive_coverage(spec.with_counts(bright), sims)
    assert result["covered"] is False
    assert not result["levels"][0.99]["total_inside"] and result["total_quantile"] == 1.0
    with pytest.raises(ReportError, match="shape"):
        prior_predictive_coverage(spec, sims[:, :-1])


def test_plot_prior_predictive(tmp_path, simulated):
    spec, _, sims, draws, bright = simulated
    obs = spec.with_counts(draws[0])
    out = plot_prior_predictive(obs, sims, tmp_path / "ppc.png")
    assert_png(tmp_path / "ppc.png")
    lo, hi = out["bands"][0.95]
    assert np.all(lo <= out["median"]) and np.all(out["median"] <= hi)
    np.testing.assert_allclose(hi, np.quantile(sims, 0.975, axis=0))
    assert out["coverage"] == prior_predictive_coverage(obs, sims)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)  # the plot reports, it does not warn
        out = plot_prior_predictive(spec.with_counts(bright), sims, tmp_path / "ppc_bright.png")
    assert out["coverage"]["covered"] is False


# ------------------------------------------------------------------------------ regression
def test_regression_summary_recovers_slope_and_intercept():
    rng = np.random.default_rng(2)
    true = np.column_stack([rng.uniform(0, 1, 500), rng.uniform(0.5, 3, 500)])
    estimate = 0.9 * true + 0.1 + rng.normal(0, 0.01, true.shape)
    out = regression_summary(true, estimate, names=NAMES[:2])
    for j, name in enumerate(NAMES[:2]):
        assert out[name]["slope"] == pytest.approx(0.9, abs=0.005)
        assert out[name]["intercept"] == pytest.approx(0.1, abs=0.01)
        slope, intercept = np.polyfit(true[:, j], estimate[:, j], 1)
        r = np.corrcoef(true[:, j], estimate[:, j])[0, 1]
        assert out[name]["slope"] == pytest.approx(slope, rel=1e-10)
        assert out[name]["intercept"] == pytest.approx(intercept, rel=1e-8, abs=1e-12)
        assert out[name]["r2"] == pytest.approx(r**2, rel=1e-10)
        assert out[name]["r2"] > 0.99 and out[name]["n"] == 500
    assert list(regression_summary(true[:, 0], estimate[:, 0])) == ["param_0"]
    with pytest.raises(ReportError, match="shape"):
        regression_summary(true, estimate[:-1])


def test_plot_regression(tmp_path):
    rng = np.random.default_rng(4)
    true = np.column_stack([rng.uniform(0, 1, 200), rng.uniform(0.5, 3, 200),
                            10 ** rng.uniform(-3, 2, 200)])
    median = 0.9 * true + 0.1
    median[:, 2] = true[:, 2] ** 0.95  # slope 0.95 in log10
    out = plot_regression(true, median, median * 0.9, median * 1.1, NAMES,
                          tmp_path / "reg.png", log_params=["powerlaw.norm"])
    assert_png(tmp_path / "reg.png")
    assert out == regression_summary(true, median, NAMES, log_params=["powerlaw.norm"])
    assert out["tbabs.nH"]["slope"] == pytest.approx(0.9)
    assert out["powerlaw.norm"]["slope"] == pytest.approx(0.95)
    assert out["powerlaw.norm"]["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert plt.get_fignums() == []
